"""benchmarks.gpu_training runs its cases end to end (here on CPU with --smoke): our train step in
float32, mixed_float16 (float32 logits, dynamic loss scaling) and mixed_float16 + XLA; and
benchmarks.jax_training, the same figures on the JAX backend without TensorFlow."""

import json
import os
import subprocess
import sys

import pytest

from benchmarks import gpu_training


@pytest.mark.slow
def test_smoke_run_times_every_case_and_writes_the_json(tmp_path, monkeypatch):
    monkeypatch.setenv("OUT", str(tmp_path))
    results = gpu_training.main(["--smoke", "--variant=mobilenet_v2", "--budget_s=100000"])
    with open(tmp_path / "gpu_training.json") as f:
        assert json.load(f)["training"].keys() == results["training"].keys()
    assert set(results["training"]) == {"float32", "mixed_float16", "mixed_float16_xla"}
    for name, case in results["training"].items():
        assert case["finite"], name
        assert case["images_per_s"] > 0
        assert case["logits_dtype"] == "float32"
        assert case["loss_scaled"] == (name != "float32")
        assert case["loss_last"] != case["loss_first"]  # the step updates the weights
    assert set(results["inference"]) == {"float32", "mixed_float16"}
    assert all(case["images_per_s"] > 0 for case in results["inference"].values())


@pytest.mark.slow
def test_jax_smoke_run_trains_and_infers_without_tensorflow(tmp_path):
    """benchmarks.jax_training --smoke on the JAX backend: both precisions train (finite loss,
    weights updated) and infer, and TensorFlow is never imported."""
    pytest.importorskip("jax")
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    code = (
        "import sys; from benchmarks import jax_training; "
        "jax_training.main(['--smoke', '--variant=mobilenet_v2']); "
        "assert 'tensorflow' not in sys.modules"
    )
    run = subprocess.run(
        [sys.executable, "-c", code],
        # XLA's backend optimisation off: four programs compile (about 40% less CPU).
        env=dict(
            os.environ,
            KERAS_BACKEND="jax",
            OUT=str(tmp_path),
            PYTHONPATH=repo,
            XLA_FLAGS="--xla_backend_optimization_level=0",
        ),
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    with open(tmp_path / "jax_training.json") as f:
        results = json.load(f)
    assert set(results["training"]) == set(results["inference"]) == {"float32", "mixed_bfloat16"}
    for name, case in results["training"].items():
        assert case["finite"] and case["images_per_s"] > 0, name
        assert case["loss_last"] != case["loss_first"], name
    assert all(case["images_per_s"] > 0 for case in results["inference"].values())
