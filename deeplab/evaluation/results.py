"""Evaluation results: the table, JSON, confusion-matrix CSV / PNG and TensorBoard summaries."""

from __future__ import annotations

import csv
import json
import math
import os
from typing import Dict, Optional, Sequence

import numpy as np

from deeplab.evaluation import metrics as metrics_lib
from deeplab.evaluation import tensorboard


def metric_tag(eval_scales: Sequence[float], add_flipped_images: bool) -> str:
    """The official summary tag, e.g. `miou_1.0` or `miou_0.5_1.0_1.5_flipped`."""
    tag = "miou" + "".join(f"_{float(s)}" for s in eval_scales)
    return tag + ("_flipped" if add_flipped_images else "")


def _json_value(value):
    if isinstance(value, np.ndarray):
        return _json_value(value.tolist())
    if isinstance(value, (list, tuple)):
        return [_json_value(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _json_value(v) for k, v in value.items()}
    if isinstance(value, (np.floating, float)):
        value = float(value)
        return None if math.isnan(value) or math.isinf(value) else value
    if isinstance(value, np.integer):
        return int(value)
    return value


def results_to_json(results: Dict[str, object], **extra) -> Dict[str, object]:
    """JSON-ready results: NaN -> null, numpy -> lists; adds `per_class_iou_by_name`."""
    out = _json_value({k: v for k, v in results.items()})
    names = results.get("class_names") or []
    if names and len(names) == len(results["per_class_iou"]):
        out["per_class_iou_by_name"] = {
            n: _json_value(v) for n, v in zip(names, results["per_class_iou"])
        }
    out.update(_json_value(extra))
    return out


def write_json(results: Dict[str, object], path: str, **extra) -> None:
    """Writes `results_to_json(results, **extra)` to `path` (valid JSON, NaN as null)."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    with open(path, "w") as f:
        json.dump(results_to_json(results, **extra), f, indent=1, allow_nan=False)
        f.write("\n")


def save_confusion_matrix_csv(
    confusion_matrix, path: str, class_names: Optional[Sequence[str]] = None
) -> None:
    """CSV with a header row of predicted class names and one row per ground-truth class."""
    cm = np.asarray(confusion_matrix)
    names = list(class_names) if class_names else [str(i) for i in range(cm.shape[0])]
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["ground_truth \\ prediction"] + names)
        for name, row in zip(names, cm):
            writer.writerow([name] + [int(v) for v in row])


def plot_confusion_matrix(
    confusion_matrix,
    path: str,
    class_names: Optional[Sequence[str]] = None,
    title: str = "Confusion matrix (rows normalized)",
) -> None:
    """PNG of the row-normalized confusion matrix (matplotlib, no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = np.asarray(confusion_matrix, np.float64)
    n = cm.shape[0]
    names = list(class_names) if class_names else [str(i) for i in range(n)]
    rows = cm.sum(axis=1, keepdims=True)
    normalized = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
    size = min(4 + 0.35 * n, 40)
    fig, ax = plt.subplots(figsize=(size + 1.5, size))
    image = ax.imshow(normalized, cmap="Blues", vmin=0.0, vmax=1.0, interpolation="nearest")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    ticks = np.arange(n)
    ax.set_xticks(ticks)
    ax.set_yticks(ticks)
    fontsize = 8 if n <= 40 else 5
    ax.set_xticklabels(names, rotation=90, fontsize=fontsize)
    ax.set_yticklabels(names, fontsize=fontsize)
    ax.set_xlabel("prediction")
    ax.set_ylabel("ground truth")
    ax.set_title(title)
    if n <= 25:
        for i in range(n):
            for j in range(n):
                if cm[i, j] > 0:
                    ax.text(
                        j,
                        i,
                        f"{normalized[i, j]:.2f}",
                        ha="center",
                        va="center",
                        fontsize=6,
                        color="white" if normalized[i, j] > 0.5 else "black",
                    )
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_result_files(
    results: Dict[str, object],
    output_dir: str,
    *,
    output_json: Optional[str] = None,
    prefix: str = "",
    **extra,
) -> Dict[str, str]:
    """Writes the table (`<prefix>results.txt`), JSON, confusion-matrix CSV and PNG.

    Returns {kind: path}. `output_json` is a second copy of the JSON
    (`<output_dir>/<prefix>results.json` is always written, so no older one stays beside the
    new files).
    """
    os.makedirs(output_dir, exist_ok=True)
    names = results.get("class_names")
    paths = {
        "table": os.path.join(output_dir, prefix + "results.txt"),
        "json": os.path.join(output_dir, prefix + "results.json"),
        "confusion_csv": os.path.join(output_dir, prefix + "confusion_matrix.csv"),
        "confusion_png": os.path.join(output_dir, prefix + "confusion_matrix.png"),
    }
    with open(paths["table"], "w") as f:
        f.write(metrics_lib.format_iou_table(results, names) + "\n")
    write_json(results, paths["json"], **extra)
    if output_json and os.path.abspath(output_json) != os.path.abspath(paths["json"]):
        paths["output_json"] = output_json
        write_json(results, output_json, **extra)
    save_confusion_matrix_csv(results["confusion_matrix"], paths["confusion_csv"], names)
    plot_confusion_matrix(results["confusion_matrix"], paths["confusion_png"], names)
    return paths


def write_summaries(writer, results: Dict[str, object], step: int) -> None:
    """TensorBoard scalars under the official tags: `eval/<tag>_overall` (mIoU),
    `eval/<tag>_class_<i>` (IoU of class i; absent classes are not written), plus
    `eval/pixel_accuracy`, `eval/mean_class_accuracy`, and a text table of per-class IoU."""
    tag = metric_tag(results.get("eval_scales", (1.0,)), results.get("add_flipped_images", False))
    step = int(step)
    with writer.as_default():
        if not math.isnan(results["miou"]):
            tensorboard.write_scalar(f"eval/{tag}_overall", results["miou"], step)
        for i, value in enumerate(results["per_class_iou"]):
            if not math.isnan(value):
                tensorboard.write_scalar(f"eval/{tag}_class_{i}", value, step)
        for key in ("pixel_accuracy", "mean_class_accuracy"):
            if not math.isnan(results[key]):
                tensorboard.write_scalar(f"eval/{key}", results[key], step)
        names = results.get("class_names") or []
        table = [["class", "IoU %"]] + [
            [str(n), "n/a" if math.isnan(v) else f"{100 * v:.2f}"]
            for n, v in zip(names, results["per_class_iou"])
        ]
        tensorboard.write_text("eval/per_class_iou", table, step)
    writer.flush()
