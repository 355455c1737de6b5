"""Training checkpoints: model, optimizer and step, the last N kept, safe to resume.

Layout of `train_logdir` (our object-based checkpoints, see the shared contract):
`ckpt-<step>.index/.data-*` and `checkpoint` written by `tf.train.CheckpointManager` over
`tf.train.Checkpoint(model=model, step=global_step, optimizer=<optimizer, nested>)`, plus
`model_options.json` so eval/vis/export can rebuild the same model.

Multi-worker runs (backup and restore): every worker takes part in each save, the chief
writes into `train_logdir`, the others into a private temp dir that is deleted right away;
after a restart every worker restores the chief's latest checkpoint (the log dir has to be
on a file system all workers see, as in the TF multi-worker guide).
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Optional

import tensorflow as tf
from absl import logging

from deeplab.training import distribute

MODEL_OPTIONS_FILE = "model_options.json"
QUANTIZERS_KEY = "quantizers"


def latest_checkpoint(logdir: str) -> Optional[str]:
    return tf.train.latest_checkpoint(logdir) if logdir and tf.io.gfile.isdir(logdir) else None


def checkpoint_step(path: str) -> int:
    """The step number in a `.../ckpt-<step>` prefix."""
    return int(path.rsplit("-", 1)[-1])


class TrainCheckpoint:
    """A `tf.train.CheckpointManager` that knows about multi-worker runs."""

    def __init__(
        self,
        logdir: str,
        *,
        model,
        optimizer,
        step: tf.Variable,
        strategy: tf.distribute.Strategy,
        max_to_keep: int = 5,
        quantizers: Optional[tf.train.Checkpoint] = None,
    ):
        self.logdir = logdir
        self.strategy = strategy
        self.step = step
        self.model = model
        # The optimizer tracks the model's variables too, and a checkpoint stores each variable
        # under the shortest path that reaches it: nesting the optimizer two levels down keeps
        # every model variable under `model/_operations/<i>/...` (what partial restores by key,
        # deeplab.checkpoints.load_checkpoint with exclusions, read) instead of
        # `optimizer/_trainable_variables/<j>`.
        # Quantization-aware training adds the activation ranges under `quantizers`.
        extra = {} if quantizers is None else {QUANTIZERS_KEY: quantizers}
        self.checkpoint = tf.train.Checkpoint(
            model=model,
            step=step,
            optimizer=tf.train.Checkpoint(state=tf.train.Checkpoint(optimizer=optimizer)),
            **extra,
        )
        self.write_dir = distribute.worker_dir(logdir, strategy)
        self.is_chief = distribute.is_chief(strategy)
        self.manager = tf.train.CheckpointManager(
            self.checkpoint, self.write_dir, max_to_keep=max_to_keep, checkpoint_name="ckpt"
        )

    def restore_latest(self) -> Optional[str]:
        """Restores the chief's latest checkpoint, if any; returns its path."""
        path = latest_checkpoint(self.logdir)
        if path is None:
            return None
        from deeplab.checkpoints import check_checkpoint_fits

        check_checkpoint_fits(self.model, path)  # one clear error, not a traceback + warnings
        status = self.checkpoint.restore(path)
        status.assert_existing_objects_matched()
        logging.info("Restored %s (step %d)", path, int(self.step.numpy()))
        return path

    def save(self) -> str:
        """Saves at the current step on every worker; returns the chief's path."""
        step = int(self.step.numpy())
        path = self.manager.save(checkpoint_number=step)
        if not self.is_chief:
            distribute.remove_worker_dir(self.write_dir, self.logdir)
            path = os.path.join(self.logdir, f"ckpt-{step}")
        return path


def write_model_options(logdir: str, model_options, **extra) -> str:
    """Writes `model_options.json`: the ModelOptions fields plus `extra` (e.g. dataset)."""
    data = dataclasses.asdict(model_options)
    data.update(extra)
    path = os.path.join(logdir, MODEL_OPTIONS_FILE)
    tf.io.gfile.makedirs(logdir)
    with tf.io.gfile.GFile(path + ".tmp", "w") as f:
        json.dump(data, f, indent=2, sort_keys=True, default=list)
    tf.io.gfile.rename(path + ".tmp", path, overwrite=True)
    return path


def read_model_options(logdir: str) -> dict:
    with tf.io.gfile.GFile(os.path.join(logdir, MODEL_OPTIONS_FILE)) as f:
        return json.load(f)
