"""The command-line layer: absl flags shared by train, eval, vis, export and summary, and
everything that reads parsed flags (presence on the command line, flag errors).

Names and defaults follow the official research/deeplab `common.py`. List flags accept both
our comma form (`--atrous_rates=6,12,18`) and the official repeated form
(`--atrous_rates=6 --atrous_rates=12 --atrous_rates=18`). Library code never reads flags:
this module turns them into plain arguments (`model_options_from_flags`, `cli_setup`). It is
the only module under deeplab/ that imports absl.flags.
"""

from __future__ import annotations

import os
import sys
from types import SimpleNamespace
from typing import List, Optional, Tuple

from absl import app, flags

from deeplab import inference, run_options
from deeplab.config import MODEL_VARIANTS, ModelOptions
from deeplab.data import descriptors, synthetic

DEFAULT_SYNTHETIC_DIR = os.path.join("data", "synthetic")
# What bad flags raise (absl's flag errors, ValidationError among them).
FlagsError = flags.Error


def define_int_list(name: str, default: Optional[str], help_text: str) -> None:
    """Defines a list-of-integers flag that takes `a,b,c` and repeated `--name=a --name=b`."""
    flags.DEFINE_multi_string(name, default, help_text + " (comma list or repeated flag)")


def parse_int_list(values, flag_name: str) -> Optional[List[int]]:
    """Turns the values of a `define_int_list` flag into integers; None when unset."""
    if values is None:
        return None
    if isinstance(values, str):
        values = [values]
    out: List[int] = []
    for value in values:
        for part in str(value).split(","):
            part = part.strip()
            if not part:
                continue
            try:
                out.append(int(part))
            except ValueError:
                raise flags.ValidationError(
                    f"--{flag_name}: {part!r} is not an integer (got {list(values)})"
                ) from None
    return out or None


def parse_float_list(values, flag_name: str = "eval_scales") -> List[float]:
    """Floats from `a,b,c` strings and / or repeated values (both flag forms); ValueError
    naming the flag on anything else."""
    if values is None:
        return []
    if isinstance(values, (str, float, int)):
        values = [values]
    out = []
    for value in values:
        for part in str(value).split(","):
            part = part.strip()
            if part:
                try:
                    out.append(float(part))
                except ValueError:
                    raise ValueError(f"--{flag_name}: {part!r} is not a number") from None
    return out


def print_flags_error(err) -> None:
    """The one-line report of a bad flag on stderr (absl's own format for flag errors)."""
    print(f"FATAL Flags parsing error: {err}", file=sys.stderr)


def define_resize_flags() -> None:
    """The official input resizing flags (`preprocess.resize_to_range`), shared by the CLIs."""
    flags.DEFINE_integer("min_resize_value", None, "Desired size of the smaller image side.")
    flags.DEFINE_integer("max_resize_value", None, "Maximum allowed size of the larger image side.")
    flags.DEFINE_integer(
        "resize_factor", None, "Resized dimensions are a multiple of factor plus one."
    )


def define_model_flags() -> None:
    """Defines the model flags of the official common.py, once per process."""
    if "model_variant" in flags.FLAGS:
        return
    flags.DEFINE_enum(
        "model_variant", "mobilenet_v2", list(MODEL_VARIANTS), "DeepLab model variant."
    )
    flags.DEFINE_integer(
        "num_classes", None, "Number of classes; default: the dataset's number of classes."
    )
    flags.DEFINE_integer(
        "output_stride", 16, "Ratio of input to output spatial resolution (8, 16 or 32)."
    )
    define_int_list("atrous_rates", None, "Atrous rates of the ASPP branches, e.g. 6,12,18.")
    define_int_list(
        "decoder_output_stride",
        None,
        "Output stride of the low-level features the decoder uses (4 or 8); unset: no decoder.",
    )
    define_int_list("multi_grid", None, "Unit rates of the last Xception block, e.g. 1,2,4.")
    define_int_list(
        "image_pooling_crop_size",
        None,
        "Crop size (h,w) that sets the image-pooling window; unset: global pooling.",
    )
    flags.DEFINE_boolean("add_image_level_feature", True, "Add the image-pooling ASPP branch.")
    flags.DEFINE_boolean(
        "aspp_with_batch_norm",
        True,
        "Use batch norm in ASPP (the only setting this implementation supports).",
    )
    flags.DEFINE_boolean("aspp_with_separable_conv", True, "Separable convs in the ASPP branches.")
    flags.DEFINE_boolean("decoder_use_separable_conv", True, "Separable convs in the decoder.")
    flags.DEFINE_float("depth_multiplier", 1.0, "Channel multiplier of MobileNetV2.")
    flags.DEFINE_integer(
        "divisible_by",
        None,
        "MobileNetV2 channels are rounded to a multiple of this (default 8 at "
        "depth_multiplier 1, else 1).",
    )
    flags.DEFINE_float(
        "batch_norm_decay",
        None,
        "BatchNorm moving-average decay; unset keeps the official ones (0.9997, "
        "MobileNetV2 0.997).",
    )
    flags.DEFINE_integer(
        "logits_kernel_size", 1, "Kernel size of the logits conv (1 is the only supported value)."
    )
    define_head_flags()


def define_head_flags() -> None:
    """The official ASPP / decoder options of the MobileNetV3 (LR-ASPP-like) recipes."""
    define_int_list(
        "image_pooling_stride", "1,1", "Stride (h,w) of the ASPP image-pooling average pool."
    )
    flags.DEFINE_integer("aspp_convs_filters", 256, "Channels of the ASPP convolutions.")
    flags.DEFINE_boolean(
        "aspp_with_concat_projection", True, "Project the concatenated ASPP branches (1x1 conv)."
    )
    flags.DEFINE_boolean(
        "aspp_with_squeeze_and_excitation",
        False,
        "Use the image-pooling feature as a sigmoid gate on the ASPP output instead of a branch.",
    )
    flags.DEFINE_boolean(
        "image_se_uses_qsigmoid",
        False,
        "The image-pooling gate uses the hard sigmoid relu6(x + 3) * 0.16667.",
    )
    flags.DEFINE_boolean(
        "decoder_use_sum_merge",
        False,
        "Merge the decoder's two inputs by a sum (one conv) instead of a concatenation.",
    )
    flags.DEFINE_integer("decoder_filters", 256, "Channels of the decoder convolutions.")
    flags.DEFINE_boolean(
        "decoder_output_is_logits",
        False,
        "The decoder output is the logits (no logits layer); needs decoder_filters=num_classes.",
    )


# Model flags whose value is the ModelOptions field of the same name as it is.
_MODEL_FLAGS_AS_IS = (
    "model_variant",
    "output_stride",
    "aspp_convs_filters",
    "aspp_with_concat_projection",
    "aspp_with_squeeze_and_excitation",
    "image_se_uses_qsigmoid",
    "decoder_use_sum_merge",
    "decoder_filters",
    "decoder_output_is_logits",
    "add_image_level_feature",
    "aspp_with_separable_conv",
    "decoder_use_separable_conv",
    "depth_multiplier",
    "divisible_by",
    "batch_norm_decay",
)


def model_options_from_flags(
    values, *, num_classes: Optional[int] = None, crop_size=None, **overrides
) -> ModelOptions:
    """Builds ModelOptions from parsed model flags (a FlagValues, e.g. `flags.FLAGS`).

    `num_classes` is used when `--num_classes` is unset; `crop_size` (the official crop size) sets
    the image-pooling window when `--image_pooling_crop_size` is unset, as officially.
    """
    if not values.aspp_with_batch_norm:
        raise flags.ValidationError("--aspp_with_batch_norm=false is not supported")
    if values.logits_kernel_size != 1:
        raise flags.ValidationError("--logits_kernel_size must be 1 (the official ASPP setting)")
    pooling = parse_int_list(values.image_pooling_crop_size, "image_pooling_crop_size")
    pooling_stride = parse_int_list(values.image_pooling_stride, "image_pooling_stride")
    decoder = parse_int_list(values.decoder_output_stride, "decoder_output_stride")
    n = values.num_classes if values.num_classes is not None else num_classes
    if n is None:
        raise flags.ValidationError("--num_classes is required here")
    kwargs = {name: values[name].value for name in _MODEL_FLAGS_AS_IS}
    kwargs.update(
        num_classes=n,
        atrous_rates=parse_int_list(values.atrous_rates, "atrous_rates"),
        decoder_output_stride=decoder,
        crop_size=tuple(crop_size) if crop_size else None,
        image_pooling_crop_size=tuple(pooling) if pooling else None,
        image_pooling_stride=tuple(pooling_stride or (1, 1)),
        multi_grid=parse_int_list(values.multi_grid, "multi_grid"),
    )
    kwargs.update(overrides)
    try:
        return ModelOptions(**kwargs)
    except ValueError as err:
        raise flags.ValidationError(str(err)) from None


def define_summary_flags() -> None:
    """Flags of `python -m deeplab.summary`: the model flags, --crop_size and --json."""
    define_model_flags()
    flags.DEFINE_list("crop_size", ["513", "513"], "Input size (height,width) to summarise at.")
    flags.DEFINE_boolean("json", False, "Print one JSON object instead of the table.")


def summary_arguments() -> Tuple[ModelOptions, List[int], bool]:
    """(ModelOptions, crop size, JSON output) from the process's parsed `define_summary_flags`
    flags (`python -m deeplab.summary`)."""
    values = flags.FLAGS
    crop = parse_int_list(values.crop_size, "crop_size")
    if not crop or len(crop) != 2:
        raise app.UsageError("--crop_size must be height,width")
    return model_options_from_flags(values, num_classes=21), crop, values.json


# Model flags of `deeplab.cli_flags.define_model_flags` -> the ModelOptions field they set.
MODEL_FLAG_FIELDS = {
    "model_variant": "model_variant",
    "num_classes": "num_classes",
    "output_stride": "output_stride",
    "atrous_rates": "atrous_rates",
    "decoder_output_stride": "decoder_output_stride",
    "multi_grid": "multi_grid",
    "image_pooling_crop_size": "image_pooling_crop_size",
    "add_image_level_feature": "add_image_level_feature",
    "aspp_with_separable_conv": "aspp_with_separable_conv",
    "decoder_use_separable_conv": "decoder_use_separable_conv",
    "depth_multiplier": "depth_multiplier",
    "divisible_by": "divisible_by",
    "image_pooling_stride": "image_pooling_stride",
    "aspp_convs_filters": "aspp_convs_filters",
    "aspp_with_concat_projection": "aspp_with_concat_projection",
    "aspp_with_squeeze_and_excitation": "aspp_with_squeeze_and_excitation",
    "image_se_uses_qsigmoid": "image_se_uses_qsigmoid",
    "decoder_use_sum_merge": "decoder_use_sum_merge",
    "decoder_filters": "decoder_filters",
    "decoder_output_is_logits": "decoder_output_is_logits",
}


def resolve_dataset(
    dataset: Optional[str], dataset_dir: Optional[str], saved: Optional[dict] = None
) -> Tuple[str, Optional[str]]:
    """(dataset name, dataset dir): the flags, else what the training run used, else the
    built-in synthetic set in data/synthetic (pascal_voc_seg when only a dir is given)."""
    saved = saved or {}
    if dataset is None:
        if saved.get("dataset"):
            dataset = saved["dataset"]
            if dataset_dir is None:
                dataset_dir = saved.get("dataset_dir")
        else:
            dataset = "synthetic" if dataset_dir is None else "pascal_voc_seg"
    if dataset_dir is None and dataset == "synthetic":
        dataset_dir = DEFAULT_SYNTHETIC_DIR
    return dataset, dataset_dir


def options_from_flags(
    flag_values, checkpoint_path: Optional[str], num_classes: Optional[int]
) -> ModelOptions:
    """Inference ModelOptions for a CLI: train.py's `model_options.json` next to the checkpoint
    (when there is one) with every model flag given on the command line applied over it, else
    the model flags (official checkpoints). `num_classes` is the default class count (the
    dataset's). The result has global image pooling unless --image_pooling_crop_size is given
    (on the command line or in the training run's options).
    """
    explicit = {
        field
        for flag, field in MODEL_FLAG_FIELDS.items()
        if flag in flag_values and flag_values[flag].present
    }
    saved, _ = run_options.saved_run_info(checkpoint_path)
    if saved and "num_classes" not in explicit and saved.get("num_classes"):
        num_classes = int(saved["num_classes"])
    flag_options = model_options_from_flags(flag_values, num_classes=num_classes, crop_size=None)
    return inference.inference_options(inference.merge_model_options(flag_options, explicit, saved))


def cli_setup(flag_values, checkpoint_path: str, *, crop_flag: str, scales_flag: str):
    """What eval.py and vis.py derive from their flags, as a SimpleNamespace: `dataset`,
    `dataset_dir`, `info` (DatasetInfo), `options` (inference ModelOptions), `crop` (the
    `crop_flag` size; 225x225 for the synthetic set unless given) and `scales` (floats of
    `scales_flag`). Builds the synthetic set when it is used and missing. Raises ValueError
    or absl's flags.ValidationError on bad flags."""
    _, saved = run_options.saved_run_info(checkpoint_path)
    dataset, dataset_dir = resolve_dataset(flag_values.dataset, flag_values.dataset_dir, saved)
    if dataset_dir is None:
        raise ValueError(f"--dataset_dir is required for --dataset={dataset}")
    info = descriptors.get_dataset_info(dataset)
    options = options_from_flags(flag_values, checkpoint_path, info.num_classes)
    if dataset == "synthetic" and not flag_values[crop_flag].present:
        crop = (225, 225)  # the synthetic images are at most 224 pixels
    else:
        crop = parse_int_list(flag_values[crop_flag].value, crop_flag)
        if not crop or len(crop) != 2 or min(crop) < 1:
            raise ValueError(
                f"--{crop_flag} must be two positive integers (height,width), "
                f"got {flag_values[crop_flag].value}"
            )
    scales = parse_float_list(flag_values[scales_flag].value, scales_flag) or [1.0]
    if dataset == "synthetic":
        synthetic.ensure_synthetic_dataset(dataset_dir)
    return SimpleNamespace(
        dataset=dataset,
        dataset_dir=dataset_dir,
        info=info,
        options=options,
        crop=tuple(crop),
        scales=scales,
    )


def cli_model_setup(flag_values, checkpoint_path: str, *, crop_flag: str, scales_flag: str):
    """`cli_setup` plus the inference `model` and its logits `stride`, for eval.py and vis.py.

    On bad flags prints the error (naming the flag) to stderr and returns None.
    """
    try:
        setup = cli_setup(
            flag_values, checkpoint_path, crop_flag=crop_flag, scales_flag=scales_flag
        )
    except (ValueError, flags.Error) as err:
        print_flags_error(err)
        return None
    setup.model, _ = inference.build_inference_model(setup.options)
    setup.stride = inference.logits_output_stride(setup.options)
    return setup
