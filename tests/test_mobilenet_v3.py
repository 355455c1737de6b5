"""MobileNetV3 large / small `_seg` with the official LR-ASPP-like head: official variables,
parameters and Mult-Adds, the official fixtures' logits, strides, and bad options."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from deeplab import ModelOptions, build_deeplab
from deeplab.checkpoints.official import load_official_checkpoint, official_variables
from deeplab.modeling import inference
from deeplab.modeling.backbones import mobilenet_v3
from deeplab.modeling.layers import BatchNorm, HardSigmoid, HardSwish
from deeplab.modeling.model import DECODER_LOGITS_LAYER
from deeplab.modeling.options import decoder_output_strides
from deeplab.modeling.summary import summarize
from tests import helpers

# Full DeepLab models (MobileNetV3 recipes) built and run.
# One worker runs this module (its module fixtures are built once).
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("mobilenet_v3")]

VARIANTS = ["mobilenet_v3_large_seg", "mobilenet_v3_small_seg"]
# The official Cityscapes recipe's head (model_zoo.md), without the class count.
RECIPE = dict(
    output_stride=32,
    atrous_rates=None,
    decoder_output_stride=8,
    image_pooling_stride=(4, 5),
    aspp_convs_filters=128,
    aspp_with_concat_projection=False,
    aspp_with_squeeze_and_excitation=True,
    image_se_uses_qsigmoid=True,
    decoder_use_sum_merge=True,
    decoder_output_is_logits=True,
)


def _recipe(variant, num_classes=19, **changes):
    return dict(
        RECIPE,
        model_variant=variant,
        num_classes=num_classes,
        decoder_filters=num_classes,
        **changes,
    )


def _size(count):
    return sum(int(np.prod(w.shape)) for w in count)


@pytest.mark.parametrize("variant", VARIANTS)
def test_variables_match_official_checkpoint_exactly(variant):
    _, flags = helpers.official_fixture(variant)
    model = build_deeplab(**flags["build_deeplab"])
    shapes = {name: list(v.shape) for name, v in official_variables(model).items()}
    assert shapes == helpers.official_variables(f"{variant}_19classes.txt")
    facts = helpers.facts()[f"{variant}_19classes"]
    assert _size(model.trainable_weights) == facts["trainable_params"]
    assert _size(model.weights) == facts["all_variable_elements"]
    assert len(model.weights) == facts["num_variables"]
    assert len(model.trainable_weights) == facts["num_trainable_variables"]
    assert (
        sum(isinstance(layer, BatchNorm) for layer in model.layers)
        == (facts["num_batch_norm_layers"])
    )


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("size", [(769, 769), (1025, 2049)])
def test_mult_adds_match_official(variant, size):
    _, flags = helpers.official_fixture(variant)
    summary = summarize(ModelOptions(**flags["build_deeplab"]), size)
    facts = helpers.facts()[f"{variant}_19classes"]
    key = "madds_{}x{}".format(*size)
    assert summary["trainable_params"] == facts["trainable_params"]
    # The official graph's conv-only count exactly, and its profiler total to within 2
    # Mult-Adds (well within 1%).
    assert summary["madds_tf1_conv_only"] == facts[key + "_conv_only"]
    assert abs(summary["madds_tf1"] - facts[key]) <= 2
    assert abs(summary["madds_tf1"] - facts[key]) / facts[key] < 0.01
    strides = {row["block"]: row["stride"] for row in summary["blocks"]}
    assert strides["MobilenetV3/Conv_1"] == 32
    assert strides["decoder/decoder_conv0"] == 8


@pytest.fixture(scope="module", params=VARIANTS)
def fixture_model(request):
    folder, flags = helpers.official_fixture(request.param)
    model = build_deeplab(**flags["build_deeplab"])
    report = load_official_checkpoint(model, os.path.join(folder, "model.ckpt"))
    assert len(report.loaded) == flags["num_variables"]
    assert not report.skipped and not report.unused
    images = np.load(os.path.join(folder, "input.npy"))
    return folder, flags, model, images


def test_official_fixture_pre_upsampling_logits(fixture_model):
    folder, _, model, images = fixture_model
    raw = keras.Model(model.input, model.get_layer(DECODER_LOGITS_LAYER).output)
    ours = raw(images.astype(np.float32)).numpy()
    official = np.load(os.path.join(folder, "logits.npy"))
    assert ours.shape == official.shape == (1, 97, 97, 19)
    assert np.abs(ours - official).max() <= 1e-3
    assert (ours.argmax(-1) == official.argmax(-1)).mean() >= 0.999


def test_official_fixture_upsampled_logits(fixture_model):
    folder, _, model, images = fixture_model
    ours = model(tf.constant(images), training=False).numpy()[:, ::4, ::4, :]
    official = np.load(os.path.join(folder, "logits_upsampled_every4.npy"))
    assert ours.shape == official.shape == (1, 193, 193, 19)
    assert np.abs(ours - official).max() <= 1e-3
    assert (ours.argmax(-1) == official.argmax(-1)).mean() >= 0.999


def test_inference_model_keeps_the_image_pooling_window(fixture_model):
    """eval/vis/export rebuild the model without the training crop; the recipe's explicit
    image-pooling window and stride stay, so the official logits are reproduced."""
    folder, flags, _, images = fixture_model
    options = inference.inference_options(ModelOptions(**flags["build_deeplab"]))
    assert options.crop_size is None and options.image_pooling_crop_size == (769, 769)
    model, report = inference.build_inference_model(options, folder)
    assert len(report.loaded) == flags["num_variables"]
    logits = inference.predict_logits(
        model, images, logits_output_stride=inference.logits_output_stride(options)
    ).numpy()[:, ::4, ::4, :]
    official = np.load(os.path.join(folder, "logits_upsampled_every4.npy"))
    assert np.abs(logits - official).max() <= 1e-3
    assert inference.checkpoint_num_classes(folder) == 19


def test_imagenet_backbone_checkpoint_initializes_the_backbone(tmp_path, fixture_model):
    """An ImageNet MobileNetV3 checkpoint has only `MobilenetV3/...` (and its classifier)."""
    _, flags, fixture, _ = fixture_model
    variant = flags["build_deeplab"]["model_variant"]
    backbone = {
        name: v.numpy()
        for name, v in official_variables(fixture).items()
        if name.startswith("MobilenetV3/")
    }
    extras = ["MobilenetV3/Conv_2/weights", "MobilenetV3/Logits/Conv2d_1c_1x1/weights"]
    for name in extras:
        backbone[name] = np.zeros([1, 1, 8, 8], "float32")
    backbone["global_step"] = np.array(7, dtype=np.int64)
    prefix = str(tmp_path / "imagenet" / "model.ckpt")
    helpers.write_tf1_checkpoint(prefix, backbone)
    model = build_deeplab(**_recipe(variant, num_classes=5, image_pooling_crop_size=(769, 769)))
    report = load_official_checkpoint(model, prefix)
    assert len(report.loaded) == len(backbone) - 3
    assert report.skipped and all(
        name.startswith(("aspp0", "image_pooling", "decoder")) for name in report.skipped
    )
    assert report.unused == sorted(extras)
    np.testing.assert_array_equal(
        model.get_layer("MobilenetV3.Conv_1").kernel.numpy(), backbone["MobilenetV3/Conv_1/weights"]
    )


@pytest.mark.slow
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("output_stride", [8, 16, 32])
def test_output_shapes_for_every_stride(variant, output_stride):
    # The config's allowed decoder strides are the backbone's end points.
    assert decoder_output_strides(variant) == tuple(
        sorted(mobilenet_v3.DECODER_END_POINTS[variant])
    )
    decoders = [d for d in decoder_output_strides(variant) if d < output_stride] + [None]
    for decoder in decoders:
        kwargs = _recipe(variant, num_classes=5, output_stride=output_stride)
        kwargs.update(decoder_output_stride=decoder, decoder_output_is_logits=decoder is not None)
        model = build_deeplab(upsample_logits=False, weight_decay=0.0, **kwargs)
        images = tf.random.uniform([1, 65, 49, 3], 0, 255, seed=1)
        stride = decoder or output_stride
        logits = model(images)
        assert logits.shape == (1, (65 - 1) // stride + 1, (49 - 1) // stride + 1, 5)
        assert logits.dtype == tf.float32


@pytest.mark.slow
def test_low_level_features_follow_the_official_end_points():
    # Large: layer_4 = expanded_conv_2 (stride 4), layer_7 = expanded_conv_5 (stride 8),
    # layer_13 = expanded_conv_11 (stride 16); small: expanded_conv, _2, _7.
    expected = {
        "mobilenet_v3_large_seg": {4: ("expanded_conv_2", 72), 8: ("expanded_conv_5", 120)},
        "mobilenet_v3_small_seg": {4: ("expanded_conv", 16), 8: ("expanded_conv_2", 88)},
    }
    for variant, points in expected.items():
        for stride, (unit, channels) in points.items():
            model = build_deeplab(**_recipe(variant, decoder_output_stride=stride))
            kernel = model.get_layer("decoder.feature_projection0").kernel
            assert kernel.shape == (1, 1, channels, 19)
            projection = model.get_layer("decoder.feature_projection0")
            source = projection.input._keras_history.operation
            assert source.name.startswith(f"MobilenetV3.{unit}.depthwise")


def test_atrous_rates_follow_output_stride():
    model = build_deeplab(
        **_recipe("mobilenet_v3_large_seg", output_stride=8, decoder_output_stride=4)
    )
    rates = {
        i: model.get_layer(f"MobilenetV3.expanded_conv_{i}.depthwise").dilation_rate[0]
        for i in range(5, 15)
    }
    # Strides after OS 8 become rates: unit 6 keeps rate 1 and doubles it, unit 12 doubles again.
    assert rates == {5: 1, 6: 1, 7: 2, 8: 2, 9: 2, 10: 2, 11: 2, 12: 2, 13: 4, 14: 4}
    strides = [
        model.get_layer(f"MobilenetV3.expanded_conv_{i}.depthwise").strides[0] for i in (6, 12)
    ]
    assert strides == [1, 1]


def test_default_head_on_mobilenet_v3():
    """The paper's head (ASPP with concat projection, concat decoder, logits layer) works too."""
    model = build_deeplab(
        model_variant="mobilenet_v3_small_seg",
        num_classes=3,
        output_stride=16,
        atrous_rates=(6, 12, 18),
        decoder_output_stride=4,
    )
    names = {layer.name for layer in model.layers}
    assert {"concat_projection", "aspp3_depthwise", "decoder.decoder_conv1_pointwise"} <= names
    assert "logits.semantic" in names
    assert model(tf.zeros([1, 33, 33, 3])).shape == (1, 33, 33, 3)


def test_image_pooling_window_and_stride():
    kwargs = _recipe("mobilenet_v3_small_seg", num_classes=4, image_pooling_crop_size=(129, 129))
    model = build_deeplab(upsample_logits=False, **kwargs)
    pooling = keras.Model(model.input, model.get_layer("image_pooling.pool").output)
    # 257x257 at OS 32: 9x9 features, a 5x5 window ((129 - 1) / 32 + 1) with stride 4,5.
    assert pooling(tf.zeros([1, 257, 257, 3])).shape == (1, 2, 1, 288)
    # At the image-pooling crop size the window covers the features: global pooling.
    free = build_deeplab(upsample_logits=False, **dict(kwargs, image_pooling_crop_size=None))
    free.set_weights(model.get_weights())
    images = tf.random.uniform([1, 129, 129, 3], 0, 255, seed=2)
    np.testing.assert_allclose(model(images), free(images), atol=1e-5)
    with pytest.raises(ValueError, match="--image_pooling_crop_size"):
        model(tf.zeros([1, 97, 97, 3]))


def test_hard_swish_and_hard_sigmoid_are_the_official_formulas():
    x = tf.constant(np.linspace(-5, 5, 41, dtype=np.float32))
    np.testing.assert_allclose(HardSwish()(x), x * np.clip(x + 3, 0, 6) / 6, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(HardSigmoid()(x), np.clip(x + 3, 0, 6) * 0.16667, rtol=1e-6)


@pytest.mark.parametrize(
    "bad, message",
    [
        (dict(model_variant="mobilenet_v3_huge_seg"), "--model_variant"),
        (dict(decoder_output_stride=2), r"--decoder_output_stride=2 must be one of \(4, 8, 16\)"),
        (dict(decoder_output_stride=None), "--decoder_output_is_logits needs a decoder"),
        (dict(decoder_filters=256), "--decoder_filters=256 must equal --num_classes=19"),
        (dict(multi_grid=(1, 2, 4)), "--multi_grid"),
        (dict(image_pooling_stride=(0, 5)), "--image_pooling_stride"),
        (dict(image_pooling_crop_size=(769,)), "--image_pooling_crop_size"),
        (dict(aspp_convs_filters=0), "--aspp_convs_filters"),
    ],
)
def test_bad_options_raise_naming_the_flag(bad, message):
    kwargs = _recipe("mobilenet_v3_large_seg")
    kwargs.update(bad)
    with pytest.raises(ValueError, match=message):
        ModelOptions(**kwargs)


def test_decoder_stride_16_is_mobilenet_v3_only():
    ModelOptions(**_recipe("mobilenet_v3_small_seg", decoder_output_stride=16))
    with pytest.raises(ValueError, match=r"one of \(4, 8\) or unset for --model_variant=xception"):
        ModelOptions(model_variant="xception_65", output_stride=32, decoder_output_stride=16)
