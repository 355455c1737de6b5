"""1x1 convolutions traced as matrix products, for faster training steps on CPU.

A 1x1, undilated convolution over NHWC pixels is the product of the [N*H*W, C_in] pixel
matrix with the [C_in, C_out] kernel; with stride s, of the pixels x[:, ::s, ::s] (a 1x1
kernel needs no padding, so SAME and VALID both sample rows and columns 0, s, 2s, ...).
Traced that way, its gradients are
two MatMuls as well (dy @ kernel^T for the input, pixels^T @ dy for the kernel) instead of
Conv2DBackpropInput / Conv2DBackpropFilter; oneDNN runs those faster than its convolution
kernels, which reorder NHWC tensors into blocked layouts around every call. The sums are the
same, in another order: outputs and gradients agree to float32 rounding, and the model, its
variables and its checkpoints are unchanged.

Only the training step uses it (`with pointwise_convs_as_matmul(): model(x, training=True)`);
inference and export keep their Conv2D ops, which the BatchNorm folding and the LiteRT
converter expect.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Iterator, List, Sequence, Tuple

import keras
import tensorflow as tf

_LOCK = threading.Lock()
_ACTIVE = 0  # open contexts (replica threads trace concurrently under MirroredStrategy)
_SAVED = None  # Conv2D's own convolution_op attribute before patching, if it had one
_FALLBACK = None  # the convolution_op Conv2D resolved to before patching


def is_pointwise(layer) -> bool:
    """Whether a Keras conv layer is a plain 1x1, undilated, ungrouped NHWC conv (any stride)."""
    return (
        tuple(layer.kernel_size) == (1, 1)
        and tuple(layer.dilation_rate) == (1, 1)
        and getattr(layer, "groups", 1) == 1
        and layer.data_format == "channels_last"
    )


def pointwise_conv(inputs: tf.Tensor, kernel: tf.Tensor, strides=(1, 1)) -> tf.Tensor:
    """conv2d(inputs, kernel, strides) for a [1, 1, C_in, C_out] kernel (SAME or VALID: the
    same for 1x1), as one MatMul on the NHWC pixels it samples."""
    if tuple(strides) != (1, 1):
        inputs = inputs[:, :: strides[0], :: strides[1], :]
    c_in, c_out = kernel.shape[-2], kernel.shape[-1]
    pixels = tf.reshape(inputs, [-1, c_in])
    outputs = tf.matmul(pixels, tf.reshape(kernel, [c_in, c_out]))
    shape = tf.concat([tf.shape(inputs)[:-1], [c_out]], axis=0)
    outputs = tf.reshape(outputs, shape)
    # Keep the static shape that Keras layers downstream read (batch and spatial sizes).
    outputs.set_shape(inputs.shape[:-1].concatenate([c_out]))
    return outputs


def _convolution_op(layer, inputs, kernel):
    if is_pointwise(layer):
        return pointwise_conv(inputs, kernel, layer.strides)
    return _FALLBACK(layer, inputs, kernel)


@contextlib.contextmanager
def pointwise_convs_as_matmul(enabled: bool = True) -> Iterator[None]:
    """While open, every Keras Conv2D that `is_pointwise` computes its output (and so, under a
    GradientTape, its gradients) with `pointwise_conv`. Meant around the forward pass of a
    training step while it is traced; `enabled=False` leaves everything as it is."""
    global _ACTIVE, _SAVED, _FALLBACK
    if not enabled:
        yield
        return
    conv2d = keras.layers.Conv2D
    with _LOCK:
        if _ACTIVE == 0:
            _SAVED = conv2d.__dict__.get("convolution_op")
            _FALLBACK = conv2d.convolution_op
            conv2d.convolution_op = _convolution_op
        _ACTIVE += 1
    try:
        yield
    finally:
        with _LOCK:
            _ACTIVE -= 1
            if _ACTIVE == 0:
                if _SAVED is None:
                    del conv2d.convolution_op
                else:
                    conv2d.convolution_op = _SAVED
                _SAVED = None


def loss_and_gradients(
    model, images, labels, batch_norm_state: Sequence, as_matmul: bool
) -> Tuple[object, List[object]]:
    """(loss, gradients of every trainable variable) of the official loss (mean cross-entropy
    plus `model.losses`) in training mode, the 1x1 convs as MatMuls if `as_matmul`; the
    BatchNorm statistics (`model.non_trainable_variables`) are set to `batch_norm_state` first,
    so that repeated calls see the same network."""
    for variable, value in zip(model.non_trainable_variables, batch_norm_state):
        variable.assign(value)
    with tf.GradientTape() as tape:
        with pointwise_convs_as_matmul(as_matmul):
            logits = model(images, training=True)
        ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
        loss = tf.reduce_mean(ce) + tf.add_n(model.losses)
    return loss, tape.gradient(loss, model.trainable_variables)
