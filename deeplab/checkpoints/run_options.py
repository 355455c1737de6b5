"""`model_options.json`: what a training run writes next to its checkpoints so that eval, vis
and export rebuild the same model (the ModelOptions fields plus the dataset, split and crop)."""

from __future__ import annotations

import json
import os
from typing import Optional, Tuple

import tensorflow as tf

from deeplab.modeling.options import FIELD_NAMES, ModelOptions

OPTIONS_FILENAME = "model_options.json"


def write_model_options(logdir: str, model_options: ModelOptions, **extra) -> str:
    """Writes `model_options.json`: the ModelOptions fields plus `extra` (e.g. dataset)."""
    data = {**model_options.as_dict(), **extra}
    path = os.path.join(logdir, OPTIONS_FILENAME)
    tf.io.gfile.makedirs(logdir)
    with tf.io.gfile.GFile(path + ".tmp", "w") as f:
        json.dump(data, f, indent=2, sort_keys=True, default=list)
    tf.io.gfile.rename(path + ".tmp", path, overwrite=True)
    return path


def find_model_options_file(checkpoint_path: Optional[str]) -> Optional[str]:
    """`model_options.json` written by train.py next to the checkpoint (or one level up)."""
    if not checkpoint_path:
        return None
    path = os.fspath(checkpoint_path)
    start = path if os.path.isdir(path) else os.path.dirname(path)
    for folder in (start, os.path.dirname(os.path.abspath(start))):
        candidate = os.path.join(folder, OPTIONS_FILENAME)
        if os.path.isfile(candidate):
            return candidate
    return None


def _model_options_fields(data: dict) -> dict:
    """The ModelOptions fields of a model_options.json (flat, or nested under
    `model_options`)."""
    if isinstance(data.get("model_options"), dict):
        data = data["model_options"]
    return {k: v for k, v in data.items() if k in FIELD_NAMES}


def saved_run_info(checkpoint_path: Optional[str]) -> Tuple[Optional[dict], dict]:
    """(saved ModelOptions fields or None, the whole of train.py's model_options.json)."""
    path = find_model_options_file(checkpoint_path)
    if path is None:
        return None, {}
    with open(path) as f:
        data = json.load(f)
    return _model_options_fields(data), data
