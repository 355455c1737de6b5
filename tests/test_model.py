"""The model: shapes, official variables and parameter counts, Mult-Adds, numerics."""

import numpy as np
import pytest
import tensorflow as tf

from deeplab import ModelOptions, build_deeplab
from deeplab.checkpoints.official import official_variables
from deeplab.modeling.model import build_deeplab_from_options, last_layers
from deeplab.modeling.summary import summarize, tf1_atrous_depthwise_outputs
from tests import helpers


def _rates(output_stride):
    return {8: (12, 24, 36), 16: (6, 12, 18), 32: (3, 6, 9)}[output_stride]


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["xception_41", "xception_65", "xception_71", "mobilenet_v2"])
@pytest.mark.parametrize("output_stride", [8, 16, 32])
def test_output_shapes_for_every_variant_and_stride(variant, output_stride):
    decoder = 4 if output_stride > 4 else None
    model = build_deeplab(
        model_variant=variant,
        num_classes=5,
        output_stride=output_stride,
        atrous_rates=_rates(output_stride),
        decoder_output_stride=decoder,
        weight_decay=0.0,
    )
    # Both outputs from one pass: the upsampled logits and the pre-upsampling ones.
    both = tf.keras.Model(model.input, [model.output, model.get_layer("logits.semantic").output])
    for height, width in [(65, 49), (33, 97)]:
        images = tf.random.uniform([2, height, width, 3], 0, 255)
        logits, raw = both(images, training=False)
        assert logits.shape == (2, height, width, 5)
        assert logits.dtype == tf.float32
        # Pre-upsampling logits are at the decoder's stride: scale_dimension(H, 1/4).
        assert raw.shape == (2, (height - 1) // 4 + 1, (width - 1) // 4 + 1, 5)


@pytest.mark.slow
def test_features_follow_output_stride_without_decoder():
    for output_stride in (8, 16, 32):
        model = build_deeplab(
            model_variant="xception_41",
            num_classes=3,
            output_stride=output_stride,
            atrous_rates=None,
            decoder_output_stride=None,
            upsample_logits=False,
        )
        out = model(tf.zeros([1, 65, 65, 3]))
        assert out.shape[1] == (65 - 1) // output_stride + 1


def _our_official_shapes(model):
    return {name: list(v.shape) for name, v in official_variables(model).items()}


@pytest.mark.slow
def test_xception_65_variables_match_official_checkpoint_exactly():
    model = build_deeplab(model_variant="xception_65", num_classes=21)
    expected = helpers.official_variables("xception_65_21classes.txt")
    assert _our_official_shapes(model) == expected
    facts = helpers.facts()["xception_65_os16_21"]
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    assert trainable == facts["trainable_params"]
    assert sum(int(np.prod(w.shape)) for w in model.weights) == facts["all_variable_elements"]
    assert len(model.weights) == facts["num_variables"]


@pytest.mark.slow
def test_mobilenet_v2_variables_match_official_checkpoint_exactly():
    model = build_deeplab(**helpers.fixture_flags())
    expected = helpers.official_variables("mobilenet_v2_21classes.txt")
    assert _our_official_shapes(model) == expected
    facts = helpers.facts()["mobilenet_v2_os8_21"]
    assert sum(int(np.prod(w.shape)) for w in model.trainable_weights) == facts["trainable_params"]
    assert sum(int(np.prod(w.shape)) for w in model.weights) == facts["all_variable_elements"]


@pytest.mark.slow
def test_parameter_count_for_19_classes():
    model = build_deeplab(model_variant="xception_65", num_classes=19)
    facts = helpers.facts()["xception_65_os16_19"]
    assert sum(int(np.prod(w.shape)) for w in model.trainable_weights) == facts["trainable_params"]


@pytest.mark.slow
@pytest.mark.parametrize(
    "output_stride,rates,key,zoo",
    [
        (16, (6, 12, 18), "xception_65_os16_21", 54.17e9),
        (8, (12, 24, 36), "xception_65_os8_21", 177.10e9),
    ],
)
def test_mult_adds_match_official(output_stride, rates, key, zoo):
    options = ModelOptions(
        model_variant="xception_65",
        output_stride=output_stride,
        atrous_rates=rates,
        decoder_output_stride=4,
        num_classes=21,
    )
    summary = summarize(options, (513, 513))
    facts = helpers.facts()[key]
    assert abs(summary["madds"] - zoo) / zoo < 0.01
    # The official graph's own conv-only count, reproduced exactly (space_to_batch included).
    assert summary["madds_tf1_conv_only"] == facts["madds_513_conv_only"]
    assert summary["trainable_params"] == facts["trainable_params"]
    strides = {row["block"]: row["stride"] for row in summary["blocks"]}
    assert strides["xception_65/exit_flow/block2/unit_1"] == output_stride
    assert strides["decoder/decoder_conv1"] == 4


@pytest.mark.slow
def test_mobilenet_mult_adds_match_model_zoo():
    options = ModelOptions(
        model_variant="mobilenet_v2",
        output_stride=16,
        atrous_rates=None,
        decoder_output_stride=None,
        num_classes=21,
    )
    summary = summarize(options, (513, 513))
    official = helpers.facts()["mobilenet_v2_os16_21"]["madds_513"]
    assert abs(summary["madds"] - official) / official < 0.01


def test_space_to_batch_position_count():
    # 33 positions, rate 2, 3x3: padded 33+4=37 -> 38, 19 per batch, 17 valid, 2*17 = 34.
    assert tf1_atrous_depthwise_outputs(33, 2, 3) == 34
    assert tf1_atrous_depthwise_outputs(33, 6, 3) == 36
    assert tf1_atrous_depthwise_outputs(32, 1, 3) == 32


@pytest.mark.slow
def test_atrous_rates_follow_output_stride():
    rates = {}
    for output_stride in (8, 16):
        model = build_deeplab(
            model_variant="xception_65", output_stride=output_stride, multi_grid=(1, 2, 4)
        )
        unit = "xception_65.exit_flow.block2.unit_1.xception_module"
        rates[output_stride] = [
            model.get_layer(f"{unit}.separable_conv{i}_depthwise").dilation_rate[0]
            for i in (1, 2, 3)
        ]
    # Official: rate doubles per skipped stride, times the multi-grid unit rates.
    assert rates[16] == [2, 4, 8]
    assert rates[8] == [4, 8, 16]


@pytest.mark.slow
def test_weight_decay_on_conv_and_pointwise_weights_only():
    model = build_deeplab(
        model_variant="mobilenet_v2",
        num_classes=3,
        atrous_rates=(6,),
        decoder_output_stride=4,
        weight_decay=1e-3,
        depth_multiplier=0.5,
    )
    regularised = [layer for layer in model.layers if getattr(layer, "kernel_regularizer", None)]
    assert regularised
    assert all(type(layer).__name__ == "Conv2D" for layer in regularised)
    convs = [layer for layer in model.layers if type(layer).__name__ == "Conv2D"]
    assert len(regularised) == len(convs)
    expected = sum(
        1e-3 / 2 * float(tf.reduce_sum(tf.square(layer.kernel))) for layer in regularised
    )
    assert np.isclose(float(tf.add_n(model.losses)), expected, rtol=1e-5)


@pytest.mark.slow
def test_frozen_batch_norm_keeps_moving_statistics_and_trains_gamma():
    model = helpers.tiny_model(num_classes=3, crop_size=None, fine_tune_batch_norm=False)
    bn = model.get_layer("MobilenetV2.Conv.BatchNorm")
    before = bn.moving_mean.numpy().copy()
    images = tf.random.uniform([2, 33, 33, 3], 0, 255)
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(model(images, training=True))
    grads = tape.gradient(loss, [bn.gamma])
    np.testing.assert_array_equal(bn.moving_mean.numpy(), before)
    assert grads[0] is not None and float(tf.reduce_sum(tf.abs(grads[0]))) > 0


@pytest.mark.slow
def test_fine_tuned_batch_norm_updates_moving_statistics():
    model = helpers.tiny_model(num_classes=3, crop_size=None)
    bn = model.get_layer("MobilenetV2.Conv.BatchNorm")
    before = bn.moving_mean.numpy().copy()
    model(tf.random.uniform([2, 33, 33, 3], 0, 255), training=True)
    assert not np.array_equal(bn.moving_mean.numpy(), before)


@pytest.mark.slow
def test_last_layers_follow_official_exclude_list():
    model = helpers.tiny_model(
        num_classes=3, crop_size=None, atrous_rates=(6,), decoder_output_stride=4
    )
    assert [layer.name for layer in last_layers(model, logits_only=True)] == ["logits.semantic"]
    names = {layer.name for layer in last_layers(model)}
    assert {
        "logits.semantic",
        "aspp0",
        "aspp1_depthwise",
        "image_pooling",
        "concat_projection",
        "decoder.feature_projection0",
    } <= names
    assert not any(name.startswith("MobilenetV2") for name in names)


@pytest.mark.slow
def test_image_pooling_window_from_crop_size_equals_global_at_crop_size():
    fixed = helpers.tiny_model(num_classes=4, atrous_rates=(6,), crop_size=(65, 65))
    free = helpers.tiny_model(num_classes=4, atrous_rates=(6,), crop_size=None)
    free.set_weights(fixed.get_weights())
    images = tf.random.uniform([1, 65, 65, 3], 0, 255, seed=1)
    np.testing.assert_allclose(fixed(images), free(images), atol=1e-5)


@pytest.mark.parametrize(
    "bad, message",
    [
        (dict(model_variant="resnet_50"), "--model_variant"),
        (dict(output_stride=4), "--output_stride"),
        (dict(decoder_output_stride=2), "--decoder_output_stride"),
        (dict(output_stride=8, decoder_output_stride=8), "--decoder_output_stride"),
        (dict(multi_grid=(1, 2)), "--multi_grid"),
        (dict(num_classes=0), "--num_classes"),
    ],
)
def test_bad_options_raise_naming_the_flag(bad, message):
    with pytest.raises(ValueError, match=message):
        ModelOptions(**bad)


@pytest.mark.slow
def test_static_input_size_builds_static_shapes():
    options = helpers.tiny_options(num_classes=3, crop_size=None)
    model = build_deeplab_from_options(options, input_size=(65, 97))
    assert tuple(model.output.shape) == (None, 65, 97, 3)


@pytest.mark.slow
def test_batch_norm_updates_moving_variance_with_unbiased_batch_variance():
    from deeplab.modeling.layers import BatchNorm

    bn = BatchNorm(momentum=0.5, epsilon=1e-3)
    x = tf.random.normal([2, 3, 2, 4], seed=3)
    out = bn(x, training=True)
    mean, var = tf.nn.moments(x, [0, 1, 2])
    n = 2 * 3 * 2
    np.testing.assert_allclose(bn.moving_mean.numpy(), 0.5 * mean.numpy(), rtol=1e-5)
    np.testing.assert_allclose(
        bn.moving_variance.numpy(), 0.5 + 0.5 * var.numpy() * n / (n - 1), rtol=1e-5
    )
    # The batch itself is normalised with the biased variance.
    expected = (x - mean) / tf.sqrt(var + 1e-3)
    np.testing.assert_allclose(out.numpy(), expected.numpy(), atol=1e-5)
