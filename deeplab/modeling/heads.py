"""ASPP with image pooling, the DeepLabV3+ decoder and the logits layer (official model.py).

ASPP and decoder convs use BN epsilon 1e-5, decay 0.9997, ReLU, SAME padding; slim's default
(Glorot uniform) initialiser for plain convs and the official truncated normals for split
separable convs and logits.
"""

from __future__ import annotations

from typing import Optional, Sequence

import keras

from deeplab.modeling.layers import (
    ConvStyle,
    ImagePooling,
    ResizeBilinear,
    conv_bias,
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
    pool_stride=(1, 1),
    filters: int = ASPP_FILTERS,
    concat_projection: bool = True,
    squeeze_and_excitation: bool = False,
    qsigmoid: bool = False,
):
    """Atrous spatial pyramid pooling (official `extract_features` after the backbone).

    Branches: [image pooling], 1x1 `aspp0`, atrous `aspp1..n`, concatenated, then (with
    `concat_projection`) projected by the 1x1 `concat_projection` and dropout. Image pooling
    averages over `pool_size` windows (None: globally) with `pool_stride`, a 1x1 conv, and a
    bilinear resize to the feature size. With `squeeze_and_excitation` (the MobileNetV3 recipe)
    the image feature is not a branch but a gate: its conv has a bias and a sigmoid (the hard
    sigmoid with `qsigmoid`) instead of BN + ReLU, and multiplies the ASPP output.
    """
    branches = []
    gate = None
    if add_image_level_feature:
        pooling = ImagePooling(pool_size, pool_stride, name="image_pooling.pool")
        if pool_size is not None:
            pooling.check_fits(features.shape)  # a clear error before Keras wraps it
        pooled = pooling(features)
        if squeeze_and_excitation:
            activation = "hard_sigmoid" if qsigmoid else "sigmoid"
            pooled = conv_bias(pooled, filters, 1, "image_pooling", style, activation=activation)
        else:
            pooled = conv_bn(pooled, filters, 1, "image_pooling", style)
        image_feature = ResizeBilinear(name="image_pooling.resize")([pooled, features])
        if squeeze_and_excitation:
            gate = image_feature
        else:
            branches.append(image_feature)
    branches.append(conv_bn(features, filters, 1, "aspp0", style))
    for i, rate in enumerate(atrous_rates or (), start=1):
        if separable:
            branches.append(split_separable_conv(features, filters, f"aspp{i}", style, rate=rate))
        else:
            branches.append(conv_bn(features, filters, 3, f"aspp{i}", style, rate=rate))
    x = keras.layers.Concatenate(name="aspp.concat")(branches) if len(branches) > 1 else branches[0]
    if concat_projection:
        x = conv_bn(x, filters, 1, "concat_projection", style)
        x = keras.layers.Dropout(DROPOUT_RATE, name="concat_projection.dropout")(x)
    if gate is not None:
        x = keras.layers.Multiply(name="aspp.squeeze_and_excitation")([x, gate])
    return x


def decoder(
    features,
    low_level,
    style: ConvStyle,
    *,
    separable: bool,
    filters: int = DECODER_FILTERS,
    sum_merge: bool = False,
    output_is_logits: bool = False,
):
    """The DeepLabV3+ decoder (official `refine_by_decoder`, one stage).

    The low-level features are projected by a 1x1 conv (`feature_projection0`: 48 channels, or
    `filters` with `sum_merge`) and the ASPP output is resized (align_corners) to their size.
    Concat merge (the paper's): concatenation, then two 3x3 convs of `filters` channels. Sum
    merge (the MobileNetV3 recipe): one conv on the resized ASPP output plus the projection.
    `output_is_logits`: the decoder output is the logits, so its convs are plain convs with a
    bias (no BN, no activation, 1x1 under sum merge, never separable), in float32.
    """
    if output_is_logits:
        separable = False

        def conv(x, depth, kernel, scope):
            return conv_bias(x, depth, kernel, scope, style, dtype="float32")
    else:

        def conv(x, depth, kernel, scope):
            return conv_bn(x, depth, kernel, scope, style)

    projected = conv(
        low_level,
        filters if sum_merge else DECODER_PROJECTION_FILTERS,
        1,
        "decoder/feature_projection0",
    )
    upsampled = ResizeBilinear(name="decoder.resize")([features, low_level])
    if sum_merge:
        if separable:
            x = split_separable_conv(upsampled, filters, "decoder/decoder_split_sep_conv0", style)
        else:
            x = conv(upsampled, filters, 1 if output_is_logits else 3, "decoder/decoder_conv0")
        dtype = "float32" if output_is_logits else None
        return keras.layers.Add(name="decoder.sum", dtype=dtype)([x, projected])
    x = keras.layers.Concatenate(name="decoder.concat")([upsampled, projected])
    if separable:
        x = split_separable_conv(x, filters, "decoder/decoder_conv0", style)
        return split_separable_conv(x, filters, "decoder/decoder_conv1", style)
    # slim.repeat(conv2d, 2, scope='decoder_conv0') names its convs decoder_conv0_1, _2.
    for i in (1, 2):
        x = conv(x, filters, 3, f"decoder/decoder_conv0/decoder_conv0_{i}")
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
