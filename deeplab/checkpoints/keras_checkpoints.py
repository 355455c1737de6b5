"""Keras-native training checkpoints, as the JAX trainer writes them in its `train_logdir`:
`ckpt-<step>.weights.h5` (the model's weights, loadable on any backend), `ckpt-<step>.state.npz`
(momentum and step) and `checkpoint.json` naming the latest pair and the kept ones. Each file is
renamed into place when complete and `checkpoint.json` last, so the checkpoints it lists are
complete; temporary files (`.tmp-*`) are never listed.

Reading them needs no TensorFlow; eval.py and vis.py find them through
`deeplab.checkpoints.polling`, export.py through `official.resolve_checkpoint_prefix`.
"""

from __future__ import annotations

import json
import os
import re
from typing import List, Optional

CHECKPOINT_STATE = "checkpoint.json"
WEIGHTS_SUFFIX = ".weights.h5"
_STEP = re.compile(r"-(\d+)" + re.escape(WEIGHTS_SUFFIX) + "$")


def read_state(logdir: str) -> Optional[dict]:
    """`checkpoint.json` of `logdir` ({"step", "weights", "state", "all": [...]}), or None when
    there is none. A file that is not such a JSON object raises a ValueError naming it."""
    path = os.path.join(os.fspath(logdir or ""), CHECKPOINT_STATE)
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        try:
            state = json.load(f)
        except ValueError as err:
            raise ValueError(f"{path}: not a checkpoint state ({err})") from None
    if not isinstance(state, dict) or "weights" not in state:
        raise ValueError(f'{path}: not a checkpoint state (no "weights" entry)')
    return state


def all_checkpoints(logdir: str) -> List[str]:
    """The `.weights.h5` paths `checkpoint.json` lists and that exist, oldest first (the latest
    last)."""
    state = read_state(logdir)
    if state is None:
        return []
    entries = [e for e in state.get("all", []) if e.get("weights") != state["weights"]] + [state]
    paths = [os.path.join(logdir, e["weights"]) for e in entries]
    return [p for p in paths if os.path.isfile(p)]


def latest_checkpoint(logdir: str) -> Optional[str]:
    """The latest complete `.weights.h5` of a JAX training dir, or None."""
    paths = all_checkpoints(logdir)
    return paths[-1] if paths else None


def is_keras_weights(path: str) -> bool:
    """Whether `path` is a Keras `.weights.h5` file."""
    path = os.fspath(path)
    return path.endswith(WEIGHTS_SUFFIX) and os.path.isfile(path)


def checkpoint_step(path: str) -> Optional[int]:
    """The training step of `ckpt-<step>.weights.h5`, or None for another name."""
    match = _STEP.search(os.fspath(path))
    return int(match.group(1)) if match else None
