"""1x1 convs as MatMuls in the training step: same outputs and gradients, model unchanged."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from deeplab.modeling.batch_norm_statistics import randomize_batch_norms
from deeplab.modeling.model import build_deeplab_from_options
from deeplab.modeling.options import ModelOptions
from deeplab.training import Trainer, pointwise_matmul
from deeplab.training.pointwise_matmul import (
    loss_and_gradients,
    pointwise_conv,
    pointwise_convs_as_matmul,
)
from tests import helpers


def _conv_and_grads(x, kernel, dy, as_matmul, strides=(1, 1), padding="SAME"):
    with tf.GradientTape() as tape:
        tape.watch([x, kernel])
        if as_matmul:
            y = pointwise_conv(x, kernel, strides)
        else:
            y = tf.nn.conv2d(x, kernel, strides, padding)
    return [y] + tape.gradient(y, [x, kernel], output_gradients=dy)


@pytest.mark.parametrize(
    "strides,padding", [((1, 1), "SAME"), ((2, 2), "SAME"), ((2, 2), "VALID"), ((3, 2), "SAME")]
)
def test_pointwise_conv_and_its_gradients_equal_conv2d(strides, padding):
    # Odd and even sizes: strided SAME and VALID 1x1 convs sample rows 0, s, 2s, ...
    x = tf.random.stateless_normal([2, 7, 6, 12], (1, 2))
    kernel = tf.random.stateless_normal([1, 1, 12, 9], (3, 4))
    out = tf.nn.conv2d(x, kernel, strides, padding).shape
    dy = tf.random.stateless_normal(out, (5, 6))
    expected = _conv_and_grads(x, kernel, dy, False, strides, padding)
    for got, want in zip(_conv_and_grads(x, kernel, dy, True, strides, padding), expected):
        assert got.shape == want.shape
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-5, atol=1e-5)


def test_pointwise_conv_keeps_the_static_shape_with_unknown_sizes():
    kernel = tf.ones([1, 1, 4, 6])
    traced = tf.function(
        lambda x: pointwise_conv(x, kernel),
        input_signature=[tf.TensorSpec([None, None, 3, 4], tf.float32)],
    )
    graph = traced.get_concrete_function().graph
    assert graph.outputs[0].shape.as_list() == [None, None, 3, 6]
    assert traced(tf.ones([2, 5, 3, 4])).shape == (2, 5, 3, 6)


def _op_types(model, as_matmul):
    @tf.function
    def forward(x):
        with pointwise_convs_as_matmul(as_matmul):
            return model(x, training=True)

    graph = forward.get_concrete_function(tf.TensorSpec([1, 9, 9, 3])).graph
    return [op.type for op in graph.get_operations()]


def test_only_pointwise_convs_become_matmuls_and_the_class_is_restored():
    inputs = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", use_bias=False)(inputs)  # stays a conv
    x = keras.layers.Conv2D(5, 1, use_bias=False)(x)  # becomes a MatMul
    x = keras.layers.Conv2D(6, 1, strides=2, use_bias=False)(x)  # strided: a MatMul too
    x = keras.layers.Conv2D(7, 1, dilation_rate=2, use_bias=False)(x)  # dilated: stays a conv
    model = keras.Model(inputs, x)
    original = keras.layers.Conv2D.convolution_op
    assert _op_types(model, as_matmul=False).count("Conv2D") == 4
    types = _op_types(model, as_matmul=True)
    assert types.count("Conv2D") == 2 and types.count("MatMul") == 2
    assert keras.layers.Conv2D.convolution_op is original
    assert "convolution_op" not in vars(keras.layers.Conv2D)
    with pytest.raises(RuntimeError, match="inside"):
        with pointwise_convs_as_matmul():
            assert keras.layers.Conv2D.convolution_op is not original
            raise RuntimeError("inside")
    assert keras.layers.Conv2D.convolution_op is original
    assert pointwise_matmul._ACTIVE == 0


@pytest.mark.slow
def test_one_training_step_changes_gradients_no_more_than_float32_rounding(monkeypatch):
    """The official loss (cross-entropy + L2) of xception_65 at crop 65, gradients of every
    variable, with the 1x1 convs as Conv2D, as MatMuls, and as Conv2D with every 1x1 conv output
    perturbed by half a float32 ulp (what any other order of the same sums does). A freshly
    initialised 65-layer network turns such rounding into gradient changes of several percent
    (ReLU masks flip, the gradients are small), so the rewrite is held to that reference."""
    crop = 65
    keras.utils.set_random_seed(0)
    options = ModelOptions(
        model_variant="xception_65",
        output_stride=16,
        atrous_rates=(6, 12, 18),
        decoder_output_stride=4,
        num_classes=21,
        crop_size=(crop, crop),
        fine_tune_batch_norm=True,
    )
    model = build_deeplab_from_options(options, input_size=(crop, crop))
    randomize_batch_norms(model)
    images = tf.random.stateless_uniform([4, crop, crop, 3], (3, 4), 0.0, 255.0)
    labels = tf.random.stateless_uniform([4, crop, crop], (5, 6), 0, 21, dtype=tf.int32)
    state = [v.numpy() for v in model.non_trainable_variables]  # BN statistics

    def gradients(as_matmul):
        # Eager: one call each, and tracing the graph costs 3x the CPU of running it here.
        loss, grads = loss_and_gradients(model, images, labels, state, as_matmul)
        return float(loss), [g.numpy() for g in grads]

    loss, conv = gradients(False)
    loss_matmul, matmul = gradients(True)
    convolution_op = keras.layers.Conv2D.convolution_op

    def rounded_differently(layer, inputs, kernel):
        outputs = convolution_op(layer, inputs, kernel)
        if not pointwise_matmul.is_pointwise(layer):
            return outputs
        noise = tf.random.stateless_uniform(tf.shape(outputs), (7, len(layer.name)), -1.0, 1.0)
        return outputs * (1.0 + 2.0**-24 * noise)

    monkeypatch.setattr(keras.layers.Conv2D, "convolution_op", rounded_differently)
    loss_noise, noise = gradients(False)

    def difference(grads):
        return max(float(np.abs(a - b).max()) for a, b in zip(conv, grads))

    scale = max(float(np.abs(g).max()) for g in conv)
    assert scale > 0 and difference(noise) > 0
    assert abs(loss_matmul - loss) <= max(3 * abs(loss_noise - loss), 1e-6 * abs(loss))
    assert difference(matmul) <= 3 * difference(noise), (difference(matmul), difference(noise))


@pytest.mark.slow
def test_the_trainer_applies_the_same_update_with_and_without_the_rewrite(tmp_path):
    """One step of the trainer (default: rewrite on) against one with
    pointwise_convs_as_matmul=False, from the same initial weights."""
    options = helpers.tiny_options(fine_tune_batch_norm=False)
    updates = []
    for as_matmul in (True, False):
        config = helpers.make_config(
            tmp_path / str(as_matmul), options, steps=1, pointwise_convs_as_matmul=as_matmul
        )
        assert config.pointwise_convs_as_matmul is as_matmul
        trainer = Trainer(config, dataset_fn=helpers.fixed_batches())
        before = [v.numpy() for v in trainer.model.trainable_variables]
        trainer.run()
        after = [v.numpy() for v in trainer.model.trainable_variables]
        updates.append([b - a for a, b in zip(before, after)])
    scale = max(float(np.abs(u).max()) for u in updates[1])
    assert scale > 0
    for a, b in zip(*updates):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4 * scale)
