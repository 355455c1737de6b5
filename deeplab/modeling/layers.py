"""Building blocks shared by the backbones and heads, in the official slim layout.

The layers are written in `keras.ops`, so the model runs on every Keras backend. Where
TensorFlow has a faster (or dynamic-shape) kernel for the same computation (the fused batch
norm, `ResizeBilinear` and `ResizeNearestNeighbor` with align_corners), that kernel is the
TensorFlow path of the same layer (`on_tensorflow()`); TensorFlow is imported only there.

Every block names its Keras layers after the official TF1 variable scope with '/' replaced by
'.', so `checkpoints.py` maps weights by a rule: a Conv2D `a.b` holds `a/b/weights` (and
`a/b/biases`), a DepthwiseConv2D holds `a/b/depthwise_weights`, and the BatchNormalization
`a.b.BatchNorm` holds `a/b/BatchNorm/{gamma,beta,moving_mean,moving_variance}`.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Optional, Tuple

import keras
import numpy as np
from keras import ops

SCOPE_SEPARATOR = "."


def on_tensorflow() -> bool:
    """Whether Keras runs on TensorFlow, where the TensorFlow kernels are the layers' path."""
    return keras.backend.backend() == "tensorflow"


def layer_name(scope: str) -> str:
    """Keras layer name for an official variable scope (Keras forbids '/')."""
    return scope.replace("/", SCOPE_SEPARATOR)


def scope_of(name: str) -> str:
    """Official variable scope of a Keras layer name (inverse of `layer_name`)."""
    return name.replace(SCOPE_SEPARATOR, "/")


@dataclasses.dataclass(frozen=True)
class ConvStyle:
    """How the convs of one part of the network are built (the official arg_scope).

    `weight_decay` follows slim's `l2_regularizer(wd)` = wd * sum(w^2) / 2, which is Keras's
    `L2(wd / 2)`. Depthwise kernels are never regularised (official `regularize_depthwise=False`).
    """

    weight_decay: float = 4e-5
    bn_epsilon: float = 1e-3
    bn_momentum: float = 0.9997
    activation: str = "relu"
    init_stddev: Optional[float] = 0.09  # truncated normal; None: glorot uniform (slim default)
    fine_tune_batch_norm: bool = True
    # slim's variance_scaling_initializer() (He: fan-in, factor 2, truncated normal) in place of
    # init_stddev, as the ResNet arg_scope.
    variance_scaling_init: bool = False

    def regularizer(self):
        return keras.regularizers.L2(self.weight_decay / 2.0) if self.weight_decay > 0 else None

    def initializer(self, stddev: Optional[float] = None):
        if stddev is None and self.variance_scaling_init:
            return keras.initializers.VarianceScaling(2.0, "fan_in", "truncated_normal")
        stddev = self.init_stddev if stddev is None else stddev
        if stddev is None:
            return keras.initializers.GlorotUniform()
        return keras.initializers.TruncatedNormal(stddev=stddev)


def activation_layer(kind: str, name: str) -> keras.layers.Layer:
    """ReLU, ReLU6, or MobileNetV3's hard swish / hard sigmoid, as a named Keras layer."""
    if kind == "relu":
        return keras.layers.ReLU(name=name)
    if kind == "relu6":
        return keras.layers.ReLU(max_value=6.0, name=name)
    if kind == "hard_swish":
        return HardSwish(name=name)
    if kind == "hard_sigmoid":
        return HardSigmoid(name=name)
    if kind == "sigmoid":
        return keras.layers.Activation("sigmoid", name=name)
    raise ValueError(f"unknown activation {kind!r}")


@keras.saving.register_keras_serializable(package="deeplab")
class HardSwish(keras.layers.Layer):
    """slim MobileNetV3's `hard_swish`: x * relu6(x + 3) * (1/6), in the official op order."""

    def call(self, x):
        return x * ops.relu6(x + 3.0) * (1.0 / 6.0)

    def compute_output_shape(self, input_shape):
        return input_shape


@keras.saving.register_keras_serializable(package="deeplab")
class HardSigmoid(keras.layers.Layer):
    """The official hard sigmoid relu6(x + 3) * 0.16667 (the constant of slim's MobileNetV3
    squeeze-excite gate and of DeepLab's `q_sigmoid`; 0.16667, not 1/6)."""

    def call(self, x):
        return ops.relu6(x + 3.0) * 0.16667

    def compute_output_shape(self, input_shape):
        return input_shape


@keras.saving.register_keras_serializable(package="deeplab")
class BatchNorm(keras.layers.BatchNormalization):
    """Keras BatchNormalization with the official slim (fused) batch-norm semantics.

    `frozen=True` is the official `fine_tune_batch_norm=False`: the layer always normalises with
    (and never updates) its moving statistics, even in a training step, while gamma and beta
    stay trainable. Keras's `trainable=False` would freeze gamma and beta as well, and a
    `training=False` call argument is overridden by the model's training flag.

    In training the moving variance is updated with the unbiased batch variance (n / (n - 1)),
    as TF's fused batch norm does, while the batch is normalised with the biased one; Keras
    itself updates with the biased variance, which matters for the 1x1 image-pooling branch.
    """

    def __init__(self, frozen: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.frozen = frozen

    def uses_batch_statistics(self, training, mask=None) -> bool:
        """Whether a call with these arguments normalises with (and updates from) the batch."""
        return bool(
            training and not self.frozen and self.trainable and mask is None and not self.renorm
        )

    def call(self, inputs, training=None, mask=None):
        if not self.uses_batch_statistics(training, mask):
            return super().call(inputs, training=False if self.frozen else training, mask=mask)
        outputs, _, _ = self.normalize_with_batch_statistics(inputs)
        return ops.cast(outputs, self.compute_dtype)

    def normalize_with_batch_statistics(self, inputs):
        """Training-mode batch norm: returns (float32 outputs, batch mean, unbiased batch
        variance) and updates the moving statistics."""
        x = ops.cast(inputs, "float32")
        if on_tensorflow() and len(x.shape) == 4 and self.axis in (-1, 3, [3], [-1]):
            import tensorflow as tf

            # One FusedBatchNormV3 kernel forward and one backward (as slim's fused=True), several
            # times faster on CPU than moments + batch_normalization and their gradients. Its
            # variance output is already the unbiased one.
            outputs, mean, unbiased = tf.compat.v1.nn.fused_batch_norm(
                x, self.gamma, self.beta, epsilon=self.epsilon, data_format="NHWC", is_training=True
            )
        else:
            mean, variance = self._moments(x, None)
            count = ops.cast(ops.size(x), "float32") / ops.cast(ops.shape(x)[self.axis], "float32")
            unbiased = variance * count / ops.maximum(count - 1.0, 1.0)
            outputs = ops.batch_normalization(
                x,
                mean,
                variance,
                self.axis,
                offset=self.beta,
                scale=self.gamma,
                epsilon=self.epsilon,
            )
        self.moving_mean.assign(self.moving_mean * self.momentum + mean * (1.0 - self.momentum))
        self.moving_variance.assign(
            self.moving_variance * self.momentum + unbiased * (1.0 - self.momentum)
        )
        return outputs, mean, unbiased

    def get_config(self):
        return {**super().get_config(), "frozen": self.frozen}


def batch_norm(x, scope: str, style: ConvStyle):
    """slim.batch_norm(scale=True) under `scope/BatchNorm` (frozen unless fine-tuned)."""
    return BatchNorm(
        frozen=not style.fine_tune_batch_norm,
        momentum=style.bn_momentum,
        epsilon=style.bn_epsilon,
        name=layer_name(scope + "/BatchNorm"),
    )(x)


def fixed_padding(x, kernel_size: int, rate: int, scope: str):
    """Pads like the official `fixed_padding`: independent of the input size, for VALID convs."""
    effective = kernel_size + (kernel_size - 1) * (rate - 1)
    total = effective - 1
    begin = total // 2
    return keras.layers.ZeroPadding2D(
        ((begin, total - begin), (begin, total - begin)), name=layer_name(scope + "/pad")
    )(x)


def _conv_arguments(scope: str, stride: int, rate: int, padding: str) -> dict:
    """Keyword arguments shared by the (depthwise) convolutions: no bias, official name."""
    return dict(
        strides=stride, dilation_rate=rate, padding=padding, use_bias=False, name=layer_name(scope)
    )


def _batch_norm_activation(x, scope: str, style: ConvStyle, activation: Optional[str]):
    """Batch norm then the activation ("default": the style's) under `scope`."""
    x = batch_norm(x, scope, style)
    return _activation(x, scope, style.activation if activation == "default" else activation)


def _activation(x, scope: str, activation: Optional[str]):
    """The activation layer `scope/<Activation>`, if any."""
    if activation:
        x = activation_layer(activation, layer_name(scope + "/" + activation.capitalize()))(x)
    return x


def conv_bn(
    x,
    filters: int,
    kernel_size: int,
    scope: str,
    style: ConvStyle,
    *,
    stride: int = 1,
    rate: int = 1,
    activation: Optional[str] = "default",
    explicit_padding: bool = False,
    init_stddev: Optional[float] = None,
):
    """slim.conv2d + batch norm (+ activation), no bias.

    `explicit_padding=True` with stride > 1 is the official `conv2d_same`: fixed padding then
    VALID; otherwise SAME padding.
    """
    padding = "same"
    if explicit_padding and stride > 1:
        x = fixed_padding(x, kernel_size, rate, scope)
        padding = "valid"
    x = keras.layers.Conv2D(
        filters,
        kernel_size,
        kernel_initializer=style.initializer(init_stddev),
        kernel_regularizer=style.regularizer(),
        **_conv_arguments(scope, stride, rate, padding),
    )(x)
    return _batch_norm_activation(x, scope, style, activation)


def conv_bias(
    x,
    filters: int,
    kernel_size: int,
    scope: str,
    style: ConvStyle,
    *,
    activation: Optional[str] = None,
    init_stddev: Optional[float] = None,
    dtype=None,
):
    """slim.conv2d with `normalizer_fn=None`: conv + bias (`scope/weights`, `scope/biases`),
    SAME padding, then the activation if any."""
    x = keras.layers.Conv2D(
        filters,
        kernel_size,
        padding="same",
        use_bias=True,
        kernel_initializer=style.initializer(init_stddev),
        kernel_regularizer=style.regularizer(),
        name=layer_name(scope),
        dtype=dtype,
    )(x)
    return _activation(x, scope, activation)


def depthwise_bn(
    x,
    scope: str,
    style: ConvStyle,
    *,
    kernel_size: int = 3,
    stride: int = 1,
    rate: int = 1,
    activation: Optional[str] = "default",
    padding: str = "same",
    init_stddev: Optional[float] = None,
):
    """slim.separable_conv2d(num_outputs=None): depthwise conv + batch norm (+ activation)."""
    x = keras.layers.DepthwiseConv2D(
        kernel_size,
        depthwise_initializer=style.initializer(init_stddev),
        **_conv_arguments(scope, stride, rate, padding),
    )(x)
    return _batch_norm_activation(x, scope, style, activation)


def split_separable_conv(
    x, filters: int, scope: str, style: ConvStyle, *, rate: int = 1, kernel_size: int = 3
):
    """The official `split_separable_conv2d` of ASPP and the decoder.

    `scope_depthwise`: depthwise + BN + activation; `scope_pointwise`: 1x1 conv + BN + activation.
    Initialisers are the official truncated normals (stddev 0.33 and 0.06).
    """
    x = depthwise_bn(
        x, scope + "_depthwise", style, kernel_size=kernel_size, rate=rate, init_stddev=0.33
    )
    return conv_bn(x, filters, 1, scope + "_pointwise", style, init_stddev=0.06)


@keras.saving.register_keras_serializable(package="deeplab")
class ResizeBilinear(keras.layers.Layer):
    """Bilinear resize with align_corners=True semantics to the spatial size of a reference.

    TF2's `tf.image.resize` has no align_corners, and the official graph uses it everywhere
    (ASPP image pooling, decoder, logits). Called as `layer([x, reference])`; with `scale` set
    the output size is the official `scale_dimension(reference_size, scale)`.
    """

    def __init__(self, scale: Optional[float] = None, **kwargs):
        super().__init__(**kwargs)
        self.scale = scale

    def call(self, inputs):
        x, reference = inputs
        size = spatial_size(reference)
        if self.scale is not None:
            size = scale_dimension(size, self.scale)
        return ops.cast(resize_bilinear(x, size), x.dtype)

    def compute_output_shape(self, input_shapes):
        x_shape, ref_shape = input_shapes
        height, width = ref_shape[1], ref_shape[2]
        if self.scale is not None:
            height = None if height is None else scale_dimension(height, self.scale)
            width = None if width is None else scale_dimension(width, self.scale)
        return (x_shape[0], height, width, x_shape[3])

    def get_config(self):
        return {**super().get_config(), "scale": self.scale}


@keras.saving.register_keras_serializable(package="deeplab")
class ScaleToUnitRange(keras.layers.Layer):
    """The official `_preprocess_zero_mean_unit_range`: [0, 255] -> [-1, 1]."""

    def call(self, images):
        return ops.cast((2.0 / 255.0) * ops.cast(images, "float32") - 1.0, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return input_shape


@keras.saving.register_keras_serializable(package="deeplab")
class ImagePooling(keras.layers.Layer):
    """Image-level feature pooling of ASPP.

    `pool_size=None`: global average (any input size). Otherwise the official average pool over
    a window set by the (image-pooling) crop size, VALID, with the official
    `image_pooling_stride` (default 1; equal to the global mean at the crop size).
    """

    def __init__(self, pool_size=None, strides=(1, 1), **kwargs):
        super().__init__(**kwargs)
        self.pool_size = None if pool_size is None else tuple(int(p) for p in pool_size)
        self.strides = tuple(int(s) for s in strides)

    def call(self, x):
        if self.pool_size is None:
            return ops.mean(x, axis=[1, 2], keepdims=True)
        self.check_fits(x.shape)
        return ops.average_pool(x, self.pool_size, self.strides, padding="valid")

    def check_fits(self, shape) -> None:
        """The official graph fails on inputs smaller than the image-pooling crop; say why."""
        for size, window in zip(shape[1:3], self.pool_size):
            if size is not None and size < window:
                raise ValueError(
                    f"image pooling: features of {shape[1]}x{shape[2]} are smaller than the "
                    f"pooling window {self.pool_size[0]}x{self.pool_size[1]} set by "
                    f"--image_pooling_crop_size (or the crop size) at this output stride; feed "
                    f"inputs at least as large as that crop, or pass a smaller "
                    f"--image_pooling_crop_size"
                )

    def compute_output_shape(self, input_shape):
        if self.pool_size is None:
            return (input_shape[0], 1, 1, input_shape[3])
        self.check_fits(input_shape)
        h, w = input_shape[1], input_shape[2]
        return (
            input_shape[0],
            None if h is None else (h - self.pool_size[0]) // self.strides[0] + 1,
            None if w is None else (w - self.pool_size[1]) // self.strides[1] + 1,
            input_shape[3],
        )

    def get_config(self):
        return {**super().get_config(), "pool_size": self.pool_size, "strides": self.strides}


class AtrousSchedule:
    """The official output-stride bookkeeping of a backbone's units (slim's
    `stack_blocks_dense`, MobileNet's `output_stride`): each unit runs at its own stride until
    the features reach `output_stride`; from then on units run at stride 1 and each would-be
    stride multiplies the atrous rate of the units after it."""

    def __init__(self, output_stride: int, current_stride: int = 1):
        self.output_stride = output_stride
        self.current_stride = current_stride
        self.rate = 1

    def next_unit(self, unit_stride: int) -> Tuple[int, int]:
        """(stride, atrous rate) of the next unit, whose own stride is `unit_stride`."""
        if self.current_stride == self.output_stride:
            rate = self.rate
            self.rate *= unit_stride
            return 1, rate
        self.current_stride *= unit_stride
        return unit_stride, 1

    @property
    def reached(self) -> bool:
        """Whether the units so far end exactly at `output_stride`."""
        return self.current_stride == self.output_stride


def scale_dimension(dim, scale: float):
    """The official `scale_dimension`: ((dim - 1) * scale + 1) truncated; ints, tuples of ints,
    or int tensors (TensorFlow's dynamic sizes)."""
    if isinstance(dim, (tuple, list)):
        return tuple(scale_dimension(d, scale) for d in dim)
    if ops.is_tensor(dim):
        return ops.cast((ops.cast(dim, "float32") - 1.0) * scale + 1.0, "int32")
    return int((float(dim) - 1.0) * scale + 1.0)


def spatial_size(x):
    """(H, W) of an NHWC (or NHW) tensor: an int32 tensor on TensorFlow (sizes may be dynamic there),
    a tuple of ints on the other backends (whose traced shapes are static)."""
    if on_tensorflow():
        import tensorflow as tf

        return tf.shape(x)[1:3]
    return tuple(int(d) for d in x.shape[1:3])


def _source_positions(out_size: int, in_size: int) -> np.ndarray:
    """Source coordinates (float32) of the output pixels under align_corners=True, computed as
    TensorFlow's legacy resize kernels do: j * ((in - 1) / (out - 1))."""
    scale = np.float32(in_size - 1) / np.float32(out_size - 1) if out_size > 1 else np.float32(0)
    return np.arange(out_size, dtype=np.float32) * scale


@functools.lru_cache(maxsize=256)
def interpolation_matrix(out_size: int, in_size: int) -> np.ndarray:
    """[out, in] float32 weights of linear interpolation with align_corners=True along one axis:
    output j = (1 - t) * input[floor(p)] + t * input[ceil(p)], p its source position."""
    positions = _source_positions(out_size, in_size)
    lower = np.floor(positions).astype(np.int64)
    upper = np.minimum(np.ceil(positions).astype(np.int64), in_size - 1)
    fraction = positions - lower.astype(np.float32)
    matrix = np.zeros((out_size, in_size), np.float32)
    rows = np.arange(out_size)
    np.add.at(matrix, (rows, lower), 1.0 - fraction)
    np.add.at(matrix, (rows, upper), fraction)
    return matrix


def resize_bilinear(images, size):
    """Bilinear resize with align_corners=True (the official `_resize_bilinear`); float32 out.

    TF2's `tf.image.resize` and `keras.ops.image.resize` have no align_corners. On TensorFlow this
    is the legacy `ResizeBilinear` kernel (any dynamic size); elsewhere two small interpolation
    matrices applied with einsum (static sizes, as traced shapes are there), which accelerators
    run as matmuls.
    """
    if on_tensorflow():
        import tensorflow as tf

        images = tf.convert_to_tensor(images)
        if images.dtype != tf.float32:
            images = tf.cast(images, tf.float32)
        return tf.raw_ops.ResizeBilinear(images=images, size=size, align_corners=True)
    images = ops.cast(images, "float32")
    height, width = (int(s) for s in size)
    in_height, in_width = images.shape[1:3]
    if (height, width) != (in_height, in_width):
        images = ops.einsum("hH,nHWc->nhWc", interpolation_matrix(height, in_height), images)
        images = ops.einsum("wW,nhWc->nhwc", interpolation_matrix(width, in_width), images)
    return images


def nearest_indices(out_size: int, in_size: int) -> np.ndarray:
    """Source rows of nearest-neighbour resizing with align_corners=True (TensorFlow's legacy
    kernel: round half away from zero, clipped to the last row)."""
    positions = _source_positions(out_size, in_size)
    return np.minimum(np.floor(positions + 0.5).astype(np.int32), in_size - 1)


def resize_labels(labels, size):
    """Nearest-neighbor resize with align_corners=True (the official label resize) of integer
    labels [N, H, W] or [N, H, W, 1]."""
    if on_tensorflow():
        import tensorflow as tf

        labels = tf.convert_to_tensor(labels)
        if labels.shape.rank == 3:
            return resize_labels(labels[..., tf.newaxis], size)[..., 0]
        return tf.raw_ops.ResizeNearestNeighbor(images=labels, size=size, align_corners=True)
    height, width = (int(s) for s in size)
    labels = ops.take(labels, nearest_indices(height, labels.shape[1]), axis=1)
    return ops.take(labels, nearest_indices(width, labels.shape[2]), axis=2)
