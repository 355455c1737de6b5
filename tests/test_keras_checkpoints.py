"""The JAX trainer's Keras checkpoints (`ckpt-N.weights.h5` + `checkpoint.json`) as eval.py,
vis.py and export.py find and load them: the latest complete one of a training dir (a partial
temp file ignored), each new one while polling, a damaged one falling back to the one before,
and another architecture refused. The dir is written here as the JAX trainer writes it
(`model.save_weights` + `checkpoint.json`); test_jax_trainer.py runs the real thing."""

import json
import os

import numpy as np
import pytest

from deeplab.checkpoints import polling
from deeplab.checkpoints.official import (
    CheckpointError,
    load_checkpoint,
    resolve_checkpoint_prefix,
)
from tests import helpers

# Tiny models built, saved and loaded: a few seconds each.
pytestmark = pytest.mark.slow


def _jax_run(folder, steps=(2, 4)):
    """A JAX trainer's dir: one checkpoint per step (each with other weights), checkpoint.json
    and a temp file that a killed save left behind. Returns {step: the model's weights}."""
    model = helpers.tiny_model()
    weights, entries = {}, []
    for step in steps:
        kernel = model.trainable_variables[0]
        kernel.assign(kernel.numpy() + 1.0)
        name = f"ckpt-{step}"
        model.save_weights(os.path.join(folder, name + ".weights.h5"))
        entries.append(
            {"step": step, "weights": name + ".weights.h5", "state": name + ".state.npz"}
        )
        weights[step] = [v.numpy() for v in model.weights]
    with open(os.path.join(folder, f".tmp-1-ckpt-{steps[-1] + 1}.weights.h5"), "wb") as f:
        f.write(b"partial")
    with open(os.path.join(folder, "checkpoint.json"), "w") as f:
        json.dump(dict(entries[-1], all=entries), f)
    return weights


def _assert_loaded(model, expected):
    for variable, value in zip(model.weights, expected):
        np.testing.assert_array_equal(variable.numpy(), value)


def test_the_latest_complete_keras_checkpoint_is_found_polled_and_loaded(tmp_path):
    weights = _jax_run(str(tmp_path))
    logdir, latest = str(tmp_path), str(tmp_path / "ckpt-4.weights.h5")
    assert polling.latest_checkpoint(logdir) == latest
    assert polling.all_checkpoints(logdir) == [str(tmp_path / "ckpt-2.weights.h5"), latest]
    assert polling.checkpoint_step(latest) == 4
    assert not polling.is_static_checkpoint(logdir) and polling.is_static_checkpoint(latest)
    polled = polling.checkpoints_to_evaluate(
        logdir, eval_interval_secs=0, max_number_of_evaluations=1
    )
    assert list(polled) == [latest]
    # A non-positive count polls on for each new checkpoint (the official endless loop).
    with open(os.path.join(logdir, "checkpoint.json")) as f:
        listing = json.load(f)
    for count in (0, -1):
        polled = polling.checkpoints_to_evaluate(
            logdir, eval_interval_secs=0, max_number_of_evaluations=count, timeout_secs=0.05
        )
        assert next(polled) == latest
        with open(os.path.join(logdir, "checkpoint.json"), "w") as f:  # training wrote another
            json.dump(dict(listing, **listing["all"][0]), f)
        assert list(polled) == [str(tmp_path / "ckpt-2.weights.h5")]
        with open(os.path.join(logdir, "checkpoint.json"), "w") as f:
            json.dump(listing, f)
    assert resolve_checkpoint_prefix(logdir) == latest
    model = helpers.tiny_model()
    load_checkpoint(model, logdir)
    _assert_loaded(model, weights[4])


def test_a_damaged_keras_checkpoint_falls_back_to_the_one_before(tmp_path, capfd):
    weights = _jax_run(str(tmp_path))
    latest = str(tmp_path / "ckpt-4.weights.h5")
    with open(latest, "r+b") as f:
        f.truncate(os.path.getsize(latest) // 2)
    model = helpers.tiny_model()
    path, _ = polling.load_readable(lambda p: load_checkpoint(model, p), latest, str(tmp_path))
    assert path == str(tmp_path / "ckpt-2.weights.h5")
    assert "ckpt-4.weights.h5" in capfd.readouterr().err
    _assert_loaded(model, weights[2])


def test_a_keras_checkpoint_of_another_architecture_is_refused(tmp_path):
    _jax_run(str(tmp_path), steps=(1,))
    other = helpers.tiny_model(num_classes=3)
    with pytest.raises(CheckpointError, match="ckpt-1.weights.h5"):
        load_checkpoint(other, str(tmp_path))
