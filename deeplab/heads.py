"""ASPP with image pooling, the DeepLabV3+ decoder and the logits layer (official model.py).

ASPP and decoder convs use BN epsilon 1e-5, decay 0.9997, ReLU, SAME padding; slim's default
(Glorot uniform) initialiser for plain convs and the official truncated normals for split
separable convs and logits.
"""

from __future__ import annotations

from typing import Optional, Sequence

import keras

from deeplab.layers import (
    ConvStyle,
    ImagePooling,
    ResizeBilinear,
    conv_bn,
    layer_name,
    scale_dimension,
    split_separable_conv,
)

ASPP_FILTERS = 256
DECODER_FILTERS = 256
DECODER_PROJECTION_FILTERS = 48
DROPOUT_RATE = 0.1  # official keep_prob 0.9 after the concat projection


def head_style(
    weight_decay: float, fine_tune_batch_norm: bool, bn_decay: float = 0.9997
) -> ConvStyle:
    """The arg_scope of the official ASPP and decoder."""
    return ConvStyle(
        weight_decay=weight_decay,
        bn_epsilon=1e-5,
        bn_momentum=bn_decay,
        activation="relu",
        init_stddev=None,
        fine_tune_batch_norm=fine_tune_batch_norm,
    )


def aspp(
    features,
    style: ConvStyle,
    *,
    atrous_rates: Optional[Sequence[int]],
    add_image_level_feature: bool,
    separable: bool,
    pool_size=None,
):
    """Atrous spatial pyramid pooling: [image pooling], 1x1 `aspp0`, atrous `aspp1..n`,
    concatenated, projected to 256 channels by `concat_projection`, then dropout."""
    branches = []
    if add_image_level_feature:
        pooled = ImagePooling(pool_size, name="image_pooling.pool")(features)
        pooled = conv_bn(pooled, ASPP_FILTERS, 1, "image_pooling", style)
        branches.append(ResizeBilinear(name="image_pooling.resize")([pooled, features]))
    branches.append(conv_bn(features, ASPP_FILTERS, 1, "aspp0", style))
    for i, rate in enumerate(atrous_rates or (), start=1):
        if separable:
            branches.append(
                split_separable_conv(features, ASPP_FILTERS, f"aspp{i}", style, rate=rate)
            )
        else:
            branches.append(conv_bn(features, ASPP_FILTERS, 3, f"aspp{i}", style, rate=rate))
    x = keras.layers.Concatenate(name="aspp.concat")(branches) if len(branches) > 1 else branches[0]
    x = conv_bn(x, ASPP_FILTERS, 1, "concat_projection", style)
    return keras.layers.Dropout(DROPOUT_RATE, name="concat_projection.dropout")(x)


def decoder(features, low_level, style: ConvStyle, *, separable: bool):
    """The DeepLabV3+ decoder: 48-channel projection of the low-level features, ASPP output
    upsampled to their size (align_corners), concatenated, two 3x3 convs of 256 channels."""
    projected = conv_bn(
        low_level, DECODER_PROJECTION_FILTERS, 1, "decoder/feature_projection0", style
    )
    upsampled = ResizeBilinear(name="decoder.resize")([features, low_level])
    x = keras.layers.Concatenate(name="decoder.concat")([upsampled, projected])
    if separable:
        x = split_separable_conv(x, DECODER_FILTERS, "decoder/decoder_conv0", style)
        return split_separable_conv(x, DECODER_FILTERS, "decoder/decoder_conv1", style)
    # slim.repeat(conv2d, 2, scope='decoder_conv0') names its convs decoder_conv0_1, _2.
    for i in (1, 2):
        x = conv_bn(x, DECODER_FILTERS, 3, f"decoder/decoder_conv0/decoder_conv0_{i}", style)
    return x


def logits_layer(features, num_classes: int, weight_decay: float):
    """`logits/semantic`: 1x1 conv with bias, no BN, no activation, float32 output."""
    regularizer = keras.regularizers.L2(weight_decay / 2.0) if weight_decay > 0 else None
    return keras.layers.Conv2D(
        num_classes,
        1,
        use_bias=True,
        kernel_initializer=keras.initializers.TruncatedNormal(stddev=0.01),
        kernel_regularizer=regularizer,
        dtype="float32",
        name=layer_name("logits/semantic"),
    )(features)


def image_pooling_window(crop_size, output_stride: int):
    """Pool window of the official image pooling for a crop size (None: global pooling)."""
    if crop_size is None:
        return None
    return (
        scale_dimension(crop_size[0], 1.0 / output_stride),
        scale_dimension(crop_size[1], 1.0 / output_stride),
    )
