"""MobileNetV3 large / small "seg" feature extractors (official DeepLab `mobilenet_v3_*_seg`).

The slim MobileNetV3 (Howard et al. 2019) with the DeepLab segmentation change: the last three
inverted-residual units and the final 1x1 conv have half the channels (the expansions of the
changed units are set so that they expand to 336/480/480 (large) and 144/288/288 (small)
channels), and the network ends at that 1x1 conv (`Conv_1`, endpoint `layer_17` / `layer_13`).

A unit: [1x1 expand conv + BN + act] -> kxk depthwise + BN + act -> [squeeze-excite] -> 1x1
linear project + BN, plus a residual sum when the stride is 1 and the depth is unchanged.
Activations are ReLU or hard swish, the squeeze-excite gate is relu6(x + 3) * 0.16667.
SAME padding throughout; BN epsilon 1e-3, decay 0.997 (DeepLab's MobileNet arg scope).
"""

from __future__ import annotations

from typing import Dict, List, NamedTuple, Optional, Tuple

import keras

from deeplab.modeling.backbones.mobilenet_v2 import make_divisible
from deeplab.modeling.layers import (
    AtrousSchedule,
    ConvStyle,
    conv_bias,
    conv_bn,
    depthwise_bn,
    layer_name,
)

SCOPE = "MobilenetV3"
_SE_SQUEEZE_FACTOR = 4


class Unit(NamedTuple):
    """One `expanded_conv` of the slim conv defs."""

    kernel: int
    expansion: float  # of the unit's input depth, rounded to a multiple of 8
    outputs: float
    stride: int
    activation: str  # "relu" or "hard_swish"
    squeeze_excite: bool


def _unit(ef, n, k, s=1, act="relu", se=False) -> Unit:
    return Unit(k, ef, n, s, act, se)


# slim nets/mobilenet/mobilenet_v3.py V3_LARGE and V3_SMALL, between the stem conv (16 channels,
# stride 2, hard swish) and the final 1x1 conv (960 / 576 channels, hard swish).
_HS = "hard_swish"
_LARGE_UNITS = [
    _unit(1, 16, 3),
    _unit(4, 24, 3, 2),
    _unit(3, 24, 3),
    _unit(3, 40, 5, 2, se=True),
    _unit(3, 40, 5, se=True),
    _unit(3, 40, 5, se=True),
    _unit(6, 80, 3, 2, _HS),
    _unit(2.5, 80, 3, 1, _HS),
    _unit(184 / 80.0, 80, 3, 1, _HS),
    _unit(184 / 80.0, 80, 3, 1, _HS),
    _unit(6, 112, 3, 1, _HS, True),
    _unit(6, 112, 3, 1, _HS, True),
    _unit(6, 160, 5, 2, _HS, True),
    _unit(6, 160, 5, 1, _HS, True),
    _unit(6, 160, 5, 1, _HS, True),
]
_SMALL_UNITS = [
    _unit(1, 16, 3, 2, se=True),
    _unit(72.0 / 16, 24, 3, 2),
    _unit(88.0 / 24, 24, 3, 1),
    _unit(4, 40, 5, 2, _HS, True),
    _unit(6, 40, 5, 1, _HS, True),
    _unit(6, 40, 5, 1, _HS, True),
    _unit(3, 48, 5, 1, _HS, True),
    _unit(3, 48, 5, 1, _HS, True),
    _unit(6, 96, 5, 2, _HS, True),
    _unit(6, 96, 5, 1, _HS, True),
    _unit(6, 96, 5, 1, _HS, True),
]
_STEM_OUTPUTS = 16
_LAST_CONV = {"mobilenet_v3_large_seg": 960, "mobilenet_v3_small_seg": 576}
# The segmentation variants halve the last units and the last conv and fix the expanded depth
# of the halved units (feature_extractor.py: mobilenet_v3_{large,small}_seg).
_SEG_EXPANSIONS = {
    "mobilenet_v3_large_seg": (336, 480, 480),
    "mobilenet_v3_small_seg": (144, 288, 288),
}

# Low-level features for the decoder by output stride (official DECODER_END_POINTS). layer_N is
# the N-th op of the conv defs counting the stem conv as layer_1.
DECODER_END_POINTS: Dict[str, Dict[int, str]] = {
    "mobilenet_v3_large_seg": {
        4: "layer_4/depthwise_output",
        8: "layer_7/depthwise_output",
        16: "layer_13/depthwise_output",
    },
    "mobilenet_v3_small_seg": {
        4: "layer_2/depthwise_output",
        8: "layer_4/depthwise_output",
        16: "layer_9/depthwise_output",
    },
}
VARIANTS = tuple(DECODER_END_POINTS)


def seg_conv_defs(model_variant: str) -> Tuple[List[Unit], float]:
    """(units, last conv depth) of a `_seg` variant, before the depth multiplier."""
    units = list(_LARGE_UNITS if model_variant == "mobilenet_v3_large_seg" else _SMALL_UNITS)
    first = len(units) - 3
    for i, expanded in enumerate(_SEG_EXPANSIONS[model_variant]):
        index = first + i
        halved = units[index]._replace(outputs=units[index].outputs / 2)
        # The factor is taken against the previous unit's (possibly already halved) outputs.
        units[index] = halved._replace(expansion=expanded / units[index - 1].outputs)
    return units, _LAST_CONV[model_variant] / 2


def _unit_scope(index: int) -> str:
    return f"{SCOPE}/expanded_conv" if index == 0 else f"{SCOPE}/expanded_conv_{index}"


def squeeze_excite(x, scope: str, style: ConvStyle):
    """slim `squeeze_excite` (factor 4, ReLU inside, hard-sigmoid gate): x * gate(mean(x))."""
    channels = int(x.shape[-1])
    squeeze = make_divisible(channels / _SE_SQUEEZE_FACTOR, 8)
    scope = scope + "/squeeze_excite"
    pooled = keras.layers.GlobalAveragePooling2D(keepdims=True, name=layer_name(scope + "/pool"))(x)
    gate = conv_bias(pooled, squeeze, 1, scope + "/Conv", style, activation="relu")
    gate = conv_bias(gate, channels, 1, scope + "/Conv_1", style, activation="hard_sigmoid")
    return keras.layers.Multiply(name=layer_name(scope + "/mul"))([x, gate])


def build_mobilenet_v3(
    images,
    model_variant: str,
    output_stride: int,
    style: ConvStyle,
    depth_multiplier: float = 1.0,
):
    """MobileNetV3 `_seg` features from preprocessed images ([-1, 1]).

    Returns (features, end_points); end points are named as the official ones
    (`layer_7/depthwise_output`, ...). Once the running stride reaches `output_stride`, later
    strides become 1 and dilate the following depthwise convs (slim `mobilenet_base`).
    """
    if model_variant not in VARIANTS:
        raise ValueError(f"--model_variant={model_variant!r} is not one of {VARIANTS}")
    units, last_conv = seg_conv_defs(model_variant)

    def depth(d: float) -> int:
        return make_divisible(d * depth_multiplier, 8, 8)

    end_points: Dict[str, object] = {}
    x = conv_bn(images, depth(_STEM_OUTPUTS), 3, SCOPE + "/Conv", style, stride=2, activation=_HS)
    end_points["layer_1"] = x
    schedule = AtrousSchedule(output_stride, current_stride=2)
    for i, unit in enumerate(units):
        layer_stride, layer_rate = schedule.next_unit(unit.stride)
        scope = _unit_scope(i)
        in_depth = int(x.shape[-1])
        inner = make_divisible(in_depth * unit.expansion, 8)
        net = x
        if inner > in_depth:
            net = conv_bn(net, inner, 1, scope + "/expand", style, activation=unit.activation)
        net = depthwise_bn(
            net,
            scope + "/depthwise",
            style,
            kernel_size=unit.kernel,
            stride=layer_stride,
            rate=layer_rate,
            activation=unit.activation,
        )
        end_points[f"layer_{i + 2}/depthwise_output"] = net
        if unit.squeeze_excite:
            net = squeeze_excite(net, scope, style)
        net = conv_bn(net, depth(unit.outputs), 1, scope + "/project", style, activation=None)
        if layer_stride == 1 and int(net.shape[-1]) == in_depth:
            net = keras.layers.Add(name=layer_name(scope + "/add"))([net, x])
        end_points[f"layer_{i + 2}"] = net
        x = net
    if not schedule.reached:
        raise ValueError(
            f"--output_stride={output_stride} cannot be reached by {model_variant} "
            f"(its features are at stride {schedule.current_stride})"
        )
    x = conv_bn(x, depth(last_conv), 1, SCOPE + "/Conv_1", style, activation=_HS)
    end_points[f"layer_{len(units) + 2}"] = x
    return x, end_points


def decoder_end_point(model_variant: str, decoder_output_stride: int) -> Optional[str]:
    """The end point the decoder projects at `decoder_output_stride` (None if there is none)."""
    return DECODER_END_POINTS[model_variant].get(decoder_output_stride)
