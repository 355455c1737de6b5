"""Keras conventions: the custom layers are registered serializables with get_config, so a
built DeepLab saves as a `.keras` file and reloads (no custom_objects) with identical outputs."""

import keras
import numpy as np
import pytest

from deeplab.evaluation.metrics import MeanIoUWithIgnore
from deeplab.export import inference_rewrites as optimize
from deeplab.modeling import layers
from tests import helpers


@pytest.mark.parametrize(
    "layer",
    [
        layers.BatchNorm(frozen=True, epsilon=1e-5, momentum=0.9, name="bn"),
        layers.ResizeBilinear(scale=0.25, name="resize"),
        layers.ScaleToUnitRange(name="scale"),
        layers.HardSwish(name="hard_swish"),
        layers.HardSigmoid(name="hard_sigmoid"),
        layers.ImagePooling(pool_size=(5, 7), name="pool"),
        optimize.FusedConv(8, (3, 3), strides=(2, 2), activation="relu", name="fused"),
        optimize.AddN(name="add_n"),
        optimize.ReluMax(name="relu_max"),
        MeanIoUWithIgnore(num_classes=5, ignore_label=255, name="miou"),
    ],
)
def test_custom_objects_round_trip_through_their_config(layer):
    config = keras.saving.serialize_keras_object(layer)
    assert config["registered_name"] == f"deeplab>{type(layer).__name__}"
    again = keras.saving.deserialize_keras_object(config)
    assert type(again) is type(layer)
    assert again.get_config() == layer.get_config()


@pytest.mark.slow
def test_built_model_saves_and_reloads_as_keras_file_with_identical_outputs(tmp_path):
    model = helpers.tiny_model(
        num_classes=5,
        output_stride=8,
        atrous_rates=(12, 24, 36),
        decoder_output_stride=4,
        crop_size=(65, 65),
        fine_tune_batch_norm=False,
    )
    images = np.random.default_rng(0).uniform(0, 255, (2, 65, 65, 3)).astype(np.float32)
    # Moving statistics away from their initial values, so that reloading them is tested too.
    for layer in model.layers:
        if isinstance(layer, layers.BatchNorm):
            layer.moving_mean.assign(np.full(layer.moving_mean.shape, 0.1, np.float32))
            layer.moving_variance.assign(np.full(layer.moving_variance.shape, 2.0, np.float32))
    expected = model(images, training=False).numpy()
    path = str(tmp_path / "deeplab.keras")
    model.save(path)
    reloaded = keras.models.load_model(path)
    assert [type(layer) for layer in reloaded.layers] == [type(layer) for layer in model.layers]
    assert reloaded.get_layer("logits.semantic").get_config()["filters"] == 5
    frozen = [layer for layer in reloaded.layers if isinstance(layer, layers.BatchNorm)]
    assert frozen and all(layer.frozen for layer in frozen)
    np.testing.assert_array_equal(reloaded(images, training=False).numpy(), expected)
