"""Which checkpoints eval and vis read: one fixed checkpoint, or each new one of a training
directory as training writes it; and the training step of a checkpoint."""

from __future__ import annotations

import os
import re
from typing import Iterator, Optional

import tensorflow as tf


def checkpoint_step(path: str) -> int:
    """Training step of a checkpoint: its `step` / `global_step` variable, else the `-N` suffix."""
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


def is_static_checkpoint(path: str) -> bool:
    """True when `path` names one fixed checkpoint (a prefix, an archive, or a directory without
    a `checkpoint` state file, e.g. an unpacked model-zoo tarball) rather than a training dir."""
    path = os.fspath(path)
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
    `checkpoint_dir` as training writes it (`tf.train.checkpoints_iterator`), until
    `max_number_of_evaluations` (0: no limit) or `timeout_secs` without a new one."""
    if is_static_checkpoint(checkpoint_dir):
        yield checkpoint_dir
        return
    count = 0
    for path in tf.train.checkpoints_iterator(
        checkpoint_dir, min_interval_secs=eval_interval_secs, timeout=timeout_secs
    ):
        yield path
        count += 1
        if max_number_of_evaluations and count >= max_number_of_evaluations:
            return
