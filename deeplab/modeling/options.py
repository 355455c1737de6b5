"""Model options as a frozen dataclass, with the official defaults and their checks."""

from __future__ import annotations

import dataclasses
from typing import Optional, Sequence, Tuple

from deeplab.modeling import cell_description, recipes

MODEL_VARIANTS = (
    "xception_41",
    "xception_65",
    "xception_71",
    "mobilenet_v2",
    "mobilenet_v3_large_seg",
    "mobilenet_v3_small_seg",
    "resnet_v1_50_beta",
    "resnet_v1_101_beta",
)
# Variants whose last block takes the `multi_grid` unit rates.
MULTI_GRID_VARIANTS = (
    "xception_41",
    "xception_65",
    "xception_71",
    "resnet_v1_50_beta",
    "resnet_v1_101_beta",
)
OUTPUT_STRIDES = (8, 16, 32)
DECODER_OUTPUT_STRIDES = (4, 8)
# Variants whose backbone has decoder end points at other strides (official
# feature_extractor.networks_to_feature_maps); the others have DECODER_OUTPUT_STRIDES.
DECODER_OUTPUT_STRIDES_BY_VARIANT = {
    "mobilenet_v3_large_seg": (4, 8, 16),
    "mobilenet_v3_small_seg": (4, 8, 16),
    "resnet_v1_50_beta": (4, 8, 16),
    "resnet_v1_101_beta": (4, 8, 16),
}


def decoder_output_strides(model_variant: str) -> Tuple[int, ...]:
    """The decoder output strides a variant's backbone has low-level features for."""
    return DECODER_OUTPUT_STRIDES_BY_VARIANT.get(model_variant, DECODER_OUTPUT_STRIDES)


def _int_tuple(value) -> Optional[Tuple[int, ...]]:
    if value is None:
        return None
    if isinstance(value, (int,)):
        return (int(value),)
    values = tuple(int(v) for v in value)
    return values or None


# How a model option is given as a flag (`deeplab.cli.flags` defines and parses each kind):
# "enum" (one of `choices`), "int", "float", "bool", "string", and "int_list" (`a,b,c` or the
# official repeated `--name=a --name=b`).
FLAG_KINDS = ("enum", "int", "float", "bool", "string", "int_list")
# Which command lines define the option's flag: "common" (train, eval, vis, export, summary,
# as the official common.py), "train" (train.py only, as officially), None (no flag of its own).
FLAG_SCOPES = ("common", "train", None)
_SAME = object()  # `flag_default` not given: the flag's default is the option's default.


def option(
    default,
    help: str,
    *,
    flag: str,
    shapes: bool = False,
    scope: Optional[str] = "common",
    flag_default=_SAME,
    choices: Optional[Tuple[str, ...]] = None,
):
    """Declares one ModelOptions field: its default, its help text, whether it changes the
    model's variables (shapes or the layer list: the checkpoint-mismatch explanation looks at
    these), its flag kind (FLAG_KINDS), the command lines that have its flag (FLAG_SCOPES), and,
    where the official command line has another default than the library, `flag_default`."""
    assert flag in FLAG_KINDS and scope in FLAG_SCOPES, (flag, scope)
    metadata = dict(
        help=help,
        shapes=shapes,
        flag=flag,
        scope=scope,
        flag_default=default if flag_default is _SAME else flag_default,
        choices=choices,
    )
    return dataclasses.field(default=default, metadata=metadata)


@dataclasses.dataclass(frozen=True)
class ModelOptions:
    """Everything that determines the DeepLab graph (names follow the official flags).

    Each field is declared once, with `option` (default, help, flag, shape-changing or not);
    the flags (`deeplab.cli.flags`), `build_deeplab`'s keyword arguments, the checkpoint-mismatch
    explanation and `model_options.json` are derived from these declarations. Fields are in
    the order the mismatch explanation tries them (most likely first).

    Library and command-line defaults differ for three options only (`flag_default`): the
    library default is the paper's DeepLabV3+ (Xception-65, ASPP rates 6,12,18, decoder at
    stride 4), while the official common.py flags default to a bare MobileNetV2 (no ASPP rates,
    no decoder), which old command lines and train.py's synthetic demo rely on. `num_classes`
    has no flag default: the command lines take the dataset's class count.

    `crop_size` only sets the image-pooling window (the official `crop_size`; the command lines
    set it from their crop flag); `image_pooling_crop_size`, when set, sets it instead (as the
    official flag does). With neither the image pooling is global, so any input size works. The
    head options from `aspp_convs_filters` on are the official ones of the LR-ASPP-like
    MobileNetV3 recipes.
    """

    # The official flag defaults to mobilenet_v2 (see the class docstring).
    model_variant: str = option(
        "xception_65",
        "DeepLab model variant.",
        flag="enum",
        shapes=True,
        choices=MODEL_VARIANTS,
        flag_default="mobilenet_v2",
    )
    # The flag defaults to the dataset's class count.
    num_classes: int = option(
        21,
        "Number of classes; default: the dataset's number of classes.",
        flag="int",
        shapes=True,
        flag_default=None,
    )
    output_stride: int = option(
        16, "Ratio of input to output spatial resolution (8, 16 or 32).", flag="int"
    )
    depth_multiplier: float = option(
        1.0, "Channel multiplier of MobileNetV2.", flag="float", shapes=True
    )
    divisible_by: Optional[int] = option(
        None,
        "MobileNetV2 channels are rounded to a multiple of this (default 8 at "
        "depth_multiplier 1, else 1).",
        flag="int",
        shapes=True,
    )
    # The official flag is unset: no decoder (see the class docstring).
    decoder_output_stride: Optional[int] = option(
        4,
        "Output stride of the low-level features the decoder uses (4 or 8); unset: no decoder.",
        flag="int_list",
        shapes=True,
        flag_default=None,
    )
    # The official flag is unset: no ASPP rates, only the 1x1 branch (see the class docstring).
    atrous_rates: Optional[Tuple[int, ...]] = option(
        (6, 12, 18),
        "Atrous rates of the ASPP branches, e.g. 6,12,18.",
        flag="int_list",
        shapes=True,
        flag_default=None,
    )
    add_image_level_feature: bool = option(
        True, "Add the image-pooling ASPP branch.", flag="bool", shapes=True
    )
    aspp_with_separable_conv: bool = option(
        True, "Separable convs in the ASPP branches.", flag="bool", shapes=True
    )
    decoder_use_separable_conv: bool = option(
        True, "Separable convs in the decoder.", flag="bool", shapes=True
    )
    aspp_convs_filters: int = option(
        256, "Channels of the ASPP convolutions.", flag="int", shapes=True
    )
    decoder_filters: int = option(
        256, "Channels of the decoder convolutions.", flag="int", shapes=True
    )
    aspp_with_concat_projection: bool = option(
        True, "Project the concatenated ASPP branches (1x1 conv).", flag="bool", shapes=True
    )
    aspp_with_squeeze_and_excitation: bool = option(
        False,
        "Use the image-pooling feature as a sigmoid gate on the ASPP output instead of a branch.",
        flag="bool",
        shapes=True,
    )
    decoder_use_sum_merge: bool = option(
        False,
        "Merge the decoder's two inputs by a sum (one conv) instead of a concatenation.",
        flag="bool",
        shapes=True,
    )
    decoder_output_is_logits: bool = option(
        False,
        "The decoder output is the logits (no logits layer); needs decoder_filters=num_classes.",
        flag="bool",
        shapes=True,
    )
    aspp_with_batch_norm: bool = option(
        True,
        "Use batch norm in ASPP (the only setting the command lines support; false builds no "
        "ASPP, as the official code).",
        flag="bool",
        shapes=True,
    )
    # The official flag: a JSON dense prediction cell description that replaces ASPP (see
    # deeplab/modeling/dense_prediction_cell.py); None or "" uses ASPP.
    dense_prediction_cell_json: Optional[str] = option(
        None,
        "A JSON file that specifies the dense prediction cell (replaces ASPP); the official "
        "deeplab/core/dense_prediction_cell_branch5_top1_cityscapes.json resolves to the "
        "packaged copy.",
        flag="string",
        shapes=True,
    )
    multi_grid: Optional[Tuple[int, ...]] = option(
        None, "Unit rates of the last Xception / ResNet block, e.g. 1,2,4.", flag="int_list"
    )
    crop_size: Optional[Tuple[int, int]] = option(
        None,
        "Crop size (h,w) that sets the image-pooling window (the command lines: their crop "
        "flag); unset: global pooling.",
        flag="int_list",
        scope=None,
    )
    image_pooling_crop_size: Optional[Tuple[int, int]] = option(
        None,
        "Crop size (h,w) that sets the image-pooling window; unset: global pooling.",
        flag="int_list",
    )
    image_pooling_stride: Tuple[int, int] = option(
        (1, 1), "Stride (h,w) of the ASPP image-pooling average pool.", flag="int_list"
    )
    image_se_uses_qsigmoid: bool = option(
        False,
        "The image-pooling gate uses the hard sigmoid relu6(x + 3) * 0.16667.",
        flag="bool",
    )
    # Short runs from scratch need a faster decay than the official ones (e.g. 0.99) for the
    # moving statistics to catch up with the weights before evaluation.
    batch_norm_decay: Optional[float] = option(
        None,
        "BatchNorm moving-average decay; unset keeps the official ones (0.9997, "
        "MobileNetV2 and MobileNetV3 0.997, ResNet 0.95).",
        flag="float",
    )
    weight_decay: float = option(
        4e-5, "The value of the weight decay for training.", flag="float", scope="train"
    )
    fine_tune_batch_norm: bool = option(
        True,
        "Fine tune the batch norm parameters or not (False: BatchNorm uses and "
        "keeps its moving statistics; gamma and beta still train).",
        flag="bool",
        scope="train",
    )
    upsample_logits: bool = option(
        True, "Upsample logits during training.", flag="bool", scope="train"
    )

    def __post_init__(self):
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 (frozen dataclass)
        set_("atrous_rates", _int_tuple(self.atrous_rates))
        set_("multi_grid", _int_tuple(self.multi_grid))
        dos = self.decoder_output_stride
        if isinstance(dos, Sequence) and not isinstance(dos, str):
            # The official flag is a list; only a single decoder stage is used by every
            # released recipe, so accept a one-element list.
            if len(dos) > 1:
                raise ValueError(
                    f"--decoder_output_stride: only one decoder stage is supported, got {list(dos)}"
                )
            dos = dos[0] if dos else None
        set_("decoder_output_stride", None if dos is None else int(dos))
        for field in ("crop_size", "image_pooling_crop_size"):
            if getattr(self, field) is not None:
                set_(field, tuple(int(c) for c in getattr(self, field)))
        set_("image_pooling_stride", tuple(int(s) for s in self.image_pooling_stride))
        set_("dense_prediction_cell_json", self.dense_prediction_cell_json or None)
        self.validate()

    def validate(self) -> None:
        """Raises ValueError naming the offending option."""
        if self.model_variant not in MODEL_VARIANTS:
            raise ValueError(
                f"--model_variant={self.model_variant!r} is not one of {MODEL_VARIANTS}"
            )
        if self.output_stride not in OUTPUT_STRIDES:
            raise ValueError(
                f"--output_stride={self.output_stride} must be one of {OUTPUT_STRIDES}"
            )
        if self.num_classes < 1:
            raise ValueError(f"--num_classes={self.num_classes} must be >= 1")
        dos = self.decoder_output_stride
        if dos is not None:
            allowed = decoder_output_strides(self.model_variant)
            if dos not in allowed:
                raise ValueError(
                    f"--decoder_output_stride={dos} must be one of {allowed} or unset "
                    f"for --model_variant={self.model_variant}"
                )
            if dos >= self.output_stride:
                raise ValueError(
                    f"--decoder_output_stride={dos} must be smaller than --output_stride={self.output_stride}"
                )
        if self.atrous_rates is not None and any(r < 1 for r in self.atrous_rates):
            raise ValueError(f"--atrous_rates={list(self.atrous_rates)} must be positive")
        if self.multi_grid is not None:
            if len(self.multi_grid) != 3 or any(r < 1 for r in self.multi_grid):
                raise ValueError(
                    f"--multi_grid={list(self.multi_grid)} must be three positive rates"
                )
            if self.model_variant not in MULTI_GRID_VARIANTS:
                raise ValueError(
                    f"--multi_grid applies to --model_variant in {MULTI_GRID_VARIANTS} only, "
                    f"not {self.model_variant!r}"
                )
        for field in ("crop_size", "image_pooling_crop_size", "image_pooling_stride"):
            value = getattr(self, field)
            if value is not None and (len(value) != 2 or min(value) < 1):
                raise ValueError(f"--{field}={list(value)} must be two positive integers")
        self._validate_head()
        if self.depth_multiplier <= 0:
            raise ValueError(f"--depth_multiplier={self.depth_multiplier} must be > 0")
        if self.batch_norm_decay is not None and not 0.0 <= self.batch_norm_decay < 1.0:
            raise ValueError(f"--batch_norm_decay={self.batch_norm_decay} must be in [0, 1)")
        if self.weight_decay < 0:
            raise ValueError(f"--weight_decay={self.weight_decay} must be >= 0")
        if self.dense_prediction_cell_json is not None:
            cell = cell_description.load_cell(self.dense_prediction_cell_json)
            cell_description.check_cell(cell, self.output_stride, self.image_pooling_size())

    def _validate_head(self) -> None:
        for field in ("aspp_convs_filters", "decoder_filters"):
            if getattr(self, field) < 1:
                raise ValueError(f"--{field}={getattr(self, field)} must be >= 1")
        if self.decoder_output_is_logits:
            if self.decoder_output_stride is None:
                raise ValueError(
                    "--decoder_output_is_logits needs a decoder: set --decoder_output_stride "
                    f"(one of {decoder_output_strides(self.model_variant)})"
                )
            if self.decoder_filters != self.num_classes:
                raise ValueError(
                    f"--decoder_filters={self.decoder_filters} must equal --num_classes="
                    f"{self.num_classes} with --decoder_output_is_logits (the decoder output is "
                    "the logits)"
                )

    def image_pooling_size(self) -> Optional[Tuple[int, int]]:
        """The crop size that sets the image-pooling window (None: global pooling)."""
        return self.image_pooling_crop_size or self.crop_size

    def replace(self, **changes) -> "ModelOptions":
        """A copy with some options changed (re-validated)."""
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_recipe(cls, name: str, **overrides) -> "ModelOptions":
        """The options of the named model-zoo recipe (`deeplab.modeling.recipes`), with
        `overrides` (any field, e.g. `num_classes=7` or `output_stride=8`) applied over it."""
        recipe = recipes.get_recipe(name)
        return cls(
            **{
                **command_line_defaults(),
                "num_classes": recipe.num_classes,
                **dict(recipe.flags),
                **overrides,
            }
        )

    @classmethod
    def from_dict(cls, data: dict) -> "ModelOptions":
        """Options from `as_dict` output (e.g. model_options.json); other keys are ignored."""
        return cls(**{k: v for k, v in data.items() if k in FIELD_NAMES})

    def as_dict(self) -> dict:
        """{field: value} with lists for tuples: JSON-ready, and `from_dict` gives it back."""
        return {
            name: list(value) if isinstance(value, tuple) else value
            for name, value in dataclasses.asdict(self).items()
        }


# The declarations, and what is derived from them for the other modules.
OPTION_FIELDS: Tuple[dataclasses.Field, ...] = dataclasses.fields(ModelOptions)
FIELD_NAMES: Tuple[str, ...] = tuple(f.name for f in OPTION_FIELDS)
# Fields that change variable shapes or the layer list, most likely first (the declaration
# order): what the checkpoint-mismatch explanation compares.
SHAPE_FIELDS: Tuple[str, ...] = tuple(f.name for f in OPTION_FIELDS if f.metadata["shapes"])


def command_line_defaults() -> dict:
    """{field: value} of the options when no model flag is given (the official common.py
    defaults), without `num_classes` (the dataset's on a command line)."""
    return {f.name: f.metadata["flag_default"] for f in OPTION_FIELDS if f.name != "num_classes"}


def options_summary(options: ModelOptions) -> str:
    """The fields of `options` that differ from the defaults, `name=value` (a short log line)."""
    defaults = ModelOptions()
    return ", ".join(
        f"{f.name}={getattr(options, f.name)}"
        for f in dataclasses.fields(ModelOptions)
        if getattr(options, f.name) != getattr(defaults, f.name)
    )
