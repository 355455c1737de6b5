"""Training of DeepLab: the official train.py semantics on tf.distribute (see trainer.py)."""

from deeplab.training.logdir_lock import LogdirLockedError
from deeplab.training.schedules import LearningRateConfig, learning_rate_at
from deeplab.training.trainer import (
    BadDataError,
    NonFiniteLossError,
    TrainConfig,
    Trainer,
    train,
)

__all__ = [
    "BadDataError",
    "LearningRateConfig",
    "LogdirLockedError",
    "NonFiniteLossError",
    "TrainConfig",
    "Trainer",
    "learning_rate_at",
    "train",
]
