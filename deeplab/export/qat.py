"""Quantization-aware training: the official `--quantize_delay_step` for our Keras models.

The official train.py called `tf.contrib.quantize.create_training_graph(quant_delay=N)`, which
rewrote the TF1 graph: batch norm folded into the preceding conv, weights and activations
fake-quantized to 8 bits from global step N on. Keras 3 has no tf-model-optimization support,
so `quantize_model` does the same rewrite on a functional DeepLab model. The returned model
shares every layer and variable of the float model (checkpoints, the optimizer and the official
checkpoint loader keep working on the float model) and adds:

- `FoldedConvBatchNorm` for every conv / depthwise conv followed by a BatchNorm. The kernel is
  scaled by gamma / sqrt(moving_variance + eps) and fake-quantized per output channel in the
  TFLite int8 weight scheme (symmetric, narrow range [-127, 127]). In a training step with batch
  statistics the conv output is rescaled by sigma_moving / sigma_batch and offset by
  beta - gamma * mean_batch / sigma_batch (contrib's batch-norm correction before freezing), so
  the layer still normalises with the batch statistics and updates the moving ones, while its
  weights are already the ones inference uses. At inference (or with frozen batch norm) it is
  conv(x, quantized folded kernel) + (beta - gamma * moving_mean / sigma_moving): exactly the
  conv + bias that LiteRT runs.
- `QuantizedConv` for a conv without BatchNorm (the logits): its kernel fake-quantized the same
  way.
- `ActivationQuantizer` after every folded conv (after its ReLU / ReLU6 when one follows),
  activation, residual Add and Concatenate: int8 asymmetric per-tensor fake quantization with
  the range kept as a moving average (decay 0.999, starting at [-6, 6], as contrib's
  MovingAvgQuantize) of the batch min and max (both extended to include 0), updated in every
  training step, also before the delay. The preprocessed input gets the fixed range [-1, 1].
- `SharedRangeQuantizer` after ops that LiteRT runs in int8 on the scale of their input (image
  pooling, bilinear resizes), so that the float model rounds where the int8 model rounds.

Before step N the model computes exactly what the float model computes (the quantized path is
not run); from step N on (a `tf.cond` on the global step, inside tf.function, XLA and
tf.distribute alike) everything is fake-quantized. The trainer puts that one `tf.cond` around its
whole forward and backward pass (`QuantizationDelay.traced_as`); the model called on its own
has one per layer. `export_lib`'s int8 conversion of such a
model keeps these ranges, so the int8 LiteRT model reproduces the fake-quantized float model.
"""

from __future__ import annotations

import contextlib
from typing import Callable, Dict, List, Optional

import keras
import tensorflow as tf

from deeplab.modeling.layers import BatchNorm, ImagePooling, ResizeBilinear, ScaleToUnitRange

EMA_DECAY = 0.999  # contrib.quantize's activation range decay
INITIAL_RANGE = (-6.0, 6.0)  # contrib.quantize's initial activation range
INPUT_RANGE = (-1.0, 1.0)  # the preprocessed image (x * 2 / 255 - 1)
NUM_BITS = 8
ACT_QUANT_SUFFIX = ".act_quant"
# The official quantized models (g3doc/quantize.md); the rewrite knows their layer types.
SUPPORTED_VARIANTS = ("mobilenet_v2",)


class QuantizationDelay:
    """When fake quantization is on: from global step `delay_step` on (`step()` reads it).

    `step=None` means always on (inference and export of a quantized model).
    """

    def __init__(self, delay_step: int = 0, step: Optional[Callable[[], tf.Tensor]] = None):
        if delay_step < 0:
            raise ValueError(f"quantize_delay_step={delay_step} must be >= 0 to quantize")
        self.delay_step = int(delay_step)
        self.step = step
        self._traced_as: Optional[bool] = None

    @property
    def switches(self) -> bool:
        """Whether the model switches from float to quantized at some step (else it is always
        quantized)."""
        return self.step is not None and self.delay_step > 0

    def is_on(self) -> tf.Tensor:
        """Whether the delay has passed (a boolean tensor of the current step)."""
        return tf.greater_equal(tf.cast(self.step(), tf.int64), self.delay_step)

    @contextlib.contextmanager
    def traced_as(self, on: bool):
        """Within it, the model is traced as quantized (`on`) or float throughout, with no
        per-layer `tf.cond`: for a caller that switches once around its whole step (the trainer
        traces its step once per side; one `tf.cond` per layer, and its gradient, made the
        trace of a quantization-aware step several times slower)."""
        previous, self._traced_as = self._traced_as, bool(on)
        try:
            yield
        finally:
            self._traced_as = previous

    def select(self, quantized: Callable, float_: Callable):
        """`quantized()` once the delay has passed, else `float_()` (only one of them runs)."""
        if self._traced_as is not None:
            return quantized() if self._traced_as else float_()
        if not self.switches:
            return quantized()
        return tf.cond(self.is_on(), quantized, float_)


def fake_quantize_weights(kernel, depthwise: bool = False):
    """Per-output-channel symmetric int8 fake quantization (narrow range, zero exact).

    Conv kernels [kh, kw, in, out] are quantized per `out`; depthwise kernels [kh, kw, in, m]
    per output channel `in * m` (LiteRT's depthwise layout [1, kh, kw, in * m]).
    """
    shape = tf.shape(kernel)
    w = tf.reshape(kernel, [shape[0], shape[1], 1, -1]) if depthwise else kernel
    limit = tf.stop_gradient(tf.maximum(tf.reduce_max(tf.abs(w), axis=[0, 1, 2]), 1e-8))
    w = tf.quantization.fake_quant_with_min_max_vars_per_channel(
        w, -limit, limit, num_bits=NUM_BITS, narrow_range=True
    )
    return tf.reshape(w, shape) if depthwise else w


def _is_depthwise(conv) -> bool:
    return isinstance(conv, keras.layers.DepthwiseConv2D)


def _convolve(conv, x, kernel):
    """The convolution of the layer `conv` with another kernel (no bias, no activation)."""
    if _is_depthwise(conv):
        return keras.ops.depthwise_conv(
            x,
            kernel,
            strides=conv.strides,
            padding=conv.padding,
            dilation_rate=conv.dilation_rate,
            data_format=conv.data_format,
        )
    return conv.convolution_op(x, kernel)


def _per_output_channel(conv, values):
    """Per-output-channel `values` [C] shaped to multiply the layer's kernel."""
    if _is_depthwise(conv):
        return tf.reshape(values, [conv.kernel.shape[2], conv.kernel.shape[3]])
    return values


class FoldedConvBatchNorm(keras.layers.Layer):
    """conv + BatchNorm with the batch norm folded into fake-quantized weights (see module doc).

    Shares the conv and BatchNorm layers (and their variables) of the float model.
    """

    def __init__(self, conv, batch_norm: BatchNorm, delay: QuantizationDelay, **kwargs):
        super().__init__(name=kwargs.pop("name", conv.name + ".folded"), **kwargs)
        self.conv = conv
        self.batch_norm = batch_norm
        self.delay = delay

    def _folded_kernel(self, sigma_moving):
        scale = self.batch_norm.gamma / sigma_moving
        kernel = self.conv.kernel * _per_output_channel(self.conv, scale)
        return fake_quantize_weights(kernel, _is_depthwise(self.conv))

    def _conv_bias(self):
        return self.conv.bias if self.conv.use_bias else 0.0

    def call(self, x, training=None):
        conv, bn = self.conv, self.batch_norm
        x = tf.cast(x, tf.float32)
        sigma_moving = tf.sqrt(tf.identity(bn.moving_variance) + bn.epsilon)
        if bn.uses_batch_statistics(training):
            moving_is_read = sigma_moving  # read before this step's update (as contrib)
            y = conv(x)
            normalized, mean, unbiased = bn.normalize_with_batch_statistics(y)

            def quantized():
                count = tf.cast(tf.size(y) // tf.shape(y)[-1], tf.float32)
                # The batch is normalised with the biased variance.
                variance = unbiased * (count - 1.0) / tf.maximum(count, 1.0)
                sigma_batch = tf.sqrt(variance + bn.epsilon)
                z = _convolve(conv, x, self._folded_kernel(moving_is_read))
                offset = bn.beta + bn.gamma * (self._conv_bias() - mean) / sigma_batch
                return z * (moving_is_read / sigma_batch) + offset

            return self.delay.select(quantized, lambda: normalized)

        def quantized_inference():
            z = _convolve(conv, x, self._folded_kernel(sigma_moving))
            offset = bn.beta + bn.gamma * (self._conv_bias() - bn.moving_mean) / sigma_moving
            return z + offset

        return self.delay.select(
            quantized_inference, lambda: tf.cast(bn(conv(x), training=training), tf.float32)
        )

    def compute_output_shape(self, input_shape):
        return self.conv.compute_output_shape(input_shape)


class QuantizedConv(keras.layers.Layer):
    """A conv without BatchNorm (the logits) with fake-quantized weights; shares the conv."""

    def __init__(self, conv, delay: QuantizationDelay, **kwargs):
        super().__init__(name=kwargs.pop("name", conv.name + ".quantized"), **kwargs)
        self.conv = conv
        self.delay = delay

    def call(self, x):
        conv = self.conv

        def quantized():
            z = _convolve(conv, x, fake_quantize_weights(conv.kernel, _is_depthwise(conv)))
            z = z + conv.bias if conv.use_bias else z
            return conv.activation(z) if conv.activation is not None else z

        return self.delay.select(quantized, lambda: conv(x))

    def compute_output_shape(self, input_shape):
        return self.conv.compute_output_shape(input_shape)


class ActivationQuantizer(keras.layers.Layer):
    """int8 per-tensor fake quantization with a moving-average range (or a fixed one)."""

    def __init__(self, delay: QuantizationDelay, fixed_range=None, **kwargs):
        super().__init__(**kwargs)
        self.delay = delay
        self.fixed_range = None if fixed_range is None else tuple(float(v) for v in fixed_range)

    def build(self, input_shape):
        low, high = self.fixed_range or INITIAL_RANGE
        self.min = self.add_weight(
            name="min", shape=(), initializer=keras.initializers.Constant(low), trainable=False
        )
        self.max = self.add_weight(
            name="max", shape=(), initializer=keras.initializers.Constant(high), trainable=False
        )

    def call(self, x, training=None):
        x = tf.cast(x, tf.float32)
        if training and self.fixed_range is None:
            batch_min = tf.minimum(tf.reduce_min(x), 0.0)
            batch_max = tf.maximum(tf.reduce_max(x), 0.0)
            self.min.assign(self.min * EMA_DECAY + tf.stop_gradient(batch_min) * (1 - EMA_DECAY))
            self.max.assign(self.max * EMA_DECAY + tf.stop_gradient(batch_max) * (1 - EMA_DECAY))
        low, high = tf.identity(self.min), tf.identity(self.max)
        return self.delay.select(lambda: fake_quantize(x, low, high), lambda: x)

    def compute_output_shape(self, input_shape):
        return input_shape


class SharedRangeQuantizer(keras.layers.Layer):
    """Fake quantization on the range of another quantizer (ops that keep their input scale)."""

    def __init__(self, source: ActivationQuantizer, delay: QuantizationDelay, **kwargs):
        super().__init__(**kwargs)
        self._source = [source]  # a list: not tracked (the source owns the variables)
        self.delay = delay

    def call(self, x):
        source = self._source[0]
        x = tf.cast(x, tf.float32)
        low, high = tf.identity(source.min), tf.identity(source.max)
        return self.delay.select(lambda: fake_quantize(x, low, high), lambda: x)

    def compute_output_shape(self, input_shape):
        return input_shape


class QuantizedPreprocess(keras.layers.Layer):
    """`ScaleToUnitRange` (x * 2 / 255 - 1) with int8 fake quantization of both steps.

    The image is fake-quantized on [0, 255] and x * 2 / 255 on [0, 2] (both exact for uint8
    images), the result minus 1 on the fixed range [-1, 1] (narrow: zero exact, no rounding
    ties), so that LiteRT's int8 input, MUL and SUB carry these ranges and round exactly where
    this layer does.
    """

    def __init__(self, delay: QuantizationDelay, **kwargs):
        super().__init__(**kwargs)
        self.delay = delay

    def call(self, images):
        x = tf.cast(images, tf.float32)

        def quantized():
            scaled = fake_quantize(fake_quantize(x, 0.0, 255.0) * (2.0 / 255.0), 0.0, 2.0)
            return fake_quantize(scaled - 1.0, *INPUT_RANGE, narrow_range=True)

        return self.delay.select(quantized, lambda: (2.0 / 255.0) * x - 1.0)

    def compute_output_shape(self, input_shape):
        return input_shape


def fake_quantize(x, low, high, narrow_range: bool = False):
    """int8 asymmetric per-tensor fake quantization on [low, high] (nudged so 0 is exact)."""
    return tf.quantization.fake_quant_with_min_max_vars(
        x, low, high, num_bits=NUM_BITS, narrow_range=narrow_range
    )


_CONVS = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D)
_ACTIVATIONS = (keras.layers.ReLU, keras.layers.Activation)
_MERGES = (keras.layers.Add, keras.layers.Concatenate)
_SAME_SCALE = (ImagePooling, ResizeBilinear)


def _consumers(model: keras.Model) -> Dict[int, List[keras.layers.Layer]]:
    """id(layer) -> the layers of `model` that take its output (in `model`'s graph only)."""
    consumers: Dict[int, List[keras.layers.Layer]] = {}
    for nodes in model._nodes_by_depth.values():
        for node in nodes:
            for parent in node.parent_nodes:
                consumers.setdefault(id(parent.operation), []).append(node.operation)
    return consumers


def quantize_model(
    model: keras.Model,
    delay_step: int = 0,
    step: Optional[Callable[[], tf.Tensor]] = None,
) -> keras.Model:
    """The fake-quantized twin of a functional DeepLab `model` (see the module docstring).

    Fake quantization is on from global step `delay_step` on, `step()` giving the step (None:
    always on, for inference and export). The twin shares the float model's variables and adds
    the activation ranges (`quantizer_layers`). Create it where the float model was created
    (the same distribution strategy scope).
    """
    delay = QuantizationDelay(delay_step, step)
    consumers = _consumers(model)

    def sole_consumer(layer):
        users = consumers.get(id(layer), [])
        return users[0] if len(users) == 1 else None

    folded_bn: Dict[int, keras.layers.Layer] = {}  # id(BatchNorm) -> its conv
    for layer in model.layers:
        user = sole_consumer(layer)
        if isinstance(layer, _CONVS) and isinstance(user, BatchNorm):
            folded_bn[id(user)] = layer
    quantizer_of: Dict[int, ActivationQuantizer] = {}  # id(output tensor) -> its quantizer

    def quantize_output(layer, output, fixed_range=None):
        quantizer = ActivationQuantizer(
            delay, fixed_range=fixed_range, name=layer.name + ACT_QUANT_SUFFIX
        )
        quantized = quantizer(output)
        quantizer_of[id(quantized)] = quantizer
        return quantized

    def call(layer, *args, **kwargs):
        if isinstance(layer, _CONVS) and any(conv is layer for conv in folded_bn.values()):
            return args[0]  # computed by the FoldedConvBatchNorm that replaces its BatchNorm
        if isinstance(layer, ScaleToUnitRange):
            return QuantizedPreprocess(delay, name=layer.name + ".quantized")(*args)
        if id(layer) in folded_bn:
            output = FoldedConvBatchNorm(folded_bn[id(layer)], layer, delay)(args[0])
        elif isinstance(layer, _CONVS):
            output = QuantizedConv(layer, delay)(args[0])
        else:
            output = layer(*args, **kwargs)
        if isinstance(layer, ScaleToUnitRange):
            return QuantizedPreprocess(delay, name=layer.name + ".quantized")(*args)
        if isinstance(layer, _SAME_SCALE):
            source = quantizer_of.get(id(args[0][0] if isinstance(args[0], list) else args[0]))
            if source is None:
                return output
            shared = SharedRangeQuantizer(source, delay, name=layer.name + ".same_scale_quant")
            output = shared(output)
            quantizer_of[id(output)] = source
            return output
        quantizes = isinstance(layer, _ACTIVATIONS + _MERGES) or (
            id(layer) in folded_bn or isinstance(layer, _CONVS)
        )
        if quantizes and not isinstance(sole_consumer(layer), _ACTIVATIONS):
            return quantize_output(layer, output)
        return output

    # A conv folded with its BatchNorm passes its input on unchanged (`call` above), and the
    # BatchNorm's turn computes the folded layer from it.
    quantized = keras.models.clone_model(
        model, clone_function=lambda layer: layer, call_function=call
    )
    quantized.quantization_delay = delay  # for `delay.traced_as` (the trainer's step)
    return quantized


def quantizer_layers(quantized_model: keras.Model) -> Dict[str, ActivationQuantizer]:
    """The activation quantizers (the state QAT adds to the float model), by layer name."""
    return {
        layer.name: layer
        for layer in quantized_model.layers
        if isinstance(layer, ActivationQuantizer)
    }


def quantizer_checkpoint(quantized_model: keras.Model) -> tf.train.Checkpoint:
    """A checkpoint object over the activation ranges, keyed by quantizer name."""
    return tf.train.Checkpoint(**quantizer_layers(quantized_model))


def load_quantizer_ranges(quantized_model: keras.Model, checkpoint_prefix: str) -> None:
    """Restores the activation ranges of a quantization-aware training checkpoint.

    Raises ValueError when the checkpoint holds none (it was not trained with
    --quantize_delay_step) or not those of this model.
    """
    from deeplab.training.checkpointing import QUANTIZERS_KEY

    reader = tf.train.load_checkpoint(checkpoint_prefix)
    if not any(key.startswith(QUANTIZERS_KEY + "/") for key in reader.get_variable_to_shape_map()):
        raise ValueError(
            f"{checkpoint_prefix} holds no activation ranges: it was not trained with "
            f"--quantize_delay_step >= 0 (quantization-aware training)"
        )
    status = tf.train.Checkpoint(**{QUANTIZERS_KEY: quantizer_checkpoint(quantized_model)})
    status = status.restore(checkpoint_prefix)
    status.expect_partial()
    try:
        status.assert_existing_objects_matched()
    except AssertionError as err:
        raise ValueError(f"{checkpoint_prefix}: activation ranges do not match: {err}") from None


def range_free_images(input_size, count: int = 2):
    """Calibration images for the int8 conversion of a fake-quantized model
    (`export_lib.export_tflite(..., quantize="int8", representative_images=...)`).

    Every range of such a model comes from its fake quantization (weights per channel, the
    trained activation ranges, the input on [0, 255]), so the converter's calibration fixes
    none: constant images do (a test converts with other images and gets the same bytes).
    """
    import numpy as np

    height, width = (int(s) for s in input_size)

    def images():
        for i in range(count):
            yield np.full([1, height, width, 3], 255.0 * i / max(count - 1, 1), np.float32)

    return images
