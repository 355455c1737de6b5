"""Model options as a frozen dataclass, with the official defaults and their checks."""

from __future__ import annotations

import dataclasses
from typing import Optional, Sequence, Tuple

from deeplab.modeling import cell_description

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


@dataclasses.dataclass(frozen=True)
class ModelOptions:
    """Everything that determines the DeepLab graph (names follow the official flags).

    `crop_size` only sets the image-pooling window (the official `crop_size`);
    `image_pooling_crop_size`, when set, sets it instead (as the official flag does). With
    neither the image pooling is global, so any input size works. The head options from
    `aspp_convs_filters` on are the official ones of the LR-ASPP-like MobileNetV3 recipes.
    """

    model_variant: str = "xception_65"
    num_classes: int = 21
    output_stride: int = 16
    atrous_rates: Optional[Tuple[int, ...]] = (6, 12, 18)
    decoder_output_stride: Optional[int] = 4
    crop_size: Optional[Tuple[int, int]] = None
    add_image_level_feature: bool = True
    aspp_with_batch_norm: bool = True
    aspp_with_separable_conv: bool = True
    decoder_use_separable_conv: bool = True
    multi_grid: Optional[Tuple[int, ...]] = None
    depth_multiplier: float = 1.0
    divisible_by: Optional[int] = None
    weight_decay: float = 4e-5
    fine_tune_batch_norm: bool = True
    upsample_logits: bool = True
    # BatchNorm moving-average decay; None keeps the official ones (0.9997 for Xception and the
    # heads, 0.997 for MobileNetV2, 0.95 for ResNet). Short runs from scratch need a faster one
    # (e.g. 0.99) for the moving statistics to catch up with the weights before evaluation.
    batch_norm_decay: Optional[float] = None
    image_pooling_crop_size: Optional[Tuple[int, int]] = None
    image_pooling_stride: Tuple[int, int] = (1, 1)
    aspp_convs_filters: int = 256
    aspp_with_concat_projection: bool = True
    aspp_with_squeeze_and_excitation: bool = False
    image_se_uses_qsigmoid: bool = False
    decoder_use_sum_merge: bool = False
    decoder_filters: int = 256
    decoder_output_is_logits: bool = False
    # The official flag: a JSON dense prediction cell description that replaces ASPP (see
    # deeplab/dense_prediction_cell.py); None or "" uses ASPP.
    dense_prediction_cell_json: Optional[str] = None

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


def options_summary(options: ModelOptions) -> str:
    """The fields of `options` that differ from the defaults, `name=value` (a short log line)."""
    defaults = ModelOptions()
    return ", ".join(
        f"{f.name}={getattr(options, f.name)}"
        for f in dataclasses.fields(ModelOptions)
        if getattr(options, f.name) != getattr(defaults, f.name)
    )
