"""deeplab.optimize: BatchNorm folding, fused activations and the bfloat16 inference path.

The folded float32 model must keep the official numerics: on the official mobilenet_v2 OS 8
fixture (TF1 checkpoint + the official graph's logits) it matches the official logits as
tightly as the unfolded model does, and on random weights it equals the unfolded model to
~1e-5 relative.

bfloat16 keeps 8 significant bits (relative rounding 2^-9 ~ 0.2% per value); the error of
a whole network depends on how much its layers amplify perturbations. On random weights with
well-conditioned BatchNorm statistics it stays ~1% of the logits and the argmax agrees on
>= 99% of pixels (observed 99.8-100%); only near-ties can swap. (The official fixture's
random weights amplify perturbations chaotically, so there the bfloat16 check is per layer.)
"""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from deeplab import build_deeplab
from deeplab.checkpoints.official import load_official_checkpoint
from deeplab.export import inference_rewrites as optimize
from deeplab.modeling.batch_norm_statistics import randomize_batch_norms
from tests import helpers

# Full DeepLab models (Xception and MobileNetV2) folded and compared with the originals.
# One worker runs this module (its module fixtures are built once).
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("optimize")]

FIXTURE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "mobilenet_v2_os8")


def _images(shape, seed=1):
    return tf.random.stateless_uniform(shape, (seed, 0), 0.0, 255.0)


@pytest.fixture(scope="module")
def official():
    model = build_deeplab(**helpers.fixture_flags())
    load_official_checkpoint(model, os.path.join(FIXTURE, "model.ckpt"))
    images = np.load(os.path.join(FIXTURE, "input.npy")).astype(np.float32)
    return model, images


@pytest.mark.parametrize(
    "variant,kwargs",
    [
        ("xception_41", dict(output_stride=8, atrous_rates=(2, 4), decoder_output_stride=4)),
        (
            "mobilenet_v2",
            dict(
                output_stride=16,
                atrous_rates=None,
                decoder_output_stride=None,
                depth_multiplier=0.5,
            ),
        ),
    ],
)
def test_folded_model_equals_unfolded(variant, kwargs):
    model = build_deeplab(model_variant=variant, num_classes=5, **kwargs)
    randomize_batch_norms(model)
    folded = optimize.optimize_for_inference(model)
    bns = optimize.count_layers(folded, [keras.layers.BatchNormalization])
    assert bns == 0
    convs = optimize.count_layers(model, [keras.layers.Conv2D, keras.layers.DepthwiseConv2D])
    # Every conv except the logits (no BatchNorm) is folded; names are kept.
    assert optimize.count_layers(folded, [optimize.FusedConv]) == convs - 1
    assert {lyr.name for lyr in folded.layers if isinstance(lyr, optimize.FusedConv)} == {
        lyr.name
        for lyr in model.layers
        if isinstance(lyr, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D))
        and lyr.name != "logits.semantic"
    }
    images = _images([2, 57, 41, 3])
    expected = model(images, training=False).numpy()
    got = folded(images).numpy()
    assert got.shape == expected.shape == (2, 57, 41, 5)
    scale = np.abs(expected).max()
    assert scale > 1e-3
    np.testing.assert_allclose(got, expected, atol=1e-4 * scale, rtol=0)


def test_folded_model_keeps_official_fixture_numerics(official):
    model, images = official
    folded = optimize.optimize_for_inference(model, name="folded")
    raw = keras.Model(folded.input, folded.get_layer("logits.semantic").output)
    ours = raw(images).numpy()
    expected = np.load(os.path.join(FIXTURE, "logits.npy"))
    assert np.abs(ours - expected).max() <= 1e-3
    assert (ours.argmax(-1) == expected.argmax(-1)).mean() >= 0.999
    unfolded = model(images, training=False).numpy()
    np.testing.assert_allclose(
        folded(images).numpy(), unfolded, atol=1e-4 * np.abs(unfolded).max(), rtol=0
    )


def test_original_model_is_untouched(official):
    model, images = official
    before = [w.numpy().copy() for w in model.weights]
    optimize.optimize_for_inference(model)
    optimize.optimize_for_inference(model, dtype="bfloat16")
    assert all(np.array_equal(a, w.numpy()) for a, w in zip(before, model.weights))


@pytest.mark.parametrize(
    "variant,kwargs",
    [
        ("xception_41", dict(output_stride=16)),
        (
            "mobilenet_v2",
            dict(
                output_stride=16,
                atrous_rates=None,
                decoder_output_stride=None,
                depth_multiplier=0.5,
            ),
        ),
    ],
)
def test_bfloat16_path_agrees_on_argmax(variant, kwargs):
    keras.utils.set_random_seed(0)  # the agreement depends on the random weights
    model = build_deeplab(model_variant=variant, num_classes=21, **kwargs)
    randomize_batch_norms(model)
    images = _images([2, 97, 97, 3])
    expected = model(images, training=False).numpy()
    bf16 = optimize.bfloat16_inference_model(model)
    assert bf16.get_layer("aspp0").compute_dtype == "bfloat16"
    got = bf16(images)
    assert got.dtype == tf.float32  # logits stay float32
    got = got.numpy()
    scale = np.abs(expected).max()
    assert np.abs(got - expected).max() <= 0.05 * scale
    assert (expected.argmax(-1) == got.argmax(-1)).mean() >= 0.99


def test_bfloat16_layers_round_like_bfloat16(official):
    """Each bfloat16 layer, given the same input, is within bfloat16 rounding of float32."""
    model, images = official
    folded = optimize.optimize_for_inference(model)
    bf16 = optimize.bfloat16_inference_model(model)
    x = folded.get_layer("preprocess")(images)
    checked = 0
    for name in (
        "MobilenetV2.Conv",
        "MobilenetV2.expanded_conv.depthwise",
        "MobilenetV2.expanded_conv.project",
    ):
        ref = folded.get_layer(name)(x).numpy()
        low = bf16.get_layer(name)(tf.cast(x, tf.bfloat16)).numpy().astype(np.float32)
        assert np.abs(low - ref).max() <= 2e-2 * np.abs(ref).max()
        x = ref
        checked += 1
    assert checked == 3


def test_frozen_batch_norm_model_and_no_upsampling_fold():
    model = build_deeplab(
        model_variant="mobilenet_v2",
        num_classes=3,
        atrous_rates=None,
        decoder_output_stride=None,
        depth_multiplier=0.35,
        fine_tune_batch_norm=False,
        upsample_logits=False,
    )
    randomize_batch_norms(model, seed=3)
    folded = optimize.fold_batch_norms(model)
    images = _images([1, 65, 65, 3], seed=2)
    expected = model(images, training=False).numpy()
    np.testing.assert_allclose(
        folded(images).numpy(), expected, atol=1e-4 * np.abs(expected).max(), rtol=0
    )


def test_residual_rewrites_keep_values():
    """Add -> AddN and ReLU-after-Add -> maximum(x, 0) (keep the oneDNN remapper working)."""
    model = build_deeplab(model_variant="xception_41", num_classes=4, output_stride=16)
    randomize_batch_norms(model, seed=5)
    plain = optimize.optimize_for_inference(model, residual_add_n=False, residual_relu_max=False)
    rewritten = optimize.optimize_for_inference(model)
    assert (
        optimize.count_layers(rewritten, [optimize.AddN])
        == optimize.count_layers(model, [keras.layers.Add])
        > 0
    )
    assert optimize.count_layers(rewritten, [optimize.ReluMax]) > 0
    images = _images([1, 49, 49, 3], seed=4)
    np.testing.assert_allclose(rewritten(images).numpy(), plain(images).numpy(), atol=1e-6)


def test_fused_conv_config_round_trip_and_shapes():
    layer = optimize.FusedConv(
        None,
        (3, 3),
        depthwise=True,
        strides=(2, 2),
        padding="valid",
        dilation_rate=(1, 1),
        activation="relu",
        relu_max_value=6.0,
        name="dw",
    )
    clone = optimize.FusedConv.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    out = clone(tf.zeros([1, 9, 9, 4]))
    assert out.shape == (1, 4, 4, 4) == clone.compute_output_shape((1, 9, 9, 4))


def test_inference_function_traces_once():
    model = build_deeplab(
        model_variant="mobilenet_v2",
        num_classes=3,
        atrous_rates=None,
        decoder_output_stride=None,
        depth_multiplier=0.35,
    )
    predict = optimize.inference_function(optimize.fold_batch_norms(model), [1, 33, 33, 3])
    for seed in range(3):
        predict(_images([1, 33, 33, 3], seed=seed))
    assert predict.experimental_get_tracing_count() == 1
