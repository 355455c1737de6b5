"""The command-line layer: absl flags shared by train, eval, vis, export and summary, and
everything that reads parsed flags (presence on the command line, flag errors).

Names and defaults follow the official research/deeplab `common.py`. List flags accept both
our comma form (`--atrous_rates=6,12,18`) and the official repeated form
(`--atrous_rates=6 --atrous_rates=12 --atrous_rates=18`). Library code never reads flags:
this module turns them into plain arguments (`model_options_from_flags`, `cli_setup`). It is
the only module under deeplab/ that imports absl.flags.
"""

from __future__ import annotations

import errno
import os
import sys
from types import SimpleNamespace
from typing import List, Optional, Tuple

from absl import app, flags

from deeplab.data import descriptors
from deeplab.data.config import DataConfig
from deeplab.modeling.options import MODEL_VARIANTS, ModelOptions

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


_WRITE_ERRNOS = (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT)
_WRITE_REASONS = ("Permission denied", "Read-only file system", "No space left on device")


def describe_write_error(err: BaseException, output_flag: Optional[str]) -> Optional[str]:
    """The one line a command prints when its output cannot be written (no permission, a
    read-only or full disk): the path, the reason and the fix; None for any other error."""
    if isinstance(err, OSError) and err.errno in _WRITE_ERRNOS:
        what = f"{err.filename}: {err.strerror}" if err.filename else str(err)
        full = err.errno in (errno.ENOSPC, errno.EDQUOT)
    else:
        tf = sys.modules.get("tensorflow")
        text = (str(err).strip().splitlines() or [""])[0]
        if tf is None or not isinstance(err, tf.errors.OpError):
            return None
        if not any(reason in text for reason in _WRITE_REASONS):
            return None
        what, full = text, "No space left" in text
    if full:
        fix = "free space on that disk and run again"
        if output_flag == "--train_logdir":
            fix += " (training resumes from its last checkpoint)"
    else:
        fix = (
            f"give {output_flag or 'the output flag'} a folder you can write to "
            "(or fix the permissions of that path)"
        )
    return f"ERROR: {what}; {fix}."


def run_reporting_missing_files(body, output_flag: Optional[str] = None) -> int:
    """Runs a command line's `body()`; a missing dataset, image or checkpoint file, or an
    output it cannot write (`describe_write_error`, naming `output_flag`), ends it with one
    `ERROR:` line and status 1, a flag or usage error with one line and status 2, instead of a
    traceback."""
    try:
        return body()
    except FileNotFoundError as err:
        print(f"ERROR: {err}", file=sys.stderr)
        return 1
    except (app.UsageError, flags.Error) as err:
        print_flags_error(err)
        return 2
    except Exception as err:  # noqa: BLE001 - re-raised unless it is a write failure
        line = describe_write_error(err, output_flag)
        if line is None:
            raise
        print(line, file=sys.stderr)
        return 1


def run_command_line(body, required_flags=(), usage=None, output_flag=None) -> None:
    """Runs a command line (train, eval, vis, export): quiet start-up logs, the flags parsed with
    `required_flags` required (a flag error exits with status 2), INFO logging, then `body()`,
    whose return value is the exit status (`run_reporting_missing_files`; `output_flag`: the
    flag naming where it writes, for the fix of a write failure). `usage` (the command
    module's docstring) is what `--help` prints first, also from a launcher or console script."""
    from absl import logging

    if usage:
        # absl's --help prints the docstring of __main__, which is a thin launcher here.
        sys.modules["__main__"].__doc__ = usage
    show_key_flags_in_help(body.__module__)

    from deeplab.cli import logs as cli_logs

    cli_logs.install()
    flags.mark_flags_as_required(list(required_flags))

    def main(argv):
        del argv
        logging.set_verbosity(logging.INFO)
        return run_reporting_missing_files(body, output_flag)

    app.run(main, flags_parser=parse_flags_exit_2)


def show_key_flags_in_help(command_module: str) -> None:
    """Lists the key flags of `command_module` (its own and the ones it adopts, e.g. the model
    flags) under `--help`, which shows the key flags of the program named by sys.argv[0]: a
    launcher (train.py) or console script (deeplab-train) that defines none itself."""
    if command_module == "__main__":
        return
    for flag in flags.FLAGS.get_key_flags_for_module(command_module):
        flags.FLAGS.register_key_flag_for_module(sys.argv[0], flag)


def parse_flags_exit_2(argv):
    """`app.run(main, flags_parser=parse_flags_exit_2)`: like absl's default parser, but a flag
    error (unknown flag, bad value, failed validator, missing required flag) exits with
    status 2, as every other flag error of the command lines does."""
    try:
        return flags.FLAGS(argv)
    except flags.Error as err:
        print(f"FATAL Flags parsing error: {err}", file=sys.stderr)
        print("Pass --helpshort or --helpfull to see help on flags.", file=sys.stderr)
        sys.exit(2)
    except SystemExit as done:
        # absl's help flags print the help, then exit with status 1; asking is no error.
        if done.code == 1 and HELP_FLAGS.intersection(arg.split("=")[0] for arg in argv[1:]):
            sys.exit(0)
        raise


# absl's help flags (app.define_help_flags).
HELP_FLAGS = frozenset(("-?", "-h", "--help", "--helpshort", "--helpfull", "--helpxml"))


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
    define_int_list(
        "multi_grid", None, "Unit rates of the last Xception / ResNet block, e.g. 1,2,4."
    )
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
        "MobileNetV2 and MobileNetV3 0.997, ResNet 0.95).",
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
    flags.DEFINE_string(
        "dense_prediction_cell_json",
        "",
        "A JSON file that specifies the dense prediction cell (replaces ASPP); the official "
        "deeplab/core/dense_prediction_cell_branch5_top1_cityscapes.json resolves to the "
        "packaged copy.",
    )
    # NAS backbones (nas_pnasnet, nas_hnasnet) are not implemented; their options change no
    # other variant, so they are accepted as officially. Bounded activations would change
    # Xception and the heads, so they stop in `model_options_from_flags`.
    flags.DEFINE_integer(
        "nas_stem_output_num_conv_filters", 20, "NAS backbones only (not implemented here)."
    )
    flags.DEFINE_boolean(
        "nas_use_classification_head", False, "NAS backbones only (not implemented here)."
    )
    flags.DEFINE_boolean(
        "nas_remove_os32_stride", False, "NAS backbones only (not implemented here)."
    )
    flags.DEFINE_boolean(
        "use_bounded_activation",
        False,
        "Bounded ReLU6 activations for quantization (only false is supported).",
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
    if values.use_bounded_activation:
        raise flags.ValidationError(
            "--use_bounded_activation=true is not supported (only the official unbounded ReLUs)"
        )
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
        dense_prediction_cell_json=values.dense_prediction_cell_json or None,
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
    "dense_prediction_cell_json": "dense_prediction_cell_json",
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


def check_dataset_dir(dataset: str, dataset_dir: Optional[str]) -> None:
    """Stops (flags.ValidationError naming --dataset_dir) when the dataset directory does not
    exist; a TensorFlow Datasets source (`tfds:NAME`) may leave it unset. Nothing is built: only
    datasets/build_synthetic_data.py and train.py's first run write a synthetic set."""
    if dataset.startswith(descriptors.TFDS_PREFIX) or dataset_dir is None:
        return
    import tensorflow as tf

    if tf.io.gfile.isdir(dataset_dir):
        return
    hint = ""
    if dataset == "synthetic":
        hint = (
            f"; build the synthetic set with `python datasets/build_synthetic_data.py "
            f"--output_dir={dataset_dir}` (train.py builds it on its first run)"
        )
    raise flags.ValidationError(f"--dataset_dir={dataset_dir}: no such directory{hint}")


def checkpoint_source_problem(path: str) -> Optional[str]:
    """What is wrong with a checkpoint flag's value, or None: a training dir holding a
    checkpoint, a prefix, an archive or an official checkpoint dir are fine."""
    import tensorflow as tf

    from deeplab.checkpoints import polling

    if polling.is_static_checkpoint(path):
        return None
    if not tf.io.gfile.isdir(path):
        return "no such checkpoint, directory or archive"
    return None if tf.train.latest_checkpoint(path) is not None else "holds no checkpoint"


def check_checkpoint_source(flag_values, script: str) -> None:
    """eval.py / vis.py: stops (flags.ValidationError naming --checkpoint_dir) when
    --checkpoint_dir names nothing, or a directory without a checkpoint, and the run would
    otherwise wait for one: a count of checkpoints to read is set (--max_number_of_evaluations,
    --max_number_of_iterations) and no --eval_timeout_secs asks to wait for training."""
    path = flag_values.checkpoint_dir
    count_flag = "max_number_of_evaluations" if script == "eval" else "max_number_of_iterations"
    if not flag_values[count_flag].value or flag_values.eval_timeout_secs is not None:
        return  # the official loop: wait for training to write one
    problem = checkpoint_source_problem(path)
    if problem:
        raise flags.ValidationError(
            f"--checkpoint_dir={path}: {problem} (to wait for a training run to write one, "
            "add --eval_timeout_secs=SECONDS)"
        )


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
    from deeplab.checkpoints import run_options
    from deeplab.modeling import inference

    saved, _ = run_options.saved_run_info(checkpoint_path)
    if saved and "num_classes" not in explicit and saved.get("num_classes"):
        num_classes = int(saved["num_classes"])
    flag_options = model_options_from_flags(flag_values, num_classes=num_classes, crop_size=None)
    return inference.inference_options(inference.merge_model_options(flag_options, explicit, saved))


def cli_setup(flag_values, checkpoint_path: str, *, crop_flag: str, scales_flag: str):
    """What eval.py and vis.py derive from their flags, as a SimpleNamespace: `dataset`,
    `dataset_dir`, `info` (DatasetInfo), `options` (inference ModelOptions), `crop` (the
    `crop_flag` size; 225x225 for the synthetic set unless given) and `scales` (floats of
    `scales_flag`). Builds no data (`check_dataset_dir`). Raises ValueError or absl's
    flags.ValidationError on bad flags."""
    from deeplab.checkpoints import run_options

    _, saved = run_options.saved_run_info(checkpoint_path)
    dataset, dataset_dir = resolve_dataset(flag_values.dataset, flag_values.dataset_dir, saved)
    if dataset_dir is None:
        raise ValueError(f"--dataset_dir is required for --dataset={dataset}")
    check_dataset_dir(dataset, dataset_dir)
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
    return SimpleNamespace(
        dataset=dataset,
        dataset_dir=dataset_dir,
        info=info,
        options=options,
        crop=tuple(crop),
        scales=scales,
    )


def cli_model_setup(
    flag_values, checkpoint_path: str, *, script: str, crop_flag: str, scales_flag: str
):
    """`cli_setup` plus, for eval.py and vis.py (`script`), the inference `model`, its logits
    `stride`, the `--image_pyramid` scales (`pyramid`, None for one scale) and the `predictor`
    to call (the model, or its image pyramid).

    On bad flags prints the error (naming the flag) to stderr and returns None.
    """
    try:
        check_checkpoint_source(flag_values, script)
        pyramid = check_inference_flags(flag_values, script)
        setup = cli_setup(
            flag_values, checkpoint_path, crop_flag=crop_flag, scales_flag=scales_flag
        )
    except (ValueError, flags.Error) as err:
        print_flags_error(err)
        return None
    from deeplab.modeling import inference

    setup.model, _ = inference.build_inference_model(setup.options)
    setup.stride = inference.logits_output_stride(setup.options)
    setup.pyramid = pyramid
    setup.predictor = setup.model
    if pyramid:
        setup.predictor = inference.ImagePyramidModel(
            setup.model, pyramid, flag_values.merge_method, setup.stride
        )
    return setup


def eval_data_config(flag_values, setup, *, split: str, batch_size: int) -> DataConfig:
    """The evaluation input pipeline of eval.py and vis.py: `split` of the dataset of `setup`
    (`cli_setup`) at its crop, with the resize flags."""
    return DataConfig(
        setup.dataset,
        setup.dataset_dir,
        split,
        crop_size=setup.crop,
        batch_size=batch_size,
        is_training=False,
        min_resize_value=flag_values.min_resize_value,
        max_resize_value=flag_values.max_resize_value,
        resize_factor=flag_values.resize_factor,
        keep_aspect_ratio=flag_values.keep_aspect_ratio,
        model_variant=setup.options.model_variant,
        num_classes=setup.options.num_classes,
        skip_bad_examples="skip_bad_examples" in flag_values and flag_values.skip_bad_examples,
    )


# ----------------------------------------------------------------------------------------------
# Official command lines: every flag of the official research/deeplab scripts is accepted (the
# official names are test data: tests/data/official_flags.json).


def define_official_flags(script: str) -> None:
    """Defines the official flags of `script` ("train", "eval", "vis", "export") that the
    script has not defined itself: the input and inference flags of common.py, `master` and
    `quantize_delay_step`. Call it after the script's own flag definitions."""

    def undefined(name):
        return name not in flags.FLAGS

    if undefined("min_resize_value"):
        define_resize_flags()
    if undefined("keep_aspect_ratio"):
        flags.DEFINE_boolean(
            "keep_aspect_ratio",
            True,
            "With --min_resize_value: keep the aspect ratio (false: resize to a square of the "
            "longer resized side).",
        )
    if undefined("image_pyramid"):
        flags.DEFINE_multi_string(
            "image_pyramid",
            None,
            "Input scales for multi-scale feature extraction, e.g. 0.5,1.0 (comma list or "
            "repeated flag; unset: one scale).",
        )
    if undefined("merge_method"):
        flags.DEFINE_enum(
            "merge_method", "max", ["max", "avg"], "How --image_pyramid logits are merged."
        )
    if undefined("prediction_with_upsampled_logits"):
        flags.DEFINE_boolean(
            "prediction_with_upsampled_logits",
            True,
            "Predict by upsampling the logits, then argmax (false: argmax at the logits "
            "resolution, then nearest-neighbour upsampling of the labels).",
        )
    if undefined("label_weights"):
        flags.DEFINE_multi_string(
            "label_weights", None, "Loss weight of each label (training only; ignored here)."
        )
    if undefined("quantize_delay_step"):
        flags.DEFINE_integer(
            "quantize_delay_step",
            -1,
            "Step at which quantization-aware training starts (< 0: no quantization).",
        )
    if script in ("train", "eval", "vis") and undefined("master"):
        flags.DEFINE_string(
            "master", "", "TF1 session target (replaced by --strategy / TF_CONFIG; see --help)."
        )
    if script == "export" and undefined("save_inference_graph"):
        flags.DEFINE_boolean(
            "save_inference_graph",
            False,
            "With a .pb --export_path: also write the graph (before freezing) as "
            "inference_graph.pbtxt next to it.",
        )


def check_quantize_delay_step(values=None, script: str = "eval") -> None:
    """eval.py and vis.py do not run the fake-quantized model of a quantization-aware training
    run (train.py and export.py do): they stop naming the flag."""
    values = flags.FLAGS if values is None else values
    if values.quantize_delay_step is not None and values.quantize_delay_step >= 0:
        raise flags.ValidationError(
            f"--quantize_delay_step={values.quantize_delay_step}: {script}.py does not run the "
            "fake-quantized model; export the run with export.py (SavedModel of the "
            "fake-quantized model, --tflite for int8 LiteRT) or leave it at -1"
        )


def check_master(values=None, script: str = "train") -> None:
    """`--master` (a TF1 session target) has no TF2 equivalent: stops naming the replacement."""
    values = flags.FLAGS if values is None else values
    if not values.master:
        return
    if script == "train":
        replacement = (
            "use --strategy=tpu --tpu=ADDRESS for a TPU, or TF_CONFIG with "
            "--strategy=multi_worker for a cluster"
        )
    else:
        replacement = f"run {script}.py on the machine that has the accelerator"
    raise flags.ValidationError(
        f"--master={values.master}: TF1 session targets are gone; {replacement}"
    )


def float_list_flag(values, flag_name: str) -> Optional[List[float]]:
    """Floats of a multi-string flag holding `a,b` and / or repeated values; None when unset."""
    try:
        return parse_float_list(values[flag_name].value, flag_name) or None
    except ValueError as err:
        raise flags.ValidationError(str(err)) from None


def define_cluster_flags(values=None) -> None:
    """Defines --strategy, --tpu and the official TF1 cluster flags (`num_clones`,
    `clone_on_cpu`, `num_replicas`, `startup_delay_steps`, `num_ps_tasks`, `master`, `task`);
    `cluster_strategy` maps them onto a strategy."""
    values = flags.FLAGS if values is None else values
    flags.DEFINE_enum(
        "strategy",
        "default",
        ["default", "mirrored", "multi_worker", "tpu"],
        "tf.distribute strategy: default (one device), mirrored (local GPUs), "
        "multi_worker (from TF_CONFIG), tpu (--tpu).",
        flag_values=values,
    )
    flags.DEFINE_integer(
        "num_clones",
        1,
        "Official multi-GPU flag, kept so old command lines work: > 1 with "
        "--strategy=default means --strategy=mirrored.",
        flag_values=values,
    )
    flags.DEFINE_string(
        "tpu", None, "TPU name or grpc:// address for --strategy=tpu.", flag_values=values
    )
    flags.DEFINE_boolean(
        "clone_on_cpu", False, "Official flag: train on the CPU (GPUs hidden).", flag_values=values
    )
    flags.DEFINE_integer(
        "num_replicas",
        1,
        "Official flag: number of workers (> 1: --strategy=multi_worker).",
        flag_values=values,
    )
    flags.DEFINE_integer(
        "startup_delay_steps",
        15,
        "Official flag; synchronous multi-worker training needs no delay.",
        flag_values=values,
    )
    flags.DEFINE_integer(
        "num_ps_tasks",
        0,
        "Official flag: parameter servers (not supported; use multi_worker).",
        flag_values=values,
    )
    flags.DEFINE_integer(
        "task", 0, "Official flag: this worker's index (must match TF_CONFIG).", flag_values=values
    )
    flags.DEFINE_string(
        "master", "", "Official TF1 session target (see --strategy, TF_CONFIG).", flag_values=values
    )


def cluster_strategy(values=None, environ=None) -> Tuple[str, Optional[str], List[str]]:
    """Maps the official TF1 cluster flags of train.py onto our tf.distribute settings.

    Returns (strategy, tpu, notes): `notes` holds one line per cluster flag that maps to
    something (print them). A flag with no equivalent raises flags.ValidationError naming
    the replacement.
    """
    import json
    import os

    values = flags.FLAGS if values is None else values
    environ = os.environ if environ is None else environ
    strategy, tpu, notes = values.strategy, values.tpu, []
    check_master(values, "train")
    if values.num_ps_tasks > 0:
        raise flags.ValidationError(
            f"--num_ps_tasks={values.num_ps_tasks}: parameter servers are not supported; use "
            "--strategy=multi_worker (synchronous all-reduce, workers from TF_CONFIG)"
        )
    tf_config = environ.get("TF_CONFIG")
    cluster = {}
    if tf_config:
        try:
            cluster = json.loads(tf_config)
        except ValueError:
            raise flags.ValidationError("TF_CONFIG is not valid JSON") from None
    if values.num_replicas > 1:
        workers = cluster.get("cluster", {}).get("worker", []) + cluster.get("cluster", {}).get(
            "chief", []
        )
        if not tf_config:
            raise flags.ValidationError(
                f"--num_replicas={values.num_replicas}: set TF_CONFIG on each of the "
                f"{values.num_replicas} workers and pass --strategy=multi_worker"
            )
        if len(workers) != values.num_replicas:
            raise flags.ValidationError(
                f"--num_replicas={values.num_replicas} but TF_CONFIG lists {len(workers)} workers"
            )
        strategy = "multi_worker"
        notes.append(
            f"--num_replicas={values.num_replicas} -> --strategy=multi_worker "
            "(the workers of TF_CONFIG)"
        )
    if values["task"].present or values.task:
        index = cluster.get("task", {}).get("index")
        if not tf_config:
            if values.task:
                raise flags.ValidationError(
                    f"--task={values.task}: set TF_CONFIG with "
                    f'"task": {{"type": "worker", "index": {values.task}}} and pass '
                    "--strategy=multi_worker"
                )
        elif index != values.task:
            raise flags.ValidationError(
                f"--task={values.task} but TF_CONFIG says task index {index}"
            )
        else:
            notes.append(f"--task={values.task} -> TF_CONFIG task index {index}")
    if values["startup_delay_steps"].present:
        notes.append(
            f"--startup_delay_steps={values.startup_delay_steps} -> nothing to delay: "
            "--strategy=multi_worker trains synchronously, workers start together"
        )
    if values.clone_on_cpu:
        environ["CUDA_VISIBLE_DEVICES"] = "-1"
        notes.append("--clone_on_cpu -> GPUs hidden (CUDA_VISIBLE_DEVICES=-1), training on CPU")
    if values.num_clones > 1 and strategy == "default":
        strategy = "mirrored"
        notes.append(
            f"--num_clones={values.num_clones} -> --strategy=mirrored (one replica per local "
            "GPU; --train_batch_size stays the global batch)"
        )
    return strategy, tpu, notes


def check_inference_flags(values=None, script: str = "eval") -> Optional[List[float]]:
    """Checks the official flags of eval.py, vis.py and export.py that only apply in some
    settings, as the official scripts use them: stops with one line naming the flag
    (flags.ValidationError). Returns the --image_pyramid scales (None: one scale)."""
    values = flags.FLAGS if values is None else values
    if script != "export":
        check_quantize_delay_step(values, script)
        check_master(values, script)
    scales_flag = "inference_scales" if script == "export" else "eval_scales"
    multi_scale = float_list_flag(values, scales_flag) not in (None, [1.0])
    multi_scale = multi_scale or values.add_flipped_images
    pyramid = float_list_flag(values, "image_pyramid")
    if pyramid == [1.0]:
        pyramid = None
    # As the official predict_labels: both apply to single-scale inference only.
    for name, given in (
        ("image_pyramid", pyramid is not None),
        ("prediction_with_upsampled_logits", not values.prediction_with_upsampled_logits),
    ):
        if given and multi_scale:
            raise flags.ValidationError(
                f"--{name} applies to single-scale inference only (as in the official "
                f"scripts); drop --{scales_flag} / --add_flipped_images or --{name}"
            )
    saved_model = script == "export" and not values.export_path.endswith(".pb")
    if saved_model and (pyramid is not None or not values.prediction_with_upsampled_logits):
        raise flags.ValidationError(
            "--image_pyramid and --prediction_with_upsampled_logits=false are supported by the "
            "frozen-graph export only (an --export_path ending in .pb)"
        )
    return pyramid
