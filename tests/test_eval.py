"""evaluate() and eval.py on a tiny model trained a few steps on the synthetic set."""

import json
import math
import os
import shutil
import subprocess
import time

import numpy as np
import pytest
import tensorflow as tf

from deeplab.checkpoints import polling as checkpoint_polling
from deeplab.cli import flags as cli_flags
from deeplab.evaluation import loop as evaluation
from deeplab.evaluation import metrics
from deeplab.evaluation import results as eval_results
from deeplab.modeling import inference
from tests import helpers

# Every test needs the tiny trained DeepLab run; the end-to-end test runs eval.py.
pytestmark = pytest.mark.slow


EVAL_CROP = (97, 97)


def _val_dataset(run, batch_size=2):
    from deeplab.data.config import DataConfig
    from deeplab.data.pipeline import build_dataset

    return build_dataset(
        DataConfig(
            "synthetic",
            run.data_dir,
            "val",
            crop_size=EVAL_CROP,
            batch_size=batch_size,
            is_training=False,
        )
    )


def test_evaluate_counts_every_labelled_pixel_once(run):
    options = inference.inference_options(run.options)
    model, report = inference.build_inference_model(options, run.checkpoint)
    assert report.loaded
    seen = []
    results = evaluation.evaluate(
        model,
        _val_dataset(run),
        options.num_classes,
        255,
        inference.InferenceSettings.for_options(options),
        verbose=0,
        class_names=[f"c{i}" for i in range(7)],
        on_batch=lambda batch, predictions: seen.append(predictions.shape),
    )
    labels = np.concatenate([b["label"].numpy().ravel() for b in _val_dataset(run)])
    cm = results["confusion_matrix"]
    assert cm.shape == (7, 7) and cm.sum() == np.sum(labels != 255)
    np.testing.assert_array_equal(cm.sum(axis=1), np.bincount(labels[labels != 255], minlength=7))
    assert results["num_images"] == 6 and len(seen) == 3
    assert len(results["per_class_iou"]) == 7
    assert results["miou"] == pytest.approx(np.nanmean(results["per_class_iou"]))
    assert results["pixel_accuracy"] == pytest.approx(np.trace(cm) / cm.sum())
    assert 0.0 <= results["miou"] <= 1.0
    # JSON: valid (NaN -> null), per-class IoU as a list in class order, names attached.
    data = eval_results.results_to_json(results)
    json.dumps(data, allow_nan=False)
    assert list(data["per_class_iou_by_name"]) == [f"c{i}" for i in range(7)]


def test_checkpoint_helpers(run, tmp_path):
    assert checkpoint_polling.checkpoint_step(run.checkpoint) == max(helpers.CHECKPOINT_STEPS)
    assert not checkpoint_polling.is_static_checkpoint(run.run_dir)
    assert checkpoint_polling.is_static_checkpoint(run.checkpoint)
    assert list(checkpoint_polling.checkpoints_to_evaluate(run.checkpoint)) == [run.checkpoint]
    assert cli_flags.parse_float_list(["0.5,0.75", "1.0"]) == [0.5, 0.75, 1.0]
    assert eval_results.metric_tag([0.5, 1.0], True) == "miou_0.5_1.0_flipped"
    cm = np.array([[4, 1], [0, 3]])
    eval_results.save_confusion_matrix_csv(cm, str(tmp_path / "cm.csv"), ["a", "b"])
    back, names = helpers.read_confusion_matrix_csv(str(tmp_path / "cm.csv"))
    np.testing.assert_array_equal(back, cm)
    assert names == ["a", "b"]


def _copy_checkpoint(run, target, step):
    for path in tf.io.gfile.glob(os.path.join(run.run_dir, f"ckpt-{step}.*")):
        shutil.copy(path, target)
    tf.compat.v1.train.update_checkpoint_state(
        str(target), os.path.join(str(target), f"ckpt-{step}")
    )


def test_eval_cli_continuous_multiscale_flip_json_csv_png_tensorboard(run, tmp_path):
    """eval.py evaluates each new checkpoint of a training dir as it appears (multi-scale +
    flip) and writes the table, JSON, confusion matrix CSV / PNG and TensorBoard scalars."""
    train_dir = tmp_path / "train"
    train_dir.mkdir()
    shutil.copy(os.path.join(run.run_dir, "model_options.json"), train_dir)
    first, second = helpers.CHECKPOINT_STEPS
    _copy_checkpoint(run, train_dir, first)
    output_json = tmp_path / "out" / "metrics.json"
    process = subprocess.Popen(
        helpers.cli_command("eval.py")
        + [
            f"--checkpoint_dir={train_dir}",
            "--eval_crop_size=97,97",
            "--eval_batch_size=3",
            "--eval_scales=0.75,1.25",
            "--add_flipped_images",
            "--eval_interval_secs=1",
            "--max_number_of_evaluations=2",
            "--eval_timeout_secs=300",
            f"--output_json={output_json}",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=helpers.cli_env(),
        cwd=helpers.REPO,
    )
    history = train_dir / "eval" / "eval_history.jsonl"
    deadline = time.time() + 400
    while not history.exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.5)
    _copy_checkpoint(run, train_dir, second)  # training writes a new checkpoint
    try:
        output, _ = process.communicate(timeout=400)
    finally:
        process.kill()
    assert process.returncode == 0, output[-3000:]

    records = [json.loads(line) for line in history.read_text().splitlines()]
    assert [r["step"] for r in records] == [first, second]
    data = json.loads(output_json.read_text())
    assert data["step"] == second
    assert isinstance(data["miou"], float) and 0.0 <= data["miou"] <= 1.0
    assert isinstance(data["pixel_accuracy"], float)
    assert len(data["per_class_iou"]) == 7
    assert data["metric_tag"] == "miou_0.75_1.25_flipped"
    assert data["eval_scales"] == [0.75, 1.25] and data["add_flipped_images"] is True
    present = [v for v in data["per_class_iou"] if v is not None]
    assert data["miou"] == pytest.approx(np.mean(present))
    assert "eval/miou_0.75_1.25_flipped_overall" in output

    eval_dir = train_dir / "eval"
    cm, names = helpers.read_confusion_matrix_csv(str(eval_dir / "confusion_matrix.csv"))
    assert names[:2] == ["background", "disc"]
    np.testing.assert_array_equal(cm, np.array(data["confusion_matrix"]))
    assert metrics.iou_from_confusion_matrix(cm)["miou"] == pytest.approx(data["miou"])
    assert (eval_dir / "confusion_matrix.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = (eval_dir / "results.txt").read_text()
    assert "striped_bar" in table and "mIoU" in table

    scalars = helpers.read_scalar_summaries(str(eval_dir))
    overall = scalars["eval/miou_0.75_1.25_flipped_overall"]
    assert [step for step, _ in overall] == [first, second]
    assert overall[-1][1] == pytest.approx(data["miou"], abs=1e-6)
    assert "eval/pixel_accuracy" in scalars
    assert any(tag.startswith("eval/miou_0.75_1.25_flipped_class_") for tag in scalars)
    assert not math.isnan(overall[0][1])


def test_eval_cli_rejects_bad_flags(run):
    result = helpers.run_cli_in_process(
        "eval.py",
        f"--checkpoint_dir={run.run_dir}",
        "--output_stride=7",
        "--max_number_of_evaluations=1",
    )
    assert result.returncode == 2
    assert "--output_stride=7" in result.stderr
    result = helpers.run_cli_in_process(
        "eval.py", f"--checkpoint_dir={run.run_dir}", "--eval_batch_size=0"
    )
    assert result.returncode == 2
    assert "FATAL Flags parsing error: --eval_batch_size: 0 must be >= 1" in result.stderr
