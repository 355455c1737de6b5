"""Training checkpoints: model, optimizer and step, the last N kept, safe to resume.

Layout of `train_logdir` (our object-based checkpoints, see the shared contract):
`ckpt-<step>.index/.data-*` and `checkpoint` written by `tf.train.CheckpointManager` over
`tf.train.Checkpoint(model=model, step=global_step, optimizer=<optimizer, nested>)`, plus
`model_options.json` (`deeplab.run_options`) so eval/vis/export can rebuild the same model.

Multi-worker runs (backup and restore): every worker takes part in each save, the chief
writes into `train_logdir`, the others into a private temp dir that is deleted right away;
after a restart every worker restores the chief's latest checkpoint (the log dir has to be
on a file system all workers see, as in the TF multi-worker guide).
"""

from __future__ import annotations

import os
import sys
from typing import List, Optional

import tensorflow as tf
from absl import logging

from deeplab.checkpoints.polling import all_checkpoints
from deeplab.checkpoints.unreadable import describe_unreadable, unreadable_checkpoint
from deeplab.training import distribute

QUANTIZERS_KEY = "quantizers"


def latest_checkpoint(logdir: str) -> Optional[str]:
    """The latest checkpoint of `logdir`, None when there is none (or no such directory)."""
    return tf.train.latest_checkpoint(logdir) if logdir and tf.io.gfile.isdir(logdir) else None


def remove_interrupted_saves(logdir: str) -> List[str]:
    """Deletes `ckpt-<step>_temp/` folders left by saves that were killed; returns them."""
    removed = []
    for path in tf.io.gfile.glob(os.path.join(logdir, "ckpt-*_temp")):
        if tf.io.gfile.isdir(path):
            tf.io.gfile.rmtree(path)
            removed.append(path)
            logging.info("Removed %s, left by an interrupted checkpoint save", path)
    return removed


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
        """Restores the chief's latest readable checkpoint, if any; returns its path.

        An unreadable one (e.g. a `.data` file truncated by a full disk) is reported with a
        warning naming the file, and the previous complete checkpoint is restored instead.
        Leftover `ckpt-<step>_temp/` folders of interrupted saves are removed first.
        """
        if self.is_chief:
            remove_interrupted_saves(self.logdir)
        from deeplab.checkpoints.official import check_checkpoint_fits

        candidates = list(reversed(all_checkpoints(self.logdir)))
        for i, path in enumerate(candidates):
            try:
                # One clear error for a checkpoint of another model, not a traceback + warnings.
                check_checkpoint_fits(self.model, path)
                status = self.checkpoint.restore(path)
                status.assert_existing_objects_matched()
            except (tf.errors.OpError, IndexError, ValueError) as err:
                if not unreadable_checkpoint(err):
                    raise
                following = candidates[i + 1] if i + 1 < len(candidates) else None
                print(
                    f"WARNING: checkpoint {path} is unreadable "
                    f"({describe_unreadable(path, err)}); "
                    + (f"falling back to {following}" if following else "starting over"),
                    file=sys.stderr,
                    flush=True,
                )
                continue
            logging.info("Restored %s (step %d)", path, int(self.step.numpy()))
            return path
        return None

    def discard(self, path: str) -> Optional[str]:
        """Deletes checkpoint `path` (chief only) and makes the previous one the latest;
        returns the new latest checkpoint or None."""
        remaining = [p for p in all_checkpoints(self.logdir) if p != path]
        if self.is_chief:
            for name in tf.io.gfile.glob(path + ".*"):
                tf.io.gfile.remove(name)
            if remaining:
                tf.compat.v1.train.update_checkpoint_state(
                    self.logdir, remaining[-1], all_model_checkpoint_paths=remaining
                )
            else:
                tf.io.gfile.remove(os.path.join(self.logdir, "checkpoint"))
        return remaining[-1] if remaining else None

    def save(self) -> str:
        """Saves at the current step on every worker; returns the chief's path."""
        step = int(self.step.numpy())
        path = self.manager.save(checkpoint_number=step)
        if not self.is_chief:
            distribute.remove_worker_dir(self.write_dir, self.logdir)
            path = os.path.join(self.logdir, f"ckpt-{step}")
        return path
