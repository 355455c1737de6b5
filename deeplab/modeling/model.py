"""`build_deeplab`: the DeepLabV3+ Keras functional model, identical to the official graph.

images (0..255) -> x*2/255-1 (every variant here, the ResNet "beta" ones included) -> backbone
(atrous to the output stride) -> ASPP or the dense prediction cell -> [decoder] ->
logits/semantic -> bilinear upsampling (align_corners) to the input size. With
`decoder_output_is_logits` (the MobileNetV3 recipes) the decoder output is the logits (layer
`semantic`, the official tensor name) and there is no logits layer.
"""

from __future__ import annotations

import inspect
from typing import List, Optional

import keras

from deeplab.modeling import dense_prediction_cell
from deeplab.modeling.backbones import mobilenet_v2, mobilenet_v3, resnet_v1_beta, xception
from deeplab.modeling.heads import aspp, decoder, head_style, image_pooling_window, logits_layer
from deeplab.modeling.layers import ConvStyle, ResizeBilinear, ScaleToUnitRange, layer_name
from deeplab.modeling.options import OPTION_FIELDS, ModelOptions

# With `decoder_output_is_logits` the decoder output is the logits, named as the official tensor.
DECODER_LOGITS_LAYER = "semantic"

# Official scopes of the "last layers" (train.py: initialize_last_layer,
# last_layers_contain_logits_only, last_layer_gradient_multiplier).
LOGITS_SCOPE = "logits"
LAST_LAYER_SCOPES = (
    "logits",
    "image_pooling",
    "aspp",
    "concat_projection",
    "decoder",
    "meta_architecture",
)


def backbone_scope(model_variant: str) -> str:
    """Name scope of the backbone in official (and ImageNet-pretrained) checkpoints."""
    if model_variant in mobilenet_v3.VARIANTS:
        return mobilenet_v3.SCOPE
    if model_variant in resnet_v1_beta.SCOPES:
        return resnet_v1_beta.SCOPES[model_variant]
    return "MobilenetV2" if model_variant == "mobilenet_v2" else model_variant


def _bn_decay(options: ModelOptions, official: float) -> float:
    return official if options.batch_norm_decay is None else options.batch_norm_decay


def _backbone_style(options: ModelOptions, official_decay: float, activation: str) -> ConvStyle:
    """The backbone's arg scope: BatchNorm epsilon 1e-3, its official decay, its activation."""
    return ConvStyle(
        weight_decay=options.weight_decay,
        bn_epsilon=1e-3,
        bn_momentum=_bn_decay(options, official_decay),
        activation=activation,
        init_stddev=0.09,
        fine_tune_batch_norm=options.fine_tune_batch_norm,
    )


def _backbone(images, options: ModelOptions):
    if options.model_variant in mobilenet_v3.VARIANTS:
        return _mobilenet_v3_backbone(images, options)
    if options.model_variant == "mobilenet_v2":
        style = _backbone_style(options, 0.997, "relu6")
        features, end_points = mobilenet_v2.build_mobilenet_v2(
            images, options.output_stride, style, options.depth_multiplier, options.divisible_by
        )
        decoder_points = mobilenet_v2.DECODER_END_POINTS
    elif options.model_variant in resnet_v1_beta.VARIANTS:
        style = ConvStyle(
            weight_decay=options.weight_decay,
            bn_epsilon=1e-5,
            bn_momentum=_bn_decay(options, 0.95),
            activation="relu",
            variance_scaling_init=True,
            fine_tune_batch_norm=options.fine_tune_batch_norm,
        )
        features, end_points = resnet_v1_beta.build_resnet_v1_beta(
            images, options.model_variant, options.output_stride, style, options.multi_grid
        )
        decoder_points = resnet_v1_beta.decoder_end_points(options.model_variant)
    else:
        style = _backbone_style(options, 0.9997, "relu")
        features, end_points = xception.build_xception(
            images, options.model_variant, options.output_stride, style, options.multi_grid
        )
        decoder_points = xception.DECODER_END_POINTS[options.model_variant]
    low_level = None
    if options.decoder_output_stride is not None:
        low_level = end_points[decoder_points[options.decoder_output_stride]]
    return features, low_level


def _mobilenet_v3_backbone(images, options: ModelOptions):
    # DeepLab builds MobileNetV3 under its MobileNetV2 arg scope (BN decay 0.997, epsilon
    # 1e-3, truncated normal 0.09); the conv defs set ReLU / hard swish per layer.
    style = _backbone_style(options, 0.997, "relu")
    features, end_points = mobilenet_v3.build_mobilenet_v3(
        images,
        options.model_variant,
        options.output_stride,
        style,
        options.depth_multiplier,
    )
    low_level = None
    if options.decoder_output_stride is not None:
        point = mobilenet_v3.decoder_end_point(options.model_variant, options.decoder_output_stride)
        low_level = end_points[point]
    return features, low_level


def build_deeplab_from_options(
    options: ModelOptions, name: str = "deeplab", input_size=None
) -> keras.Model:
    """Builds the DeepLab model described by `options` (see `build_deeplab`).

    `input_size=(H, W)` fixes the input shape (static shapes for summaries and TFLite);
    None accepts any size.
    """
    height, width = input_size if input_size is not None else (None, None)
    images = keras.Input(shape=(height, width, 3), name="image")
    x = ScaleToUnitRange(name="preprocess")(images)
    features, low_level = _backbone(x, options)
    style = head_style(
        options.weight_decay, options.fine_tune_batch_norm, _bn_decay(options, 0.9997)
    )
    if options.aspp_with_batch_norm and options.dense_prediction_cell_json:
        features = dense_prediction_cell.dense_prediction_cell(
            features,
            dense_prediction_cell.load_cell(options.dense_prediction_cell_json),
            style,
            output_stride=options.output_stride,
            crop_size=options.image_pooling_size(),
        )
    elif options.aspp_with_batch_norm:
        features = aspp(
            features,
            style,
            atrous_rates=options.atrous_rates,
            add_image_level_feature=options.add_image_level_feature,
            separable=options.aspp_with_separable_conv,
            pool_size=image_pooling_window(options.image_pooling_size(), options.output_stride),
            pool_stride=options.image_pooling_stride,
            filters=options.aspp_convs_filters,
            concat_projection=options.aspp_with_concat_projection,
            squeeze_and_excitation=options.aspp_with_squeeze_and_excitation,
            qsigmoid=options.image_se_uses_qsigmoid,
        )
    if low_level is not None:
        features = decoder(
            features,
            low_level,
            style,
            separable=options.decoder_use_separable_conv,
            filters=options.decoder_filters,
            sum_merge=options.decoder_use_sum_merge,
            output_is_logits=options.decoder_output_is_logits,
        )
    if options.decoder_output_is_logits:
        logits = keras.layers.Identity(name=DECODER_LOGITS_LAYER, dtype="float32")(features)
    else:
        logits = logits_layer(features, options.num_classes, options.weight_decay)
    if options.upsample_logits:
        logits = ResizeBilinear(name="upsample_logits", dtype="float32")([logits, images])
    return keras.Model(images, logits, name=name)


def build_deeplab(*, recipe: Optional[str] = None, name: str = "deeplab", **options) -> keras.Model:
    """DeepLabV3+ as a Keras functional model; keyword arguments are the ModelOptions fields
    (the official flags, with the library defaults listed below), over the named model-zoo
    `recipe` (`deeplab.modeling.recipes`) when one is given.

    Input: float32 images [N, H, W, 3] with values 0..255, any H and W. Output: float32 logits
    [N, H, W, num_classes] resized bilinearly (align_corners=True) to the input size, or the
    pre-upsampling logits (layer `logits.semantic`, or `semantic` with
    `decoder_output_is_logits`) when `upsample_logits=False`.

    `crop_size` only sets the image-pooling window as the official code does
    (`image_pooling_crop_size` takes precedence); None pools globally, which equals the
    official graph at the crop size and works for any size. `fine_tune_batch_norm=False` keeps
    every BatchNorm on its moving statistics (gamma and beta still train).
    `dense_prediction_cell_json` (a JSON cell description file, or the official
    `deeplab/core/dense_prediction_cell_branch5_top1_cityscapes.json`) replaces ASPP by the
    dense prediction cell (`atrous_rates` and `add_image_level_feature` are then unused).
    Layer names are the official variable scopes with '/' -> '.'.
    """
    if recipe is not None:
        model_options = ModelOptions.from_recipe(recipe, **options)
    else:
        model_options = ModelOptions(**options)
    return build_deeplab_from_options(model_options, name=name)


# `build_deeplab`'s signature and docstring list every option as it is declared.
build_deeplab.__signature__ = inspect.Signature(
    [
        inspect.Parameter("recipe", inspect.Parameter.KEYWORD_ONLY, default=None),
        inspect.Parameter("name", inspect.Parameter.KEYWORD_ONLY, default="deeplab"),
    ]
    + [
        inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=f.default)
        for f in OPTION_FIELDS
    ],
    return_annotation=keras.Model,
)
if build_deeplab.__doc__:  # (python -OO strips docstrings)
    build_deeplab.__doc__ += "\n    Options (default): " + "; ".join(
        f"`{f.name}` ({f.default!r}) {f.metadata['help']}" for f in OPTION_FIELDS
    )


def weight_layers(model: keras.Model) -> List[keras.layers.Layer]:
    """Layers of `model` that own weights, in graph order."""
    return [layer for layer in model.layers if layer.weights]


def last_layers(model: keras.Model, logits_only: bool = False) -> List[keras.layers.Layer]:
    """The official "last layers": logits, or logits + image pooling + ASPP + decoder."""
    scopes = (LOGITS_SCOPE,) if logits_only else LAST_LAYER_SCOPES
    prefixes = tuple(layer_name(s) for s in scopes)
    # As the official exclude list: every variable whose scope starts with one of them.
    return [layer for layer in weight_layers(model) if layer.name.startswith(prefixes)]
