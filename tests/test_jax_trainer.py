"""train.py on the JAX backend: TensorFlow-only features stop with one line (the training
step itself is compared with the TensorFlow trainer's in test_backends.py)."""

import os
import subprocess
import sys

import pytest

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
