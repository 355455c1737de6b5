"""train.py on the JAX backend: TensorFlow-only features stop with one line; a run resumes after
SIGKILL and eval.py evaluates its Keras checkpoints (the training step itself is compared with
the TensorFlow trainer's in test_backends.py)."""

import json
import os
import re
import subprocess
import sys

import pytest

from deeplab.checkpoints import keras_checkpoints
from deeplab.data import synthetic
from deeplab.training.jax_trainer import unsupported_feature
from tests import helpers

HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.mark.parametrize(
    "overrides, flag",
    [
        (dict(quantize_delay_step=0), "--quantize_delay_step"),
        (dict(mixed_precision="float16"), "--mixed_precision=float16"),
        (dict(optimizer="adam"), "--optimizer=adam"),
        (dict(strategy="mirrored"), "--strategy=mirrored"),
    ],
)
def test_tensorflow_only_features_are_named(tmp_path, overrides, flag):
    assert flag in unsupported_feature(helpers.make_config(tmp_path, **overrides))


def test_default_training_runs_on_jax(tmp_path):
    assert unsupported_feature(helpers.make_config(tmp_path, mixed_precision="bfloat16")) is None


@pytest.mark.slow
def test_train_py_stops_on_a_tensorflow_only_flag_under_jax(tmp_path):
    pytest.importorskip("jax")
    (tmp_path / "data").mkdir()
    run = subprocess.run(
        [sys.executable, "train.py", f"--train_logdir={tmp_path / 'run'}"]
        + [f"--dataset_dir={tmp_path / 'data'}", "--quantize_delay_step=0"],
        cwd=os.path.dirname(HERE),
        env=dict(os.environ, KERAS_BACKEND="jax", PYTHONPATH=os.path.dirname(HERE)),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 2, run.stderr[-2000:]
    assert "--quantize_delay_step" in run.stderr and "KERAS_BACKEND=jax" in run.stderr
    assert "Traceback" not in run.stderr
    assert not (tmp_path / "run").exists()


def _jax_checkpoint_step(logdir):
    latest = keras_checkpoints.latest_checkpoint(logdir)
    return None if latest is None else keras_checkpoints.checkpoint_step(latest)


@pytest.mark.slow
def test_train_py_on_jax_resumes_after_sigkill_and_eval_py_evaluates_its_checkpoint(tmp_path):
    """KERAS_BACKEND=jax train.py, killed (SIGKILL) after its first Keras checkpoint, resumes
    from it to the last step; eval.py (TensorFlow) finds the run's latest `.weights.h5` in the
    training dir and gives an mIoU."""
    pytest.importorskip("jax")
    data_dir, logdir = str(tmp_path / "data"), str(tmp_path / "run")
    synthetic.build_synthetic_dataset(
        data_dir, seed=0, num_train=4, num_val=2, num_shards=1, min_size=40, max_size=64
    )
    # Killed at its first checkpoint (steps 1-2): the resumed run has the steps after it.
    steps = 12
    args = [f"--train_logdir={logdir}", f"--dataset_dir={data_dir}"] + helpers.TINY_FLAGS
    args += [f"--training_number_of_steps={steps}", "--save_interval_steps=1", "--log_steps=10"]
    # XLA's backend optimisation off (~40% less CPU for the step's compilation), and JAX's
    # persistent compilation cache: the resumed run loads the killed run's programs (its
    # training step: half a minute of CPU) instead of compiling them again.
    env = dict(
        helpers.cli_env(),
        KERAS_BACKEND="jax",
        XLA_FLAGS="--xla_backend_optimization_level=0",
        JAX_COMPILATION_CACHE_DIR=str(tmp_path / "jax_cache"),
        JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
        JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0",
    )
    helpers.train_then_sigkill(args, lambda: _jax_checkpoint_step(logdir), env=env)
    killed_at = _jax_checkpoint_step(logdir)
    assert killed_at is not None and 1 <= killed_at < steps
    resumed = helpers.run_cli("train.py", *args, env=env)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    restored = re.search(r"Restored ckpt-(\d+)\.weights\.h5 at step (\d+)", resumed.stderr)
    assert restored and int(restored.group(2)) >= killed_at, resumed.stderr[-3000:]
    assert _jax_checkpoint_step(logdir) == steps
    evaluated = helpers.run_cli_in_process(
        "eval.py",
        f"--checkpoint_dir={logdir}",
        f"--dataset_dir={data_dir}",
        "--eval_crop_size=65,65",
        "--max_number_of_evaluations=1",
    )
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    with open(os.path.join(logdir, "eval", "results.json")) as f:
        results = json.load(f)
    assert results["step"] == steps and results["checkpoint"].endswith(f"ckpt-{steps}.weights.h5")
    assert 0.0 <= results["miou"] <= 1.0
