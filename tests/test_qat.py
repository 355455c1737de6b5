"""Quantization-aware training (--quantize_delay_step): the float step before the delay, the
folded fake-quantized step after it, checkpointed ranges, and an int8 LiteRT export that agrees
with the fake-quantized float model."""

import dataclasses
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from deeplab import build_deeplab_from_options
from deeplab.checkpoints.official import load_checkpoint
from deeplab.data.config import DataConfig
from deeplab.data.pipeline import build_dataset
from deeplab.export import litert, qat
from deeplab.export import saved_model as export_lib
from deeplab.modeling.layers import BatchNorm
from deeplab.training import LearningRateConfig, TrainConfig, Trainer
from tests import helpers

# One worker runs this module (its module fixtures are built once).
pytestmark = pytest.mark.xdist_group("qat")

CROP = (65, 65)
OPTIONS = helpers.tiny_options(crop_size=CROP, batch_norm_decay=0.5)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return helpers.build_synthetic(str(tmp_path_factory.mktemp("synthetic")))


def _config(logdir, data_dir, steps, delay, **kwargs):
    data = DataConfig(
        "synthetic", data_dir, "train", crop_size=CROP, batch_size=4, is_training=True,
        min_scale_factor=0.75, max_scale_factor=1.25, seed=1, num_classes=OPTIONS.num_classes,
    )  # fmt: skip
    return TrainConfig(
        train_logdir=str(logdir),
        model_options=OPTIONS,
        data=data,
        learning_rate=LearningRateConfig(base_learning_rate=0.05, training_number_of_steps=steps),
        save_interval_steps=steps,
        log_steps=steps,
        quantize_delay_step=delay,
        **kwargs,
    )


def test_weights_are_quantized_per_output_channel_on_the_int8_grid():
    kernel = tf.random.stateless_normal([3, 3, 4, 5], seed=[1, 2])
    quantized = qat.fake_quantize_weights(kernel).numpy()
    for c in range(5):
        step = np.abs(kernel[..., c]).max() / 127.0
        levels = quantized[..., c] / step
        np.testing.assert_allclose(levels, np.round(levels), atol=1e-3)
        assert np.abs(levels).max() == pytest.approx(127, abs=1e-3)
    depthwise = tf.random.stateless_normal([3, 3, 6, 1], seed=[3, 4])
    quantized = qat.fake_quantize_weights(depthwise, depthwise=True).numpy()
    for c in range(6):  # one scale per depthwise output channel
        step = np.abs(depthwise[:, :, c, 0]).max() / 127.0
        levels = quantized[:, :, c, 0] / step
        np.testing.assert_allclose(levels, np.round(levels), atol=1e-3)


def _conv_bn_model():
    keras.utils.set_random_seed(0)
    images = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", use_bias=False, name="conv")(images)
    x = BatchNorm(momentum=0.9, epsilon=1e-3, name="conv.BatchNorm")(x)
    x = keras.layers.ReLU(6.0, name="conv.Relu6")(x)
    x = keras.layers.DepthwiseConv2D(3, padding="same", use_bias=False, name="dw")(x)
    x = BatchNorm(momentum=0.9, epsilon=1e-3, name="dw.BatchNorm")(x)
    model = keras.Model(images, x)
    for layer in model.layers:
        if isinstance(layer, BatchNorm):
            layer.gamma.assign(tf.random.uniform(layer.gamma.shape, 0.5, 1.5))
            layer.moving_variance.assign(tf.random.uniform(layer.gamma.shape, 0.5, 2.0))
            layer.moving_mean.assign(tf.random.normal(layer.gamma.shape, stddev=0.1))
    return model


def test_folded_training_step_normalizes_with_batch_statistics_and_updates_the_moving_ones():
    float_model = _conv_bn_model()
    twin = _conv_bn_model()  # the same weights, its own moving statistics
    quantized = qat.quantize_model(twin)
    x = tf.random.stateless_uniform([2, 9, 9, 3], seed=[5, 6], minval=-1, maxval=1)
    expected = float_model(x, training=True)
    got = quantized(x, training=True)
    # The same function up to the int8 rounding of weights and activations.
    scale = float(tf.reduce_max(tf.abs(expected)))
    assert float(tf.reduce_max(tf.abs(expected - got))) < 0.1 * scale
    assert float(tf.reduce_max(tf.abs(expected - got))) > 0.0
    for name in ("conv.BatchNorm", "dw.BatchNorm"):
        for attr in ("moving_mean", "moving_variance"):
            np.testing.assert_allclose(
                getattr(float_model.get_layer(name), attr).numpy(),
                getattr(twin.get_layer(name), attr).numpy(),
                rtol=0.05,
                atol=1e-3,
            )
    # At inference the folded layer is conv(x, quantized folded kernel) + folded bias.
    conv, bn = twin.get_layer("conv"), twin.get_layer("conv.BatchNorm")
    sigma = np.sqrt(bn.moving_variance.numpy() + bn.epsilon)
    kernel = qat.fake_quantize_weights(conv.kernel * (bn.gamma / sigma))
    bias = bn.beta - bn.gamma * bn.moving_mean / sigma
    first = keras.Model(quantized.input, quantized.get_layer("conv.folded").output)
    expected = tf.nn.conv2d(x, kernel, 1, "SAME") + bias
    np.testing.assert_allclose(first(x, training=False), expected, atol=1e-5)


@pytest.mark.slow  # builds and runs a model: the full suite's, not the quick loop's
def test_the_trainers_one_switch_gives_the_per_layer_switchs_loss_gradients_and_state():
    """The trainer traces its step once float and once fake-quantized under one `tf.cond` on
    the delay (`_switch_at_quantization_delay`); before and after the delay it computes what
    the model's own per-layer switch computes: loss, gradients (None where no gradient), the
    BatchNorm and range updates; before it, what the float model computes."""
    from deeplab.training.trainer import _switch_at_quantization_delay

    float_model, twin = _conv_bn_model(), _conv_bn_model()  # the same weights
    step = tf.Variable(0, dtype=tf.int64)
    quantized = qat.quantize_model(twin, 2, step=lambda: step)
    x = tf.random.stateless_uniform([2, 9, 9, 3], seed=[5, 6], minval=-1, maxval=1)
    weights = tf.random.stateless_normal([2, 9, 9, 8], seed=[7, 8])
    initial = {
        id(m): [v.numpy() for v in m.non_trainable_variables] for m in (float_model, quantized)
    }

    def forward_backward(model, variables):
        def run(images, labels, step_value):
            with tf.GradientTape() as tape:
                loss = tf.reduce_sum(model(images, training=True) * labels)
            grads = tape.gradient(loss, variables)
            none = [None] * len(variables)
            return loss, tf.constant(1.0), tf.constant(0.0), grads, none, loss, loss

        return run

    def outcome(fn, model):
        for variable, value in zip(model.non_trainable_variables, initial[id(model)]):
            variable.assign(value)
        out = fn(x, weights, step.read_value())
        return out, [v.numpy() for v in model.non_trainable_variables]

    trainable = twin.trainable_variables
    delay = quantized.quantization_delay
    switched = tf.function(
        _switch_at_quantization_delay(forward_backward(quantized, trainable), delay, trainable)
    )
    per_layer = tf.function(forward_backward(quantized, trainable))
    float_step = tf.function(forward_backward(float_model, float_model.trainable_variables))
    float_out, _ = outcome(float_step, float_model)
    for at in (0, 2):
        step.assign(at)
        ours, our_state = outcome(switched, quantized)
        theirs, their_state = outcome(per_layer, quantized)
        assert all(g is None for g in ours[4])
        np.testing.assert_allclose(float(ours[0]), float(theirs[0]), rtol=1e-6)
        for a, b in zip(ours[3], theirs[3]):
            np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6)
        for a, b in zip(our_state, their_state):
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
        if at == 0:  # the float step: the float model's values
            assert float(ours[0]) == float(float_out[0])
            for a, b in zip(ours[3], float_out[3]):
                np.testing.assert_array_equal(a.numpy(), b.numpy())
        else:
            assert abs(float(ours[0]) - float(float_out[0])) > 1e-6 * abs(float(float_out[0]))

    def conds(fn):
        graph = fn.get_concrete_function(x, weights, step.read_value()).graph
        return sum(op.type in ("If", "StatelessIf") for op in graph.get_operations())

    assert conds(switched) == 1 and conds(per_layer) > 4  # one per layer: 4 layers, gradients


@pytest.mark.slow
def test_before_the_delay_the_step_is_the_float_step_then_it_quantizes():
    keras.utils.set_random_seed(0)
    model = build_deeplab_from_options(OPTIONS)
    step = tf.Variable(0, dtype=tf.int64)
    quantized = qat.quantize_model(model, 3, step=lambda: step)
    state = [v.numpy() for v in model.non_trainable_variables]  # BN statistics, dropout seed
    images = tf.random.stateless_uniform([2, *CROP, 3], seed=[7, 8], maxval=255)
    weights = tf.random.stateless_normal([2, *CROP, OPTIONS.num_classes], seed=[9, 10])

    def step_of(network):
        for variable, value in zip(model.non_trainable_variables, state):
            variable.assign(value)
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(network(images, training=True) * weights)
        grads = tape.gradient(loss, model.trainable_variables)
        return loss, grads, [v.numpy() for v in model.non_trainable_variables]

    float_loss, float_grads, float_state = step_of(model)
    loss, grads, new_state = step_of(quantized)
    assert float(loss) == float(float_loss)
    for a, b in zip(float_grads, grads):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    for a, b in zip(float_state, new_state):
        np.testing.assert_array_equal(a, b)
    step.assign(3)
    loss, grads, _ = step_of(quantized)
    assert float(loss) != float(float_loss)
    assert all(g is not None for g in grads)


QAT_STEPS, QAT_DELAY = 300, 150


@pytest.fixture(scope="module")
def qat_run(tmp_path_factory, data_dir):
    """Float training, then fake quantization from step QAT_DELAY on (Adam: a short run that
    predicts more than the background; about 1 minute of training on a quiet 2-core machine)."""
    logdir = tmp_path_factory.mktemp("qat_run")
    config = _config(
        logdir, data_dir, QAT_STEPS, QAT_DELAY, optimizer="adam", adam_learning_rate=0.01
    )
    trainer = Trainer(config)
    result = trainer.run()
    return trainer, result, str(logdir)


@pytest.mark.slow
def test_the_run_saves_its_activation_ranges_and_the_delay(qat_run):
    trainer, result, logdir = qat_run
    assert np.isfinite(result["total_loss"])
    reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(logdir))
    keys = [k for k in reader.get_variable_to_shape_map() if k.startswith("quantizers/")]
    ranges = qat.quantizer_layers(trainer.step_model)
    assert len(keys) == 2 * len(ranges) > 0
    moved = [layer for layer in ranges.values() if float(layer.max.numpy()) != 6.0]
    assert moved  # the moving averages followed the activations
    import json

    with open(os.path.join(logdir, "model_options.json")) as f:
        assert json.load(f)["quantize_delay_step"] == QAT_DELAY


def _quantized_inference_model(logdir):
    options = dataclasses.replace(OPTIONS, crop_size=None, upsample_logits=False, weight_decay=0)
    model = build_deeplab_from_options(options)
    load_checkpoint(model, logdir)
    quantized = qat.quantize_model(model)
    qat.load_quantizer_ranges(quantized, tf.train.latest_checkpoint(logdir))
    return quantized


@pytest.mark.slow
def test_int8_litert_model_agrees_with_the_fake_quantized_model(qat_run, data_dir):
    _, _, logdir = qat_run
    model = _quantized_inference_model(logdir)

    def convert(images):
        return export_lib.tflite_from_model(
            model, OPTIONS.num_classes, CROP, quantize="int8", representative_images=images
        )

    content = convert(qat.range_free_images(CROP))
    # Every range is fixed by the fake quantization: other calibration images, same model.
    rng = np.random.default_rng(0)
    others = [rng.integers(0, 256, (1, *CROP, 3)).astype(np.float32) for _ in range(3)]
    assert convert(lambda: iter(others)) == content
    assert not litert.float_tensors(content)  # full integer
    # The float model with fake quantization, through the same serving function.
    module = export_lib.DeepLabServingModule(model, OPTIONS.num_classes)
    reference = tf.function(module._predict_quantized)
    images = build_dataset(
        DataConfig("synthetic", data_dir, "val", crop_size=CROP, batch_size=1, is_training=False)
    )
    runner = litert.interpreter(content)
    agree, total, classes, differences = 0, 0, set(), []
    for batch in images.take(6):
        image = tf.cast(tf.image.resize_with_crop_or_pad(batch["image"], *CROP), tf.uint8)
        expected = reference(tf.cast(image, tf.float32))
        got = litert.run(runner, image.numpy())
        labels = expected["semantic_predictions"].numpy()[0]
        agree += int((got["semantic_predictions"][0] == labels).sum())
        total += labels.size
        classes |= set(np.unique(labels).tolist())
        probabilities = expected["semantic_probabilities"].numpy()[0]
        differences.append(np.abs(got["semantic_probabilities"][0] - probabilities).mean())
    print(
        f"int8 vs fake-quantized float: {agree / total:.4f} of pixels agree (classes {classes}), "
        f"mean |probability difference| {np.mean(differences):.4f}"
    )
    assert agree / total >= 0.99
    # Not only the argmax: the class probabilities agree to a few int8 steps (1/256).
    assert np.mean(differences) < 0.01


@pytest.mark.slow
def test_export_cli_writes_the_full_integer_model_of_a_qat_run(qat_run, tmp_path):
    _, _, logdir = qat_run
    result = helpers.run_cli_in_process(
        "export.py",
        f"--checkpoint_path={logdir}",
        f"--export_path={tmp_path / 'exported'}",
        "--tflite",
        "--crop_size={},{}".format(*CROP),
        "--noserve_encoded",  # the SavedModel beside it is not used here
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "full-integer int8 LiteRT model written" in result.stdout
    with open(tmp_path / "exported" / "model.tflite", "rb") as f:
        assert not litert.float_tensors(f.read())


def test_mixed_precision_is_refused_with_the_flag_named(tmp_path):
    # TrainConfig validates when it is made.
    with pytest.raises(ValueError, match="--quantize_delay_step=0.*--mixed_precision=float16"):
        _config(tmp_path, None, 2, 0, mixed_precision="float16")


def test_other_variants_are_refused_with_the_flag_named(tmp_path):
    config = _config(tmp_path, None, 2, 0)
    with pytest.raises(ValueError, match="--quantize_delay_step=0.*mobilenet_v2.*xception_65"):
        dataclasses.replace(config, model_options=OPTIONS.replace(model_variant="xception_65"))


@pytest.mark.slow  # a whole tf.data pipeline or checkpoint: the full suite's
def test_float_checkpoint_has_no_ranges(tmp_path):
    model = build_deeplab_from_options(dataclasses.replace(OPTIONS, crop_size=None))
    prefix = tf.train.Checkpoint(model=model).save(str(tmp_path / "ckpt"))
    with pytest.raises(ValueError, match="holds no activation ranges"):
        qat.load_quantizer_ranges(qat.quantize_model(model), prefix)
