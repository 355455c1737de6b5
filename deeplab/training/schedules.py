"""The official learning-rate policies (`train_utils.get_model_learning_rate`).

With `s = max(step - slow_start_step, 0)` and `decay_steps = training_number_of_steps -
slow_start_step` (the official value when `decay_steps` is 0):

* poly: `tf.train.polynomial_decay(base, s, decay_steps, end_learning_rate, power)`, i.e.
  `(base - end) * (1 - min(s, decay_steps) / decay_steps) ** power + end`;
* step: `tf.train.exponential_decay(base, s, decay_step, decay_factor, staircase=True)`,
  i.e. `base * decay_factor ** floor(s / decay_step)`;

and below `slow_start_step` the rate is `slow_start_learning_rate` instead. With the
default `slow_start_step=0` the step is the global step itself. `step` is the number of
updates already applied (the TF1 global step before the update), so the first update uses
`base_learning_rate`.

The math is `keras.ops`, so the same function gives a TensorFlow tensor in the TensorFlow
trainer (a graph op on the global step) and a JAX value inside the JAX trainer's jitted step.
"""

from __future__ import annotations

import dataclasses

import keras
from keras import ops

POLICIES = ("poly", "step")


@dataclasses.dataclass(frozen=True)
class LearningRateConfig:
    learning_policy: str = "poly"
    base_learning_rate: float = 1e-4
    learning_rate_decay_step: int = 2000
    learning_rate_decay_factor: float = 0.1
    training_number_of_steps: int = 30000
    learning_power: float = 0.9
    slow_start_step: int = 0
    slow_start_learning_rate: float = 1e-4
    end_learning_rate: float = 0.0
    decay_steps: float = 0.0

    def __post_init__(self):
        if self.learning_policy not in POLICIES:
            raise ValueError(f"--learning_policy={self.learning_policy!r} is not one of {POLICIES}")
        if self.base_learning_rate < 0:
            raise ValueError(f"--base_learning_rate={self.base_learning_rate} must be >= 0")
        if self.training_number_of_steps < 1:
            raise ValueError(
                f"--training_number_of_steps={self.training_number_of_steps} must be >= 1"
            )
        if self.slow_start_step < 0:
            raise ValueError(f"--slow_start_step={self.slow_start_step} must be >= 0")
        if self.end_learning_rate < 0:
            raise ValueError(f"--end_learning_rate={self.end_learning_rate} must be >= 0")
        if self.learning_policy == "poly" and self.effective_decay_steps <= 0:
            raise ValueError(
                f"--slow_start_step={self.slow_start_step} must be smaller than "
                f"--training_number_of_steps={self.training_number_of_steps} for the poly policy"
            )
        if self.learning_policy == "step" and self.learning_rate_decay_step < 1:
            raise ValueError(
                f"--learning_rate_decay_step={self.learning_rate_decay_step} must be >= 1"
            )

    @property
    def effective_decay_steps(self) -> float:
        if self.decay_steps:
            return float(self.decay_steps)
        return float(self.training_number_of_steps - self.slow_start_step)


def learning_rate_at(config: LearningRateConfig, step):
    """The learning rate (a float32 tensor of the backend) after `step` updates."""
    step = ops.cast(step, "float32")
    adjusted = ops.maximum(step - float(config.slow_start_step), 0.0)
    base = float(config.base_learning_rate)
    if config.learning_policy == "poly":
        decay_steps = config.effective_decay_steps
        frac = ops.minimum(adjusted, decay_steps) / decay_steps
        end = float(config.end_learning_rate)
        rate = (base - end) * ops.power(1.0 - frac, float(config.learning_power)) + end
    else:
        exponent = ops.floor(adjusted / float(config.learning_rate_decay_step))
        rate = base * ops.power(float(config.learning_rate_decay_factor), exponent)
    if config.slow_start_step > 0:
        rate = ops.where(
            step < float(config.slow_start_step),
            ops.convert_to_tensor(float(config.slow_start_learning_rate), "float32"),
            rate,
        )
    return ops.cast(rate, "float32")


class OfficialSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """A Keras schedule wrapping `learning_rate_at` (called with the number of done steps)."""

    def __init__(self, config: LearningRateConfig):
        super().__init__()
        self.config = config

    def __call__(self, step):
        return learning_rate_at(self.config, step)

    def get_config(self):
        return dataclasses.asdict(self.config)

    @classmethod
    def from_config(cls, config):
        return cls(LearningRateConfig(**config))
