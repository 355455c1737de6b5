"""Inference-time rewrites of a DeepLab Keras model that keep its numerics.

`optimize_for_inference(model)` returns a new functional model, with the same layer names and
outputs, in which

* every Conv2D / DepthwiseConv2D followed by a BatchNormalization is one `FusedConv` layer:
  the BatchNorm (moving statistics, i.e. inference mode) is folded into the kernel and a bias,
  ``w' = w * gamma / sqrt(var + eps)``, ``b' = beta - mean * gamma / sqrt(var + eps)``;
* a ReLU / ReLU6 that is the only consumer of such a BatchNorm is fused into the same layer,
  which emits ``conv -> BiasAdd -> Relu`` so that Grappler's remapper (and oneDNN) run it as one
  fused kernel instead of five element-wise passes over the feature map;
* optionally every layer runs in another dtype (``dtype='bfloat16'``: weights and activations
  in bfloat16, the logits and the final resize stay float32).

The rewrite only reads the model: the result holds copies of its layers and weights. It is for inference only (no BatchNorm updates, no
dropout, no weight decay). Folding changes rounding only: the folded float32 model equals the
original to ~1e-5 relative (see tests/test_optimize.py).

`inference_function(model, input_shape, jit_compile=False)` wraps `model(x, training=False)` in a
`tf.function` with a fixed input signature, so it is traced once.
"""

from __future__ import annotations

from typing import Dict, Iterable, List, Optional, Sequence

import keras
import numpy as np
import tensorflow as tf

FLOAT32_LAYERS = ("logits.semantic", "upsample_logits")
_CONV_TYPES = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D)


@keras.saving.register_keras_serializable(package="deeplab")
class FusedConv(keras.layers.Layer):
    """Conv2D or depthwise conv + bias (+ ReLU / ReLU6), written with `tf.nn` ops.

    `depthwise=True`: the kernel is [kh, kw, in_channels, multiplier]. The op sequence
    conv -> BiasAdd -> Relu is what Grappler's remapper fuses into `_FusedConv2D`.
    """

    def __init__(
        self,
        filters: Optional[int],
        kernel_size,
        *,
        depthwise: bool = False,
        depth_multiplier: int = 1,
        strides=(1, 1),
        padding: str = "same",
        dilation_rate=(1, 1),
        activation: Optional[str] = None,
        relu_max_value: Optional[float] = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.filters = None if filters is None else int(filters)
        self.kernel_size = tuple(int(k) for k in kernel_size)
        self.depthwise = bool(depthwise)
        self.depth_multiplier = int(depth_multiplier)
        self.strides = tuple(int(s) for s in strides)
        self.padding = padding.lower()
        self.dilation_rate = tuple(int(d) for d in dilation_rate)
        if activation not in (None, "relu"):
            raise ValueError(f"unsupported activation {activation!r}")
        self.activation = activation
        self.relu_max_value = None if relu_max_value is None else float(relu_max_value)

    def build(self, input_shape):
        channels = int(input_shape[-1])
        if self.depthwise:
            shape = self.kernel_size + (channels, self.depth_multiplier)
            out = channels * self.depth_multiplier
        else:
            shape = self.kernel_size + (channels, self.filters)
            out = self.filters
        self.kernel = self.add_weight(name="kernel", shape=shape, initializer="zeros")
        self.bias = self.add_weight(name="bias", shape=(out,), initializer="zeros")

    def call(self, x):
        kernel = tf.cast(self.kernel, x.dtype)
        padding = self.padding.upper()
        if self.depthwise:
            y = tf.nn.depthwise_conv2d(
                x,
                kernel,
                strides=(1,) + self.strides + (1,),
                padding=padding,
                dilations=self.dilation_rate,
            )
        else:
            y = tf.nn.conv2d(
                x, kernel, strides=self.strides, padding=padding, dilations=self.dilation_rate
            )
        y = tf.nn.bias_add(y, tf.cast(self.bias, x.dtype))
        if self.activation == "relu":
            if self.relu_max_value == 6.0 and self.depthwise:
                y = tf.nn.relu6(y)
            else:
                # oneDNN's conv + Relu6 fusion runs 2-6x slower than conv + Relu (measured on
                # 1x1 convs, AVX2); conv + BiasAdd + Relu fuses and the cap is one cheap op.
                y = tf.nn.relu(y)
                if self.relu_max_value is not None:
                    y = tf.minimum(y, tf.cast(self.relu_max_value, y.dtype))
        return y

    def compute_output_shape(self, input_shape):
        n, h, w, c = input_shape
        out = c * self.depth_multiplier if self.depthwise else self.filters

        def size(d, k, s, r):
            if d is None:
                return None
            if self.padding == "same":
                return (d + s - 1) // s
            return (d - (k - 1) * r - 1) // s + 1

        return (
            n,
            size(h, self.kernel_size[0], self.strides[0], self.dilation_rate[0]),
            size(w, self.kernel_size[1], self.strides[1], self.dilation_rate[1]),
            out,
        )

    def get_config(self):
        return {
            **super().get_config(),
            "filters": self.filters,
            "kernel_size": self.kernel_size,
            "depthwise": self.depthwise,
            "depth_multiplier": self.depth_multiplier,
            "strides": self.strides,
            "padding": self.padding,
            "dilation_rate": self.dilation_rate,
            "activation": self.activation,
            "relu_max_value": self.relu_max_value,
        }


@keras.saving.register_keras_serializable(package="deeplab")
class AddN(keras.layers.Layer):
    """Sum of a list of tensors as one `AddN` op (a Keras `Add` emits a chain of AddV2)."""

    def call(self, inputs):
        return tf.add_n(list(inputs))

    def compute_output_shape(self, input_shapes):
        return input_shapes[0]


@keras.saving.register_keras_serializable(package="deeplab")
class ReluMax(keras.layers.Layer):
    """ReLU written as `maximum(x, 0)`: the same values, but an op the remapper leaves alone.

    Used after residual sums: with oneDNN, Grappler's remapper fuses conv + BiasAdd + Add +
    Relu even when the sum also feeds the next unit (Xception middle flow), then fails with
    "Mutation::Apply error ... missing node" and drops the whole remapper pass, so no conv of
    the graph gets its bias or ReLU fused.
    """

    def call(self, x):
        return tf.maximum(x, tf.zeros([], x.dtype))

    def compute_output_shape(self, input_shape):
        return input_shape


def fold_batch_norm_weights(
    kernel: np.ndarray,
    bias: Optional[np.ndarray],
    bn: keras.layers.BatchNormalization,
    depthwise: bool,
):
    """The kernel and bias of `conv -> bn` as one conv (BatchNorm in inference mode)."""
    variance = np.asarray(bn.moving_variance, np.float64)
    mean = np.asarray(bn.moving_mean, np.float64)
    gamma = np.asarray(bn.gamma, np.float64) if bn.scale else np.ones_like(variance)
    beta = np.asarray(bn.beta, np.float64) if bn.center else np.zeros_like(variance)
    scale = gamma / np.sqrt(variance + bn.epsilon)
    kernel = np.asarray(kernel, np.float64)
    if depthwise:  # [kh, kw, in, mult]: output channel = in * mult + m
        folded = kernel * scale.reshape(kernel.shape[2], kernel.shape[3])
    else:
        folded = kernel * scale
    new_bias = beta - mean * scale
    if bias is not None:
        new_bias = new_bias + np.asarray(bias, np.float64) * scale
    return folded.astype(np.float32), new_bias.astype(np.float32)


def _topological_nodes(model: keras.Model) -> List[object]:
    """Nodes of `model`'s graph (not of other models sharing its layers), inputs first."""
    order: List[object] = []
    seen = set()

    def visit(tensor):
        operation, node_index, _ = tensor._keras_history
        node = operation._inbound_nodes[node_index]
        if id(node) in seen:
            return
        seen.add(id(node))
        for parent in node.input_tensors:
            visit(parent)
        order.append(node)

    for output in model.outputs:
        visit(output)
    return order


def _fused_from(conv, bn, relu, name_dtype) -> FusedConv:
    depthwise = isinstance(conv, keras.layers.DepthwiseConv2D)
    activation, max_value = None, None
    if relu is not None:
        activation = "relu"
        max_value = None if relu.max_value is None else float(relu.max_value)
    return FusedConv(
        None if depthwise else conv.filters,
        conv.kernel_size,
        depthwise=depthwise,
        depth_multiplier=conv.depth_multiplier if depthwise else 1,
        strides=conv.strides,
        padding=conv.padding,
        dilation_rate=conv.dilation_rate,
        activation=activation,
        relu_max_value=max_value,
        name=conv.name,
        dtype=name_dtype(conv),
    )


def _foldable_relu(layer) -> bool:
    return (
        isinstance(layer, keras.layers.ReLU)
        and float(layer.negative_slope) == 0.0
        and float(layer.threshold) == 0.0
    )


def optimize_for_inference(
    model: keras.Model,
    *,
    fold_batch_norm: bool = True,
    fuse_activations: bool = True,
    dtype: Optional[str] = None,
    float32_layers: Sequence[str] = FLOAT32_LAYERS,
    residual_add_n: bool = True,
    residual_relu_max: bool = True,
    name: Optional[str] = None,
) -> keras.Model:
    """A new inference-only functional model equal to `model(x, training=False)`.

    fold_batch_norm: fold each BatchNorm that alone consumes a conv's output into that conv.
    fuse_activations: also fuse the ReLU that alone consumes such a BatchNorm.
    dtype: None keeps every layer's dtype policy; e.g. 'bfloat16' or 'float16' runs every layer
      in that dtype except `float32_layers`.
    residual_add_n: Keras `Add` layers become `AddN` (one op for the residual sum).
    residual_relu_max: a ReLU that consumes an `Add` becomes `maximum(x, 0)` (see `ReluMax`):
      with oneDNN, Grappler's remapper otherwise fuses conv + BiasAdd + Add + Relu although the
      sum feeds the next residual too, fails ("Mutation::Apply error ... missing node") and
      drops every fusion of the graph.
    Every layer is a copy (weights copied), so the result is a snapshot independent of `model`.
    """
    nodes = _topological_nodes(model)
    consumers: Dict[int, List[object]] = {}
    for node in nodes:
        for tensor in node.input_tensors:
            consumers.setdefault(id(tensor), []).append(node)
    output_ids = {id(t) for t in model.outputs}

    def only_consumer(tensor):
        users = consumers.get(id(tensor), [])
        if len(users) != 1 or id(tensor) in output_ids:
            return None
        return users[0]

    def layer_dtype(layer):
        if dtype is None or layer.name in float32_layers:
            return layer.dtype_policy
        return dtype

    mapping: Dict[int, object] = {}
    absorbed = set()  # ids of nodes folded into an earlier FusedConv
    for node in nodes:
        layer = node.operation
        if id(node) in absorbed:
            continue
        if isinstance(layer, keras.layers.InputLayer) or not node.input_tensors:
            out = node.outputs[0]
            mapping[id(out)] = keras.Input(
                shape=out.shape[1:], batch_size=out.shape[0], dtype=out.dtype, name=layer.name
            )
            continue
        args = keras.tree.map_structure(
            lambda t: mapping[id(t)] if keras.backend.is_keras_tensor(t) else t,
            (node.arguments.args, node.arguments.kwargs),
        )
        bn_node = (
            only_consumer(node.outputs[0])
            if (
                fold_batch_norm
                and isinstance(layer, _CONV_TYPES)
                and layer.activation in (None, keras.activations.linear)
            )
            else None
        )
        if bn_node is not None and isinstance(bn_node.operation, keras.layers.BatchNormalization):
            bn = bn_node.operation
            relu_node = only_consumer(bn_node.outputs[0]) if fuse_activations else None
            if relu_node is not None and not _foldable_relu(relu_node.operation):
                relu_node = None
            fused = _fused_from(layer, bn, relu_node.operation if relu_node else None, layer_dtype)
            depthwise = isinstance(layer, keras.layers.DepthwiseConv2D)
            result = fused(args[0][0])
            kernel = layer.kernel.numpy()
            bias = layer.bias.numpy() if layer.use_bias else None
            new_kernel, new_bias = fold_batch_norm_weights(kernel, bias, bn, depthwise)
            fused.kernel.assign(new_kernel.astype(fused.kernel.dtype))
            fused.bias.assign(new_bias.astype(fused.bias.dtype))
            absorbed.add(id(bn_node))
            last = bn_node
            if relu_node is not None:
                absorbed.add(id(relu_node))
                last = relu_node
            mapping[id(node.outputs[0])] = result
            mapping[id(bn_node.outputs[0])] = result
            mapping[id(last.outputs[0])] = result
            continue
        producer = node.input_tensors[0]._keras_history.operation
        if residual_add_n and type(layer) is keras.layers.Add:
            target = AddN(name=layer.name, dtype=layer_dtype(layer))
        elif (
            residual_relu_max
            and _foldable_relu(layer)
            and layer.max_value is None
            and isinstance(producer, keras.layers.Add)
        ):
            target = ReluMax(name=layer.name, dtype=layer_dtype(layer))
        else:
            target = _clone_layer(layer, layer_dtype(layer))
        outputs = target(*args[0], **args[1])
        _copy_weights(layer, target)
        for old, new in zip(node.outputs, keras.tree.flatten(outputs)):
            mapping[id(old)] = new
    inputs = [mapping[id(t)] for t in model.inputs]
    outputs = [mapping[id(t)] for t in model.outputs]
    return keras.Model(
        inputs[0] if len(inputs) == 1 else inputs,
        outputs[0] if len(outputs) == 1 else outputs,
        name=name or model.name + "_inference",
    )


def _clone_layer(layer, dtype):
    config = layer.get_config()
    config["dtype"] = dtype
    return layer.__class__.from_config(config)


def _copy_weights(source, target) -> None:
    for src, dst in zip(source.weights, target.weights):
        dst.assign(tf.cast(src.value, dst.dtype))


def fold_batch_norms(model: keras.Model, **kwargs) -> keras.Model:
    """`optimize_for_inference` in float32 (BatchNorm folded, activations fused)."""
    return optimize_for_inference(model, **kwargs)


def bfloat16_inference_model(model: keras.Model, **kwargs) -> keras.Model:
    """The folded model with bfloat16 weights and activations (float32 logits)."""
    return optimize_for_inference(model, dtype="bfloat16", **kwargs)


def inference_function(
    model: keras.Model,
    input_shape: Sequence[Optional[int]],
    jit_compile: bool = False,
    input_dtype=tf.float32,
):
    """`model(x, training=False)` as a tf.function traced once for `input_shape` (NHWC)."""
    spec = tf.TensorSpec(list(input_shape), input_dtype, name="image")

    @tf.function(input_signature=[spec], jit_compile=jit_compile, reduce_retracing=True)
    def predict(images):
        return model(images, training=False)

    return predict


def count_layers(model: keras.Model, types: Iterable[type]) -> int:
    """How many layers of `model` are instances of `types`."""
    types = tuple(types)
    return sum(isinstance(layer, types) for layer in model.layers)
