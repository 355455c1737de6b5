"""Which checkpoints eval and vis read: one fixed checkpoint, or each new one of a training
directory as training writes it; and the training step of a checkpoint."""

from __future__ import annotations

import os
import re
import sys
import time
from typing import Callable, Iterator, List, Optional

import tensorflow as tf
from absl import logging

from deeplab.checkpoints import keras_checkpoints


def checkpoint_step(path: str) -> int:
    """Training step of a checkpoint: its `step` / `global_step` variable, else the `-N` suffix
    (`ckpt-N.weights.h5` for a Keras checkpoint of the JAX trainer)."""
    keras_step = keras_checkpoints.checkpoint_step(path)
    if keras_step is not None:
        return keras_step
    try:
        reader = tf.train.load_checkpoint(path)
        shapes = reader.get_variable_to_shape_map()
        for key in (
            "step/.ATTRIBUTES/VARIABLE_VALUE",
            "global_step",
            "optimizer/iterations/.ATTRIBUTES/VARIABLE_VALUE",
            "save_counter/.ATTRIBUTES/VARIABLE_VALUE",
        ):
            if key in shapes:
                return int(reader.get_tensor(key))
    except (tf.errors.OpError, ValueError):
        pass
    match = re.search(r"-(\d+)$", os.fspath(path))
    return int(match.group(1)) if match else 0


def latest_checkpoint(logdir: str) -> Optional[str]:
    """The latest checkpoint of a training dir: a TensorFlow one (prefix), else the JAX
    trainer's latest complete `.weights.h5`; None when there is none."""
    return tf.train.latest_checkpoint(logdir) or keras_checkpoints.latest_checkpoint(logdir)


def all_checkpoints(logdir: str) -> List[str]:
    """The checkpoints listed in `logdir`'s state file (TensorFlow's, else the JAX trainer's
    `checkpoint.json`), oldest first (the latest last)."""
    if not logdir or not tf.io.gfile.isdir(logdir):
        return []
    state = tf.train.get_checkpoint_state(logdir)
    if state is None:
        return keras_checkpoints.all_checkpoints(logdir)
    paths = [
        p if os.path.isabs(p) else os.path.join(logdir, p) for p in state.all_model_checkpoint_paths
    ]
    latest = state.model_checkpoint_path
    if latest:
        latest = latest if os.path.isabs(latest) else os.path.join(logdir, latest)
        paths = [p for p in paths if p != latest] + [latest]
    return paths


def load_readable(load: Callable[[str], object], path: str, checkpoint_dir: str):
    """`load(path)`; when checkpoint `path` of the training dir `checkpoint_dir` is unreadable
    (a truncated file), prints a warning naming the damaged file and loads the previous
    checkpoint instead, and so on. Returns (the path loaded, what `load` returned).

    Raises CheckpointUnreadableError for a static checkpoint, or when none is readable."""
    from deeplab.checkpoints.official import CheckpointUnreadableError

    earlier = [p for p in reversed(all_checkpoints(checkpoint_dir)) if p != path]
    while True:
        try:
            return path, load(path)
        except CheckpointUnreadableError as err:
            if not earlier:
                raise
            print(f"WARNING: {err}; falling back to {earlier[0]}", file=sys.stderr, flush=True)
            path = earlier.pop(0)


def is_static_checkpoint(path: str) -> bool:
    """True when `path` names one fixed checkpoint (a prefix, an archive, a Keras `.weights.h5`,
    or a directory without a `checkpoint` state file, e.g. an unpacked model-zoo tarball)
    rather than a training dir."""
    path = os.fspath(path)
    if keras_checkpoints.is_keras_weights(path):
        return True
    if path.endswith((".tar.gz", ".tgz", ".tar")) or os.path.isfile(path + ".index"):
        return True
    if path.endswith(".index") and os.path.isfile(path):
        return True
    if os.path.isdir(path):
        return tf.train.latest_checkpoint(path) is None and any(
            f.endswith(".index") for _, _, files in os.walk(path) for f in files
        )
    return False


def checkpoints_to_evaluate(
    checkpoint_dir: str,
    *,
    eval_interval_secs: float = 300,
    max_number_of_evaluations: int = 0,
    timeout_secs: Optional[float] = None,
) -> Iterator[str]:
    """Checkpoint paths to evaluate: one for a static checkpoint, else each new checkpoint of
    `checkpoint_dir` as training writes it (at most one per `eval_interval_secs`, as
    `tf.train.checkpoints_iterator`), until `max_number_of_evaluations` (0 or less: no limit, as
    in the official scripts) or `timeout_secs` without a new one. "Waiting" is logged only when
    there is no new one."""
    if is_static_checkpoint(checkpoint_dir):
        yield checkpoint_dir
        return
    count, last, waiting = 0, None, False
    wait_start = next_poll = time.monotonic()
    while True:
        path = latest_checkpoint(checkpoint_dir)
        if path is not None and path != last:
            started, last, waiting = time.monotonic(), path, False
            yield path
            count += 1
            if max_number_of_evaluations > 0 and count >= max_number_of_evaluations:
                return
            wait_start = time.monotonic()
            next_poll = started + eval_interval_secs
            time.sleep(max(0.0, next_poll - time.monotonic()))
            continue
        if timeout_secs is not None and time.monotonic() - wait_start >= timeout_secs:
            logging.info(
                "No new checkpoint in %s for %.0f s; stopping", checkpoint_dir, timeout_secs
            )
            return
        if not waiting:
            logging.info("Waiting for a new checkpoint in %s", checkpoint_dir)
            waiting = True
        time.sleep(1.0)
