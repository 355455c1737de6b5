"""Optimizers with the official update rules, and the official gradient multipliers.

* `momentum` is `tf.train.MomentumOptimizer` (TF1): `accum = momentum * accum + grad;
  var -= lr * accum`. Keras's SGD accumulates `lr * grad` instead, which differs from the
  official rule whenever the learning rate changes (every step under the poly policy).
* `adam` is `tf.train.AdamOptimizer(adam_learning_rate, epsilon=adam_epsilon)`: the
  official train.py gives Adam the constant `adam_learning_rate`, not the schedule; Keras's
  Adam has the same update rule (epsilon added to sqrt(v) after bias correction of lr).
* Gradient multipliers (`train_utils.get_model_gradient_multipliers`): every bias gets x2,
  variables of the last layers get x`last_layer_gradient_multiplier` (their biases x2 that).
"""

from __future__ import annotations

from typing import Callable, Dict, Iterable, Sequence, Union

import keras
import tensorflow as tf
from keras import ops

OPTIMIZERS = ("momentum", "adam")


class TF1Momentum(keras.optimizers.Optimizer):
    """`tf.train.MomentumOptimizer` (no Nesterov) as a Keras 3 optimizer.

    Each dense update is the official op itself, ResourceApplyMomentum (one fused kernel per
    variable instead of five elementwise ops over it); other updates (e.g. IndexedSlices
    gradients) use the same rule in Keras ops.
    """

    def __init__(
        self, learning_rate=0.01, momentum: float = 0.9, name: str = "TF1Momentum", **kwargs
    ):
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        self.momentum = float(momentum)

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        self.accumulators = self.add_optimizer_variables(variables, "momentum")

    def update_step(self, gradient, variable, learning_rate):
        lr = ops.cast(learning_rate, variable.dtype)
        accum = self.accumulators[self._get_variable_index(variable)]
        if isinstance(gradient, tf.Tensor) and hasattr(variable, "handle"):
            tf.raw_ops.ResourceApplyMomentum(
                var=variable.handle,
                accum=accum.handle,
                lr=lr,
                grad=tf.cast(gradient, variable.dtype),
                momentum=tf.cast(self.momentum, variable.dtype),
                use_locking=False,
                use_nesterov=False,
            )
            return
        gradient = ops.cast(gradient, variable.dtype)
        self.assign(
            accum, ops.add(ops.multiply(accum, ops.cast(self.momentum, variable.dtype)), gradient)
        )
        self.assign_sub(variable, ops.multiply(accum, lr))

    def get_config(self):
        config = super().get_config()
        config["momentum"] = self.momentum
        return config


def build_optimizer(
    name: str,
    learning_rate: Union[float, Callable],
    *,
    momentum: float = 0.9,
    adam_learning_rate: float = 1e-3,
    adam_epsilon: float = 1e-8,
    loss_scale: bool = False,
) -> keras.optimizers.Optimizer:
    """The official optimizer; `loss_scale=True` wraps it for float16 mixed precision."""
    if name == "momentum":
        opt = TF1Momentum(learning_rate=learning_rate, momentum=momentum)
    elif name == "adam":
        opt = keras.optimizers.Adam(learning_rate=adam_learning_rate, epsilon=adam_epsilon)
    else:
        raise ValueError(f"--optimizer={name!r} is not one of {OPTIMIZERS}")
    if loss_scale:
        opt = keras.optimizers.LossScaleOptimizer(opt)
    return opt


def _is_bias(variable) -> bool:
    # Keras names a conv/dense bias "bias"; BatchNorm's offset is "beta" (TF1: "beta" too,
    # not "biases"), so it gets no multiplier, as officially.
    name = getattr(variable, "name", "")
    return name == "bias" or name.endswith("/bias") or name.endswith("bias:0")


def gradient_multipliers(
    trainable_variables: Sequence, last_layers: Iterable, last_layer_gradient_multiplier: float
) -> Dict[int, float]:
    """{index into trainable_variables: multiplier} for the variables whose multiplier != 1."""
    last_ids = set()
    for layer in last_layers:
        for var in layer.trainable_weights:
            last_ids.add(id(var))
    out: Dict[int, float] = {}
    for i, var in enumerate(trainable_variables):
        mult = 1.0
        if id(var) in last_ids:
            mult = float(last_layer_gradient_multiplier)
        if _is_bias(var):
            mult *= 2.0
        if mult != 1.0:
            out[i] = mult
    return out
