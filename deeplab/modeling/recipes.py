"""Named recipes: the model-zoo configurations of the official research/deeplab.

A recipe is the model flags of an official model-zoo command line, in their order; every
other option keeps its official command-line default (`ModelOptions.from_recipe`).
Use one as `--recipe=NAME` on every command line (model flags given there override it),
`build_deeplab(recipe=NAME, ...)` or `ModelOptions.from_recipe(NAME, **overrides)`. The
README's model-zoo table is tested against `as_flags` of each recipe.
"""

from __future__ import annotations

import dataclasses
from typing import Dict, Tuple


@dataclasses.dataclass(frozen=True)
class Recipe:
    """One model-zoo configuration: its `name`, the `dataset` it was trained on and that
    dataset's `num_classes`, and `flags`, the (option, value) pairs of its official command
    line in order; every other option keeps its official command-line default
    (`ModelOptions.from_recipe`)."""

    name: str
    dataset: str
    num_classes: int
    flags: Tuple[Tuple[str, object], ...]

    def as_flags(self) -> str:
        """The recipe as the model flags of a command line, e.g. `--model_variant=xception_65
        --atrous_rates=6,12,18 --output_stride=16 --decoder_output_stride=4`."""
        return " ".join(f"--{name}={flag_text(value)}" for name, value in self.flags)


def flag_text(value) -> str:
    """An option value as a flag takes it: `6,12,18` for lists, `true` / `false` for booleans."""
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def _pascal(variant: str, output_stride: int) -> dict:
    """The PASCAL VOC recipes: MobileNetV2 without ASPP rates or decoder, the others
    DeepLabV3+ (ASPP rates for the output stride, decoder at 4; multi-grid for ResNet)."""
    if variant == "mobilenet_v2":
        return dict(model_variant=variant, output_stride=output_stride)
    flags = dict(
        model_variant=variant,
        atrous_rates={16: (6, 12, 18), 8: (12, 24, 36)}[output_stride],
        output_stride=output_stride,
        decoder_output_stride=4,
    )
    if variant.startswith("resnet"):
        flags["multi_grid"] = (1, 2, 4)
    return flags


def _mobilenet_v3(variant: str) -> dict:
    """The LR-ASPP-like MobileNetV3 Cityscapes recipes."""
    return dict(
        model_variant=variant,
        image_pooling_crop_size=(769, 769),
        image_pooling_stride=(4, 5),
        add_image_level_feature=True,
        aspp_convs_filters=128,
        aspp_with_concat_projection=False,
        aspp_with_squeeze_and_excitation=True,
        decoder_use_sum_merge=True,
        decoder_filters=19,
        decoder_output_is_logits=True,
        image_se_uses_qsigmoid=True,
        decoder_output_stride=8,
        output_stride=32,
    )


_PASCAL_VARIANTS = ("xception_65", "mobilenet_v2", "resnet_v1_50_beta", "resnet_v1_101_beta")
RECIPES: Dict[str, Recipe] = {
    f"{variant}_pascal_os{stride}": Recipe(
        f"{variant}_pascal_os{stride}",
        "pascal_voc_seg",
        21,
        tuple(_pascal(variant, stride).items()),
    )
    for variant in _PASCAL_VARIANTS
    for stride in (16, 8)
}
_DPC_CELL = "deeplab/core/dense_prediction_cell_branch5_top1_cityscapes.json"
RECIPES["xception_71_dpc_cityscapes"] = Recipe(
    "xception_71_dpc_cityscapes",
    "cityscapes",
    19,
    tuple(
        dict(
            model_variant="xception_71",
            output_stride=16,
            decoder_output_stride=4,
            dense_prediction_cell_json=_DPC_CELL,
        ).items()
    ),
)
for _size in ("large", "small"):
    _name = f"mobilenet_v3_{_size}_cityscapes"
    RECIPES[_name] = Recipe(
        _name, "cityscapes", 19, tuple(_mobilenet_v3(f"mobilenet_v3_{_size}_seg").items())
    )


def get_recipe(name: str) -> Recipe:
    """The recipe called `name`; ValueError listing the recipes otherwise."""
    if name not in RECIPES:
        raise ValueError(f"--recipe={name!r} is not one of {sorted(RECIPES)}")
    return RECIPES[name]
