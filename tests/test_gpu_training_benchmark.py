"""benchmarks.gpu_training runs its cases end to end (here on CPU with --smoke): our train step in
float32, mixed_float16 (float32 logits, dynamic loss scaling) and mixed_float16 + XLA."""

import json

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
