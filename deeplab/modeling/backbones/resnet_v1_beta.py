"""ResNet-v1-50/101 "beta" (official core/resnet_v1_beta.py on slim's resnet_utils layout).

The beta root replaces the 7x7 stride-2 conv by three 3x3 convs (64, 64, 128 channels, the first
with stride 2), followed by a 3x3 stride-2 SAME max pool. Four blocks of bottleneck units follow
(1x1 -> 3x3 -> 1x1, BN after every conv, ReLU after the first two and after the residual sum);
the stride of blocks 1-3 sits in their last unit's 3x3 conv. Block 4 has three units whose
atrous rates are the `multi_grid` unit rates times the running rate. Output stride is reached
as in slim's `stack_blocks_dense`: once the running stride equals the requested one, later
strides become 1 and multiply the atrous rate instead.

BatchNorm: decay 0.95, epsilon 1e-5 (the official feature extractor's ResNet arg_scope); convs
initialised with slim's variance-scaling (He) initialiser.
"""

from __future__ import annotations

import dataclasses
from typing import Dict, List, Optional, Sequence, Tuple

import keras

from deeplab.modeling.layers import AtrousSchedule, ConvStyle, activation_layer, conv_bn, layer_name

# Model variant -> network scope in official (and ImageNet-pretrained) checkpoints.
SCOPES: Dict[str, str] = {
    "resnet_v1_50_beta": "resnet_v1_50",
    "resnet_v1_101_beta": "resnet_v1_101",
}
VARIANTS = tuple(SCOPES)
_BLOCK3_UNITS = {"resnet_v1_50_beta": 6, "resnet_v1_101_beta": 23}
DEFAULT_MULTI_GRID = (1, 1, 1)


@dataclasses.dataclass(frozen=True)
class Unit:
    """One bottleneck unit: output depth, bottleneck depth, stride, unit atrous rate."""

    depth: int
    depth_bottleneck: int
    stride: int
    unit_rate: int = 1


def resnet_blocks(variant: str, multi_grid: Optional[Sequence[int]] = None):
    """[(block scope, [Unit, ...]), ...] of `resnet_v1_50_beta` or `resnet_v1_101_beta`."""
    if variant not in _BLOCK3_UNITS:
        raise ValueError(f"unknown ResNet variant {variant!r}; expected one of {VARIANTS}")
    multi_grid = tuple(multi_grid) if multi_grid else DEFAULT_MULTI_GRID
    if len(multi_grid) != 3:
        raise ValueError(f"--multi_grid={list(multi_grid)} must have three rates for {variant}")

    def block(base_depth: int, num_units: int, stride: int) -> List[Unit]:
        unit = Unit(base_depth * 4, base_depth, 1)
        return [unit] * (num_units - 1) + [dataclasses.replace(unit, stride=stride)]

    return [
        ("block1", block(64, 3, 2)),
        ("block2", block(128, 4, 2)),
        ("block3", block(256, _BLOCK3_UNITS[variant], 2)),
        ("block4", [Unit(2048, 512, 1, rate) for rate in multi_grid]),
    ]


def decoder_end_points(variant: str) -> Dict[int, str]:
    """Low-level features for the decoder by output stride (official DECODER_END_POINTS): the
    last conv (after BN, before the residual sum) of the last unit before each stride."""
    last_of_block3 = _BLOCK3_UNITS[variant] - 1
    return {
        4: "block1/unit_2/bottleneck_v1/conv3",
        8: "block2/unit_3/bottleneck_v1/conv3",
        16: f"block3/unit_{last_of_block3}/bottleneck_v1/conv3",
    }


def bottleneck(x, unit: Unit, scope: str, style: ConvStyle, *, stride: int, rate: int):
    """The official `bottleneck` (bottleneck_v1) under `scope`; returns (output, conv3 output)."""
    if x.shape[-1] == unit.depth:
        # resnet_utils.subsample: a 1x1 max pool with the unit's stride (identity at stride 1).
        shortcut = x
        if stride > 1:
            shortcut = keras.layers.MaxPooling2D(
                1, strides=stride, padding="same", name=layer_name(scope + "/shortcut")
            )(x)
    else:
        # A 1x1 stride-2 SAME conv pads nothing, in slim and in Keras alike.
        shortcut = conv_bn(
            x, unit.depth, 1, scope + "/shortcut", style, stride=stride, activation=None
        )
    residual = conv_bn(x, unit.depth_bottleneck, 1, scope + "/conv1", style)
    residual = conv_bn(
        residual,
        unit.depth_bottleneck,
        3,
        scope + "/conv2",
        style,
        stride=stride,
        rate=rate * unit.unit_rate,
        explicit_padding=True,
    )
    conv3 = conv_bn(residual, unit.depth, 1, scope + "/conv3", style, activation=None)
    out = keras.layers.Add(name=layer_name(scope + "/add"))([shortcut, conv3])
    return activation_layer(style.activation, layer_name(scope + "/Relu"))(out), conv3


def build_resnet_v1_beta(
    images,
    variant: str,
    output_stride: int,
    style: ConvStyle,
    multi_grid: Optional[Sequence[int]] = None,
) -> Tuple[object, Dict[str, object]]:
    """ResNet-v1-beta features from preprocessed images ([-1, 1]).

    Returns `(features, end_points)`; end_points maps official scope suffixes (below the
    network scope, e.g. `block1/unit_2/bottleneck_v1/conv3`) to tensors.
    """
    if output_stride % 4:
        raise ValueError(f"--output_stride={output_stride} must be a multiple of 4 for {variant}")
    blocks = resnet_blocks(variant, multi_grid)
    net = SCOPES[variant]
    x = conv_bn(images, 64, 3, f"{net}/conv1_1", style, stride=2, explicit_padding=True)
    x = conv_bn(x, 64, 3, f"{net}/conv1_2", style)
    x = conv_bn(x, 128, 3, f"{net}/conv1_3", style)
    x = keras.layers.MaxPooling2D(3, strides=2, padding="same", name=layer_name(f"{net}/pool1"))(x)
    end_points: Dict[str, object] = {}
    target = output_stride // 4  # the root already has stride 4
    schedule = AtrousSchedule(target)
    for block_scope, units in blocks:
        for index, unit in enumerate(units):
            suffix = f"{block_scope}/unit_{index + 1}/bottleneck_v1"
            stride, unit_rate = schedule.next_unit(unit.stride)
            if schedule.current_stride > target:
                raise ValueError(f"--output_stride={output_stride} cannot be reached by {variant}")
            x, conv3 = bottleneck(x, unit, f"{net}/{suffix}", style, stride=stride, rate=unit_rate)
            end_points[suffix + "/conv3"] = conv3
            end_points[suffix] = x
    if not schedule.reached:
        raise ValueError(f"--output_stride={output_stride} cannot be reached by {variant}")
    return x, end_points
