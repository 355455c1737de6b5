"""Single / multi-scale / flipped inference, the official recipe, any input size."""

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from absl import flags

from deeplab import ModelOptions, build_deeplab
from deeplab.checkpoints import run_options
from deeplab.cli import flags as cli_flags
from deeplab.modeling import inference, layers
from tests import helpers

# One worker runs this module (its module fixtures are built once).
pytestmark = pytest.mark.xdist_group("inference")

TINY = dict(
    model_variant="mobilenet_v2",
    num_classes=5,
    output_stride=16,
    atrous_rates=None,
    decoder_output_stride=4,
    depth_multiplier=0.25,
)


@pytest.fixture(scope="module")
def models():
    """The same random tiny model with and without in-model logits upsampling."""
    keras.utils.set_random_seed(3)
    upsampled = build_deeplab(**TINY)
    # The official init (small weights, BN at unit statistics) gives near-uniform probabilities;
    # He-scaled random kernels make the outputs informative.
    rng = np.random.default_rng(3)
    for layer in upsampled.layers:
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D)):
            kernel = layer.kernel
            fan_in = np.prod(kernel.shape[:2]) * (
                1 if isinstance(layer, keras.layers.DepthwiseConv2D) else kernel.shape[2]
            )
            kernel.assign(rng.normal(0, np.sqrt(2.0 / fan_in), kernel.shape).astype(np.float32))
    low = build_deeplab(**TINY, upsample_logits=False)
    low.set_weights(upsampled.get_weights())
    return upsampled, low


def _resize(x, size):
    return tf.compat.v1.image.resize_bilinear(tf.cast(x, tf.float32), size, align_corners=True)


def _official_multi_scale(model, images, scales, flip, stride):
    """The official predict_labels_multi_scale written out step by step."""
    height, width = images.shape[1:3]
    probabilities = []
    for scale in scales:
        size = [int((height - 1) * scale + 1), int((width - 1) * scale + 1)]
        scaled = images if scale == 1.0 else _resize(images, size)
        # multi_scale_logits with image_pyramid=[scale] brings the logits to this grid first.
        grid = [
            int((height - 1) * max(1.0, scale) / stride + 1),
            int((width - 1) * max(1.0, scale) / stride + 1),
        ]
        for flipped in [False, True] if flip else [False]:
            x = tf.reverse(scaled, [2]) if flipped else scaled
            logits = _resize(model(x, training=False), grid)
            if flipped:
                logits = tf.reverse(logits, [2])
            probabilities.append(tf.nn.softmax(_resize(logits, [height, width])))
    return tf.reduce_mean(tf.stack(probabilities), axis=0).numpy()


def test_scale_dimension_is_the_official_formula():
    assert layers.scale_dimension(513, 0.5) == 257
    assert layers.scale_dimension(513, 1.75) == 897
    assert int(layers.scale_dimension(tf.constant(513), 0.75)) == 385


@pytest.mark.slow
def test_single_scale_equals_the_model_softmax(models):
    upsampled, low = models
    images = np.random.default_rng(0).uniform(0, 255, (2, 37, 45, 3)).astype(np.float32)
    expected = tf.nn.softmax(upsampled(images, training=False)).numpy()
    for model, stride in ((upsampled, None), (low, 4)):
        probs = inference.predict_probabilities(model, images, logits_output_stride=stride)
        np.testing.assert_allclose(probs.numpy(), expected, atol=1e-6)
        labels = inference.predict_labels(model, images, logits_output_stride=stride)
        assert labels.dtype == tf.int32 and labels.shape == (2, 37, 45)
        np.testing.assert_array_equal(labels.numpy(), expected.argmax(-1))


@pytest.mark.slow
@pytest.mark.parametrize("scales,flip", [((0.5, 1.0, 1.75), True), ((0.75, 1.25), False)])
def test_multi_scale_and_flip_follow_predict_labels_multi_scale(models, scales, flip):
    _, low = models
    images = np.random.default_rng(1).uniform(0, 255, (1, 41, 53, 3)).astype(np.float32)
    expected = _official_multi_scale(low, images, scales, flip, stride=4)
    probs = inference.predict_probabilities(low, images, scales, flip, logits_output_stride=4)
    np.testing.assert_allclose(probs.numpy(), expected, atol=1e-6)
    # Logits of a multi-scale prediction: their softmax is the averaged probability.
    logits = inference.predict_logits(low, images, scales, flip, logits_output_stride=4)
    np.testing.assert_allclose(tf.nn.softmax(logits).numpy(), expected, atol=1e-5)
    labels = inference.predict_labels(low, images, scales, flip, logits_output_stride=4)
    np.testing.assert_array_equal(labels.numpy(), expected.argmax(-1))


@pytest.mark.slow
def test_flip_changes_the_prediction_and_scales_must_be_positive(models):
    upsampled, _ = models
    images = np.random.default_rng(2).uniform(0, 255, (1, 33, 33, 3)).astype(np.float32)
    plain = inference.predict_probabilities(upsampled, images).numpy()
    flipped = inference.predict_probabilities(upsampled, images, add_flipped_images=True).numpy()
    assert not np.allclose(plain, flipped)
    with pytest.raises(ValueError, match="positive"):
        inference.predict_probabilities(upsampled, images, eval_scales=(0.0,))


@pytest.mark.slow
@pytest.mark.parametrize("size", [(1, 1), (17, 95), (130, 66)])
def test_any_input_size(models, size):
    upsampled, _ = models
    images = np.full((1,) + size + (3,), 100, np.uint8)
    probs = inference.predict_probabilities(upsampled, images, eval_scales=(0.5, 1.0))
    assert probs.shape == (1,) + size + (5,)
    assert np.allclose(probs.numpy().sum(-1), 1.0, atol=1e-5)


def test_options_from_training_json_and_explicit_flags(tmp_path):
    saved = dict(ModelOptions(**TINY, crop_size=(65, 65)).__dict__)
    saved.update(dataset="synthetic", dataset_dir="somewhere")
    (tmp_path / "model_options.json").write_text(json.dumps(saved, default=list))
    fields, data = run_options.saved_run_info(str(tmp_path / "ckpt-5"))
    assert data["dataset"] == "synthetic" and fields["depth_multiplier"] == 0.25
    values = flags.FlagValues()
    cli_flags.define_model_flags(values)
    values(["eval", "--output_stride=8"])  # explicit flags over the run's, the run's over defaults
    final = cli_flags.options_from_flags(values, str(tmp_path / "ckpt-5"), num_classes=21)
    assert final.depth_multiplier == 0.25 and final.output_stride == 8
    assert final.decoder_output_stride == 4  # the run's (the flag's default is no decoder)
    assert final.num_classes == TINY["num_classes"]  # the run's, not the dataset's 21
    assert final.crop_size is None and not final.upsample_logits
    assert run_options.find_model_options_file(str(tmp_path / "ckpt-5")) == str(
        tmp_path / "model_options.json"
    )
    assert cli_flags.resolve_dataset(None, None, saved) == ("synthetic", "somewhere")
    assert cli_flags.resolve_dataset(None, "/voc") == ("pascal_voc_seg", "/voc")


@pytest.mark.slow
def test_official_checkpoint_reproduces_the_official_logits():
    folder = helpers.official_fixture_dir()
    if folder is None:
        pytest.skip(
            "official fixture not found (tests/fixtures/mobilenet_v2_os8 or "
            "../shared/reference/fixtures/mobilenet_v2_os8)"
        )
    with open(os.path.join(folder, "flags.json")) as f:
        kwargs = json.load(f)["build_deeplab"]
    options = inference.inference_options(ModelOptions(**kwargs))
    model, report = inference.build_inference_model(options, folder)
    assert len(report.loaded) == 272
    images = np.load(os.path.join(folder, "input.npy"))
    # The official upsampled logits are its pre-upsampling logits resized with align_corners.
    official = _resize(np.load(os.path.join(folder, "logits.npy")), images.shape[1:3]).numpy()
    logits = inference.predict_logits(
        model,
        images.astype(np.float32),
        logits_output_stride=inference.logits_output_stride(options),
    )
    assert np.abs(logits.numpy() - official).max() < 1e-3
    assert (logits.numpy().argmax(-1) == official.argmax(-1)).mean() >= 0.999
    upsampled = helpers.official_upsampled_logits()
    if upsampled is not None:
        assert np.abs(logits.numpy() - upsampled).max() < 1e-3
