"""MobileNetV2 up to `layer_18` (the official DeepLab feature extractor, slim nets/mobilenet).

Inverted residual units: 1x1 expand (BN, ReLU6), 3x3 depthwise (BN, ReLU6), 1x1 linear project
(BN), with a residual sum when the stride is 1 and the depth is unchanged. SAME padding
throughout, BN epsilon 1e-3 and decay 0.997 (the official mobilenet training scope).
"""

from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import keras

from deeplab.modeling.layers import AtrousSchedule, ConvStyle, conv_bn, depthwise_bn

# (num_outputs, stride, expansion factor) of `expanded_conv`, `expanded_conv_1`, ... (V2_DEF).
_UNITS: List[Tuple[int, int, int]] = (
    [(16, 1, 1)]
    + [(24, 2, 6), (24, 1, 6)]
    + [(32, 2, 6)]
    + [(32, 1, 6)] * 2
    + [(64, 2, 6)]
    + [(64, 1, 6)] * 3
    + [(96, 1, 6)] * 3
    + [(160, 2, 6)]
    + [(160, 1, 6)] * 2
    + [(320, 1, 6)]
)

# Low-level features for the decoder by output stride (official DECODER_END_POINTS); layer_N
# is the N-th op of the spec counting `Conv` as layer_1.
DECODER_END_POINTS: Dict[int, str] = {4: "layer_4/depthwise_output", 8: "layer_7/depthwise_output"}


def make_divisible(value: float, divisor: int, min_value: Optional[int] = None) -> int:
    """The official `_make_divisible`: round to a multiple of `divisor`, never below 90%."""
    min_value = divisor if min_value is None else min_value
    new_value = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if new_value < 0.9 * value:
        new_value += divisor
    return int(new_value)


def _unit_scope(index: int) -> str:
    return "expanded_conv" if index == 0 else f"expanded_conv_{index}"


def build_mobilenet_v2(
    images,
    output_stride: int,
    style: ConvStyle,
    depth_multiplier: float = 1.0,
    divisible_by: Optional[int] = None,
):
    """MobileNetV2 features from preprocessed images ([-1, 1]); returns (features, end_points)."""
    if divisible_by is None:
        divisible_by = 8 if depth_multiplier == 1.0 else 1
    min_depth = 8 if depth_multiplier == 1.0 else 1

    def depth(d: int) -> int:
        return make_divisible(d * depth_multiplier, divisible_by, min_depth)

    end_points: Dict[str, object] = {}
    x = conv_bn(images, depth(32), 3, "MobilenetV2/Conv", style, stride=2)
    schedule = AtrousSchedule(output_stride, current_stride=2)
    for i, (outputs, stride, expansion) in enumerate(_UNITS):
        layer_stride, layer_rate = schedule.next_unit(stride)
        scope = "MobilenetV2/" + _unit_scope(i)
        in_depth = x.shape[-1]
        inner = make_divisible(in_depth * expansion, 8 if expansion > 1 else 1)
        net = x
        if inner > in_depth:
            net = conv_bn(net, inner, 1, scope + "/expand", style)
        net = depthwise_bn(net, scope + "/depthwise", style, stride=layer_stride, rate=layer_rate)
        end_points[f"layer_{i + 2}/depthwise_output"] = net
        net = conv_bn(net, depth(outputs), 1, scope + "/project", style, activation=None)
        if layer_stride == 1 and net.shape[-1] == in_depth:
            net = keras.layers.Add(name=scope.replace("/", ".") + ".add")([net, x])
        x = net
    if not schedule.reached:
        raise ValueError(f"output_stride={output_stride} cannot be reached by mobilenet_v2")
    return x, end_points
