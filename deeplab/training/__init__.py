"""Training of DeepLab: the official train.py semantics on tf.distribute (see trainer.py).

The public names load on first use, so that `deeplab.training.losses` (backend-independent)
can be imported without importing the TensorFlow trainer.
"""

import importlib

_EXPORTS = {
    "LearningRateConfig": "deeplab.training.schedules",
    "learning_rate_at": "deeplab.training.schedules",
    "LogdirLockedError": "deeplab.training.logdir_lock",
    "BadDataError": "deeplab.training.trainer",
    "NonFiniteLossError": "deeplab.training.trainer",
    "TrainConfig": "deeplab.training.trainer",
    "Trainer": "deeplab.training.trainer",
    "train": "deeplab.training.trainer",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'deeplab.training' has no attribute {name!r}")
