"""Evaluation loop, result files (table, JSON, confusion-matrix CSV / PNG), TensorBoard
summaries and continuous evaluation of new checkpoints.

`evaluate` runs a model over an eval dataset (dicts with 'image' float32 [B, H, W, 3] and
'label' int [B, H, W, 1], as `deeplab.data.pipeline.build_dataset(is_training=False)` yields)
and accumulates a confusion matrix; metrics follow `deeplab.metrics` (the official
`tf.metrics.mean_iou` with the ignore label weighted out).
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import sys
import time
from typing import Callable, Dict, Iterator, List, Optional, Sequence

import numpy as np
import tensorflow as tf
from absl import logging

from deeplab import inference
from deeplab import metrics as metrics_lib


def parse_float_list(values, flag_name: str = "eval_scales") -> List[float]:
    """Floats from `a,b,c` strings and / or repeated values (both flag forms)."""
    if values is None:
        return []
    if isinstance(values, (str, float, int)):
        values = [values]
    out = []
    for value in values:
        for part in str(value).split(","):
            part = part.strip()
            if part:
                try:
                    out.append(float(part))
                except ValueError:
                    raise ValueError(f"--{flag_name}: {part!r} is not a number") from None
    return out


def metric_tag(eval_scales: Sequence[float], add_flipped_images: bool) -> str:
    """The official summary tag, e.g. `miou_1.0` or `miou_0.5_1.0_1.5_flipped`."""
    tag = "miou" + "".join(f"_{float(s)}" for s in eval_scales)
    return tag + ("_flipped" if add_flipped_images else "")


def make_eval_step(
    model,
    num_classes: int,
    ignore_label: int,
    eval_scales: Sequence[float] = (1.0,),
    add_flipped_images: bool = False,
    logits_output_stride: Optional[int] = None,
    prediction_with_upsampled_logits: bool = True,
) -> Callable:
    """A compiled function (images, labels) -> (predictions int32 [B, H, W], confusion int64)."""
    scales = tuple(float(s) for s in eval_scales) or (1.0,)

    @tf.function(
        input_signature=[
            tf.TensorSpec([None, None, None, 3], tf.float32),
            tf.TensorSpec(None, tf.int32),
        ]
    )
    def step(images, labels):
        predictions = inference.predict_labels(
            model,
            images,
            scales,
            add_flipped_images,
            logits_output_stride,
            prediction_with_upsampled_logits,
        )
        labels = tf.reshape(labels, tf.shape(predictions))
        cm = metrics_lib.batch_confusion_matrix(labels, predictions, num_classes, ignore_label)
        return predictions, cm

    return step


def evaluate(
    model,
    dataset,
    num_classes: int,
    ignore_label: int,
    eval_scales: Sequence[float] = (1.0,),
    add_flipped_images: bool = False,
    *,
    logits_output_stride: Optional[int] = None,
    class_names: Optional[Sequence[str]] = None,
    max_batches: Optional[int] = None,
    verbose: int = 1,
    step_fn: Optional[Callable] = None,
    on_batch: Optional[Callable] = None,
    num_batches: Optional[int] = None,
) -> Dict[str, object]:
    """Evaluates `model` on `dataset` (each element seen once).

    Returns a dict: `miou`, `pixel_accuracy`, `per_class_iou` (list in class order, NaN for
    classes absent from labels and predictions), `per_class_accuracy`, `mean_class_accuracy`,
    `confusion_matrix` (numpy int64 [C, C], rows = ground truth), `num_images`, `num_pixels`,
    `class_names`, `eval_scales`, `add_flipped_images`, `seconds`.

    `step_fn` reuses a function from `make_eval_step` (so continuous evaluation compiles once);
    `on_batch(batch, predictions)` is called with every batch and its numpy predictions (e.g. to
    save visualisations). `num_batches` (e.g. from the split size) sets the progress bar's length
    when the dataset's cardinality is unknown.
    """
    scales = tuple(float(s) for s in eval_scales) or (1.0,)
    if step_fn is None:
        step_fn = make_eval_step(
            model, num_classes, ignore_label, scales, add_flipped_images, logits_output_stride
        )
    total = np.zeros((num_classes, num_classes), np.int64)
    num_images = 0
    target = None
    try:
        cardinality = int(dataset.cardinality())
        if cardinality > 0:
            target = cardinality if max_batches is None else min(cardinality, max_batches)
    except (TypeError, ValueError, AttributeError):
        pass
    if target is None and num_batches:
        target = num_batches if max_batches is None else min(num_batches, max_batches)
    progress = None
    if verbose:
        import keras

        # On a terminal a live bar; in a log (not a tty) Keras's verbose=2 writes one line at
        # the end instead of an ever-growing line of bar updates.
        progress = keras.utils.Progbar(
            target, unit_name="batch", verbose=1 if sys.stdout.isatty() else 2
        )
    start = time.time()
    seen = 0
    for index, batch in enumerate(dataset):
        if max_batches is not None and index >= max_batches:
            break
        images = tf.cast(batch["image"], tf.float32)
        labels = tf.cast(batch["label"], tf.int32)
        predictions, cm = step_fn(images, labels)
        total += cm.numpy()
        num_images += int(images.shape[0])
        seen = index + 1
        if on_batch is not None:
            on_batch(batch, predictions.numpy())
        if progress is not None:
            running = metrics_lib.iou_from_confusion_matrix(total)
            progress.update(index + 1, values=[("miou", running["miou"])], finalize=False)
    if progress is not None:
        progress.update(seen, finalize=True)
    results = metrics_lib.iou_from_confusion_matrix(total)
    results.update(
        confusion_matrix=total,
        num_images=num_images,
        class_names=list(class_names)
        if class_names
        else [f"class_{i}" for i in range(num_classes)],
        eval_scales=list(scales),
        add_flipped_images=bool(add_flipped_images),
        seconds=time.time() - start,
    )
    return results


# ----------------------------------------------------------------------------------------------
# Result files.


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


def read_confusion_matrix_csv(path: str):
    """(matrix int64, class names) from `save_confusion_matrix_csv`'s file."""
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    names = rows[0][1:]
    return np.array([[int(v) for v in row[1:]] for row in rows[1:]], np.int64), names


def plot_confusion_matrix(
    confusion_matrix,
    path: str,
    class_names: Optional[Sequence[str]] = None,
    title: str = "Confusion matrix (rows normalised)",
) -> None:
    """PNG of the row-normalised confusion matrix (matplotlib, no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = np.asarray(confusion_matrix, np.float64)
    n = cm.shape[0]
    names = list(class_names) if class_names else [str(i) for i in range(n)]
    rows = cm.sum(axis=1, keepdims=True)
    normalised = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
    size = min(4 + 0.35 * n, 40)
    fig, ax = plt.subplots(figsize=(size + 1.5, size))
    image = ax.imshow(normalised, cmap="Blues", vmin=0.0, vmax=1.0, interpolation="nearest")
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
                        f"{normalised[i, j]:.2f}",
                        ha="center",
                        va="center",
                        fontsize=6,
                        color="white" if normalised[i, j] > 0.5 else "black",
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

    Returns {kind: path}. `output_json` overrides the JSON path (default
    `<output_dir>/<prefix>results.json`).
    """
    os.makedirs(output_dir, exist_ok=True)
    names = results.get("class_names")
    paths = {
        "table": os.path.join(output_dir, prefix + "results.txt"),
        "json": output_json or os.path.join(output_dir, prefix + "results.json"),
        "confusion_csv": os.path.join(output_dir, prefix + "confusion_matrix.csv"),
        "confusion_png": os.path.join(output_dir, prefix + "confusion_matrix.png"),
    }
    with open(paths["table"], "w") as f:
        f.write(metrics_lib.format_iou_table(results, names) + "\n")
    write_json(results, paths["json"], **extra)
    save_confusion_matrix_csv(results["confusion_matrix"], paths["confusion_csv"], names)
    plot_confusion_matrix(results["confusion_matrix"], paths["confusion_png"], names)
    return paths


def _summary_metadata(plugin: str):
    from tensorflow.core.framework import summary_pb2

    metadata = summary_pb2.SummaryMetadata()
    metadata.plugin_data.plugin_name = plugin
    return metadata


def _write_scalar(name: str, value: float, step: int) -> None:
    # tf.summary.scalar needs the `tensorboard` package, which TF 2.21 no longer installs;
    # tf.summary.write with the scalars plugin's metadata writes the same record.
    tf.summary.write(
        name,
        tf.constant(float(value), tf.float32),
        step=step,
        metadata=_summary_metadata("scalars"),
    )


def write_summaries(writer, results: Dict[str, object], step: int) -> None:
    """TensorBoard scalars under the official tags: `eval/<tag>_overall` (mIoU),
    `eval/<tag>_class_<i>` (IoU of class i; absent classes are not written), plus
    `eval/pixel_accuracy`, `eval/mean_class_accuracy`, and a text table of per-class IoU."""
    tag = metric_tag(results.get("eval_scales", (1.0,)), results.get("add_flipped_images", False))
    step = int(step)
    with writer.as_default():
        if not math.isnan(results["miou"]):
            _write_scalar(f"eval/{tag}_overall", results["miou"], step)
        for i, value in enumerate(results["per_class_iou"]):
            if not math.isnan(value):
                _write_scalar(f"eval/{tag}_class_{i}", value, step)
        for key in ("pixel_accuracy", "mean_class_accuracy"):
            if not math.isnan(results[key]):
                _write_scalar(f"eval/{key}", results[key], step)
        names = results.get("class_names") or []
        table = [["class", "IoU %"]] + [
            [str(n), "n/a" if math.isnan(v) else f"{100 * v:.2f}"]
            for n, v in zip(names, results["per_class_iou"])
        ]
        tf.summary.write(
            "eval/per_class_iou", tf.constant(table), step=step, metadata=_summary_metadata("text")
        )
    writer.flush()


def read_scalar_summaries(logdir: str) -> Dict[str, List[tuple]]:
    """{tag: [(step, value), ...]} of the scalar summaries in a log dir's event files (tests,
    scripts; TensorFlow only)."""
    out: Dict[str, List[tuple]] = {}
    for path in sorted(tf.io.gfile.glob(os.path.join(logdir, "events.out.tfevents.*"))):
        for record in tf.data.TFRecordDataset(path):
            event = tf.compat.v1.Event.FromString(record.numpy())
            for value in event.summary.value:
                if value.metadata.plugin_data.plugin_name != "scalars":
                    continue
                number = float(tf.make_ndarray(value.tensor))
                out.setdefault(value.tag, []).append((int(event.step), number))
    return out


# ----------------------------------------------------------------------------------------------
# Checkpoints.


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
    `checkpoint_dir` as training writes it (at most one per `eval_interval_secs`, as
    `tf.train.checkpoints_iterator`), until `max_number_of_evaluations` (0: no limit) or
    `timeout_secs` without a new one. "Waiting" is logged only when there is no new one."""
    if is_static_checkpoint(checkpoint_dir):
        yield checkpoint_dir
        return
    count, last, waiting = 0, None, False
    wait_start = next_poll = time.monotonic()
    while True:
        path = tf.train.latest_checkpoint(checkpoint_dir)
        if path is not None and path != last:
            started, last, waiting = time.monotonic(), path, False
            yield path
            count += 1
            if max_number_of_evaluations and count >= max_number_of_evaluations:
                return
            wait_start = time.monotonic()
            next_poll = started + eval_interval_secs
            time.sleep(max(0.0, next_poll - time.monotonic()))
            continue
        if timeout_secs is not None and time.monotonic() - wait_start >= timeout_secs:
            logging.info(
                "No new checkpoint in %s for %.0f s; stopping", checkpoint_dir, timeout_secs
            )
            return
        if not waiting:
            logging.info("Waiting for a new checkpoint in %s", checkpoint_dir)
            waiting = True
        time.sleep(1.0)


# ----------------------------------------------------------------------------------------------
# Visualisation (vis.py).

# Cityscapes: train ids 0..18 -> the official label ids (the evaluation server's format).
CITYSCAPES_TRAIN_ID_TO_LABEL_ID = (
    7,
    8,
    11,
    12,
    13,
    17,
    19,
    20,
    21,
    22,
    23,
    24,
    25,
    26,
    27,
    28,
    31,
    32,
    33,
)


def train_id_to_label_id(prediction, table: Sequence[int] = CITYSCAPES_TRAIN_ID_TO_LABEL_ID):
    """Maps train ids to label ids (Cityscapes by default); uint8 array of the same shape."""
    prediction = np.asarray(prediction)
    lookup = np.asarray(table, np.int64)
    if prediction.size and (prediction.min() < 0 or prediction.max() >= len(lookup)):
        raise ValueError(
            f"train ids must lie in [0, {len(lookup)}), got "
            f"[{prediction.min()}, {prediction.max()}]"
        )
    return lookup[prediction.astype(np.int64)].astype(np.uint8)


def save_png(array, path: str) -> None:
    """Saves a uint8 [H, W] (single channel) or [H, W, 3] array as PNG."""
    from PIL import Image

    array = np.asarray(array)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    Image.fromarray(array.astype(np.uint8)).save(path, format="PNG")


def colorize_label(
    label,
    colormap,
    ignore_label: Optional[int] = None,
    num_classes: Optional[int] = None,
    ignore_color=(255, 255, 255),
):
    """RGB uint8 [H, W, 3] of a label map; pixels of the ignore label (when it is not a class,
    as 255 in PASCAL / Cityscapes) are drawn in `ignore_color`."""
    from deeplab import colormaps

    label = np.asarray(label)
    if label.ndim == 3:
        label = label[..., 0]
    label = label.astype(np.int64)
    ignore = None
    if ignore_label is not None and (num_classes is None or ignore_label >= num_classes):
        ignore = label == ignore_label
        label = np.where(ignore, 0, label)
    color = colormaps.label_to_color_image(label, colormap)
    if ignore is not None:
        color = np.where(ignore[..., None], np.asarray(ignore_color, np.uint8), color)
    return color


def save_side_by_side(
    path: str,
    image,
    prediction_color,
    label_color=None,
    overlay=None,
    *,
    prediction=None,
    label=None,
    colormap=None,
    class_names=None,
    title: Optional[str] = None,
) -> None:
    """A matplotlib figure: image | ground truth (if any) | prediction | overlay, with a legend
    of the classes that occur in the prediction or the ground truth."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    panels = [("image", image)]
    if label_color is not None:
        panels.append(("ground truth", label_color))
    panels.append(("prediction", prediction_color))
    if overlay is not None:
        panels.append(("overlay", overlay))
    height, width = np.asarray(image).shape[:2]
    panel_w = 3.2
    panel_h = max(1.5, panel_w * height / max(width, 1))
    fig, axes = plt.subplots(1, len(panels), figsize=(panel_w * len(panels), panel_h + 0.9))
    for ax, (name, array) in zip(np.atleast_1d(axes), panels):
        ax.imshow(np.asarray(array, np.uint8))
        ax.set_title(name, fontsize=9)
        ax.axis("off")
    if colormap is not None and prediction is not None:
        present = set(np.unique(np.asarray(prediction)).tolist())
        if label is not None:
            lab = np.asarray(label)
            limit = len(class_names) if class_names else len(colormap)
            present |= set(np.unique(lab[(lab >= 0) & (lab < limit)]).tolist())
        handles = []
        for c in sorted(present):
            if 0 <= c < len(colormap):
                name = class_names[c] if class_names and c < len(class_names) else str(c)
                handles.append(Patch(color=np.asarray(colormap[c]) / 255.0, label=name))
        if handles:
            fig.legend(
                handles=handles,
                loc="lower center",
                ncol=min(len(handles), 6),
                fontsize=7,
                frameon=False,
            )
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def save_visualisation(
    output_dir: str,
    index: int,
    image,
    prediction,
    label=None,
    *,
    colormap,
    class_names=None,
    ignore_label: Optional[int] = None,
    num_classes: Optional[int] = None,
    alpha: float = 0.5,
    save_figure: bool = True,
    image_name: Optional[str] = None,
) -> Dict[str, str]:
    """Writes `%06d_image.png`, `%06d_prediction.png` (colour), `%06d_overlay.png` and, with
    `save_figure`, `%06d_figure.png` (side by side with the ground truth) into `output_dir`.
    Returns {kind: path}."""
    from deeplab import colormaps

    image = np.clip(np.round(np.asarray(image, np.float32)), 0, 255).astype(np.uint8)
    prediction_color = colorize_label(prediction, colormap)
    overlay = colormaps.overlay(image, prediction_color, alpha)
    paths = {
        "image": os.path.join(output_dir, f"{index:06d}_image.png"),
        "prediction": os.path.join(output_dir, f"{index:06d}_prediction.png"),
        "overlay": os.path.join(output_dir, f"{index:06d}_overlay.png"),
    }
    save_png(image, paths["image"])
    save_png(prediction_color, paths["prediction"])
    save_png(overlay, paths["overlay"])
    if save_figure:
        label_color = None
        if label is not None:
            label_color = colorize_label(label, colormap, ignore_label, num_classes)
        paths["figure"] = os.path.join(output_dir, f"{index:06d}_figure.png")
        save_side_by_side(
            paths["figure"],
            image,
            prediction_color,
            label_color,
            overlay,
            prediction=prediction,
            label=None if label is None else np.asarray(label).squeeze(),
            colormap=colormap,
            class_names=class_names,
            title=image_name,
        )
    return paths
