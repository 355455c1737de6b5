"""Xception-41/65/71 with atrous depthwise separable convs (official core/xception.py layout).

Each xception module applies three separable convs (depthwise + BN, pointwise + BN) with a
ReLU before each (or, in the last exit-flow block, after each), and a 1x1 conv shortcut, a
sum, or nothing. Output stride is reached the official way: once the running stride equals the
requested one, later strides become 1 and multiply the atrous rate instead.
"""

from __future__ import annotations

import dataclasses
from typing import Dict, List, Optional, Sequence, Tuple

import keras

from deeplab.modeling.layers import (
    AtrousSchedule,
    ConvStyle,
    activation_layer,
    conv_bn,
    depthwise_bn,
    fixed_padding,
)


@dataclasses.dataclass(frozen=True)
class XceptionBlock:
    """One official `xception_block`: `num_units` identical xception modules."""

    scope: str
    depth_list: Tuple[int, int, int]
    skip_connection_type: str  # 'conv', 'sum' or 'none'
    activation_fn_in_separable_conv: bool
    num_units: int
    stride: int
    unit_rate_list: Tuple[int, int, int] = (1, 1, 1)


def _entry_blocks(variant: str) -> List[XceptionBlock]:
    if variant == "xception_71":
        spec = [(128, 2), (256, 1), (256, 2), (728, 1), (728, 2)]
    else:
        spec = [(128, 2), (256, 2), (728, 2)]
    return [
        XceptionBlock(f"entry_flow/block{i}", (depth,) * 3, "conv", False, 1, stride)
        for i, (depth, stride) in enumerate(spec, start=1)
    ]


def xception_blocks(
    variant: str, multi_grid: Optional[Sequence[int]] = None
) -> List[XceptionBlock]:
    """The block list of `xception_41`, `xception_65` or `xception_71`."""
    middle_units = {"xception_41": 8, "xception_65": 16, "xception_71": 16}
    if variant not in middle_units:
        raise ValueError(f"unknown Xception variant {variant!r}")
    rates = tuple(multi_grid) if multi_grid else (1, 1, 1)
    return _entry_blocks(variant) + [
        XceptionBlock(
            "middle_flow/block1", (728, 728, 728), "sum", False, middle_units[variant], 1
        ),
        XceptionBlock("exit_flow/block1", (728, 1024, 1024), "conv", False, 1, 2),
        XceptionBlock("exit_flow/block2", (1536, 1536, 2048), "none", True, 1, 1, rates),
    ]


# Low-level features for the decoder, by decoder output stride (official DECODER_END_POINTS).
DECODER_END_POINTS: Dict[str, Dict[int, str]] = {
    "xception_41": {
        4: "entry_flow/block2/unit_1/xception_module/separable_conv2_pointwise",
        8: "entry_flow/block3/unit_1/xception_module/separable_conv2_pointwise",
    },
    "xception_65": {
        4: "entry_flow/block2/unit_1/xception_module/separable_conv2_pointwise",
        8: "entry_flow/block3/unit_1/xception_module/separable_conv2_pointwise",
    },
    "xception_71": {
        4: "entry_flow/block3/unit_1/xception_module/separable_conv2_pointwise",
        8: "entry_flow/block5/unit_1/xception_module/separable_conv2_pointwise",
    },
}


def _separable_conv(
    x, depth: int, scope: str, style: ConvStyle, *, stride: int, rate: int, activation_inside: bool
):
    """The official `separable_conv2d_same` with split depthwise / pointwise scopes."""
    if not activation_inside:
        x = activation_layer(style.activation, scope.replace("/", ".") + ".preact")(x)
    act = style.activation if activation_inside else None
    padding = "same"
    if stride > 1:
        x = fixed_padding(x, 3, rate, scope)
        padding = "valid"
    x = depthwise_bn(
        x, scope + "_depthwise", style, stride=stride, rate=rate, activation=act, padding=padding
    )
    return conv_bn(x, depth, 1, scope + "_pointwise", style, activation=act)


def xception_module(
    x,
    block: XceptionBlock,
    scope: str,
    style: ConvStyle,
    *,
    stride: int,
    rate: int,
    end_points: Dict[str, object],
):
    """One official `xception_module` under `scope` (…/unit_N/xception_module)."""
    residual = x
    for i in range(3):
        sub = f"{scope}/separable_conv{i + 1}"
        residual = _separable_conv(
            residual,
            block.depth_list[i],
            sub,
            style,
            stride=stride if i == 2 else 1,
            rate=rate * block.unit_rate_list[i],
            activation_inside=block.activation_fn_in_separable_conv,
        )
        end_points[sub + "_pointwise"] = residual
    name = scope.replace("/", ".")
    if block.skip_connection_type == "conv":
        # A 1x1 stride-2 SAME conv pads nothing, in slim and in Keras alike.
        shortcut = conv_bn(
            x, block.depth_list[-1], 1, scope + "/shortcut", style, stride=stride, activation=None
        )
        return keras.layers.Add(name=name + ".add")([residual, shortcut])
    if block.skip_connection_type == "sum":
        return keras.layers.Add(name=name + ".add")([residual, x])
    return residual


def build_xception(
    images,
    variant: str,
    output_stride: int,
    style: ConvStyle,
    multi_grid: Optional[Sequence[int]] = None,
):
    """Xception features from preprocessed images ([-1, 1]).

    Returns `(features, end_points)`; end_points maps official scope suffixes (below the
    variant's scope) to tensors, for the decoder's low-level features.
    """
    if output_stride % 2:
        raise ValueError(f"output_stride={output_stride} must be even")
    end_points: Dict[str, object] = {}
    x = conv_bn(
        images, 32, 3, f"{variant}/entry_flow/conv1_1", style, stride=2, explicit_padding=True
    )
    x = conv_bn(x, 64, 3, f"{variant}/entry_flow/conv1_2", style)
    target = output_stride // 2  # the entry conv already has stride 2
    schedule = AtrousSchedule(target)
    for block in xception_blocks(variant, multi_grid):
        for unit in range(block.num_units):
            if schedule.current_stride > target:
                raise ValueError(f"output_stride={output_stride} cannot be reached")
            scope = f"{variant}/{block.scope}/unit_{unit + 1}/xception_module"
            stride, rate = schedule.next_unit(block.stride)
            x = xception_module(
                x, block, scope, style, stride=stride, rate=rate, end_points=end_points
            )
    if not schedule.reached:
        raise ValueError(f"output_stride={output_stride} cannot be reached by {variant}")
    prefix = variant + "/"
    return x, {k[len(prefix) :]: v for k, v in end_points.items()}
