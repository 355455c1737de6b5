"""The official inference flags honoured here: --image_pyramid / --merge_method,
--prediction_with_upsampled_logits, --keep_aspect_ratio, and the frozen-graph export."""

import numpy as np
import pytest
import tensorflow as tf

from deeplab.data import preprocess
from deeplab.export import frozen_graph
from deeplab.modeling import inference
from tests import helpers

# One worker runs this module (its module fixtures are built once).
pytestmark = pytest.mark.xdist_group("official_inference_flags")


@pytest.fixture(scope="module")
def model():
    tf.keras.utils.set_random_seed(1)
    return helpers.tiny_model(num_classes=4, crop_size=None, upsample_logits=False)


def _image(height=65, width=81, seed=0):
    return np.random.RandomState(seed).randint(0, 256, (1, height, width, 3)).astype(np.float32)


@pytest.mark.slow  # builds and runs a model: the full suite's, not the quick loop's
def test_image_pyramid_merges_the_scales_as_the_official_multi_scale_logits(model):
    images = _image()
    single = inference.ImagePyramidModel(model, [1.0], "max", 16)(images).numpy()
    np.testing.assert_allclose(single, model(images).numpy(), atol=1e-6)

    merged = inference.ImagePyramidModel(model, [0.5, 1.0, 1.25], "avg", 16)(images).numpy()
    # Logits grid of the largest scale: scale_dimension(65, 1.25 / 16) x scale_dimension(81, ...)
    assert merged.shape == (1, 6, 7, 4)
    per_scale = []
    for scale in (0.5, 1.0, 1.25):
        size = [int((65 - 1) * scale + 1), int((81 - 1) * scale + 1)]
        scaled = tf.compat.v1.image.resize_bilinear(images, size, align_corners=True)
        logits = tf.compat.v1.image.resize_bilinear(model(scaled), [6, 7], align_corners=True)
        per_scale.append(logits.numpy())
    np.testing.assert_allclose(merged, np.mean(per_scale, axis=0), atol=1e-5)
    maxed = inference.ImagePyramidModel(model, [0.5, 1.0, 1.25], "max", 16)(images).numpy()
    np.testing.assert_allclose(maxed, np.max(per_scale, axis=0), atol=1e-5)


def test_prediction_without_upsampled_logits_upsamples_the_labels(model):
    images = _image(seed=1)
    labels = inference.predict_labels(model, images, prediction_with_upsampled_logits=False)
    grid = np.argmax(model(images).numpy(), axis=-1)  # [1, 5, 6]
    # Nearest neighbour with align_corners: output pixel i reads round(i * (in - 1) / (out - 1)).
    rows = np.floor(np.arange(65) * (grid.shape[1] - 1) / 64 + 0.5).astype(int)
    cols = np.floor(np.arange(81) * (grid.shape[2] - 1) / 80 + 0.5).astype(int)
    np.testing.assert_array_equal(labels.numpy()[0], grid[0][rows][:, cols])
    with pytest.raises(ValueError, match="one scale"):
        inference.predict_labels(model, images, [0.5, 1.0], prediction_with_upsampled_logits=False)


def test_keep_aspect_ratio_false_resizes_to_a_square():
    image = tf.zeros([40, 100, 3])
    kept, _ = preprocess.resize_to_range(image, None, 50, 125)
    square, _ = preprocess.resize_to_range(image, None, 50, 125, keep_aspect_ratio=False)
    assert kept.shape[:2] == (50, 125)
    assert square.shape[:2] == (125, 125)


@pytest.mark.slow
def test_frozen_graph_with_the_official_inference_flags(model, tmp_path):
    image = _image(97, 130, seed=2)[0].astype(np.uint8)
    path = str(tmp_path / "frozen_inference_graph.pb")
    frozen_graph.write_frozen_graph(
        model,
        path,
        inference.InferenceSettings(
            logits_output_stride=16,
            image_pyramid=[0.75, 1.0],
            prediction_with_upsampled_logits=False,
        ),
        save_inference_graph=True,
    )
    assert (tmp_path / "inference_graph.pbtxt").exists()
    pyramid = inference.ImagePyramidModel(model, [0.75, 1.0], "max", 16)
    expected = inference.predict_labels(
        pyramid, image[None], prediction_with_upsampled_logits=False
    ).numpy()[0]
    np.testing.assert_array_equal(frozen_graph.run_frozen_graph(path, image), expected)
