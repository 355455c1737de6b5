"""absl flag definitions shared by the command lines (train, eval, vis, export, summary).

Names and defaults follow the official research/deeplab `common.py`. List flags accept both
our comma form (`--atrous_rates=6,12,18`) and the official repeated form
(`--atrous_rates=6 --atrous_rates=12 --atrous_rates=18`). Library code never reads flags:
the CLIs turn them into plain arguments with `model_options_from_flags`.
"""

from __future__ import annotations

from typing import List, Optional

from absl import flags

from deeplab.config import MODEL_VARIANTS, ModelOptions


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


def model_options_from_flags(
    values=None, *, num_classes: Optional[int] = None, crop_size=None, **overrides
) -> ModelOptions:
    """Builds ModelOptions from parsed model flags.

    `num_classes` is used when `--num_classes` is unset; `crop_size` (the official crop size) sets
    the image-pooling window when `--image_pooling_crop_size` is unset, as officially.
    """
    values = values or flags.FLAGS
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
    kwargs = dict(
        model_variant=values.model_variant,
        num_classes=n,
        output_stride=values.output_stride,
        atrous_rates=parse_int_list(values.atrous_rates, "atrous_rates"),
        decoder_output_stride=decoder,
        crop_size=tuple(crop_size) if crop_size else None,
        image_pooling_crop_size=tuple(pooling) if pooling else None,
        image_pooling_stride=tuple(pooling_stride or (1, 1)),
        aspp_convs_filters=values.aspp_convs_filters,
        aspp_with_concat_projection=values.aspp_with_concat_projection,
        aspp_with_squeeze_and_excitation=values.aspp_with_squeeze_and_excitation,
        image_se_uses_qsigmoid=values.image_se_uses_qsigmoid,
        decoder_use_sum_merge=values.decoder_use_sum_merge,
        decoder_filters=values.decoder_filters,
        decoder_output_is_logits=values.decoder_output_is_logits,
        add_image_level_feature=values.add_image_level_feature,
        aspp_with_separable_conv=values.aspp_with_separable_conv,
        decoder_use_separable_conv=values.decoder_use_separable_conv,
        multi_grid=parse_int_list(values.multi_grid, "multi_grid"),
        depth_multiplier=values.depth_multiplier,
        divisible_by=values.divisible_by,
        batch_norm_decay=values.batch_norm_decay,
    )
    kwargs.update(overrides)
    try:
        return ModelOptions(**kwargs)
    except ValueError as err:
        raise flags.ValidationError(str(err)) from None
