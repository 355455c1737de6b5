"""Segmentation metrics from a streaming confusion matrix: mIoU, per-class IoU, pixel accuracy.

Semantics follow the official evaluation (`tf.metrics.mean_iou` with weights):
- pixels whose label is the ignore label are not counted, and neither are labels outside
  `[0, num_classes)` (the official eval gives them weight 0 or, for labels other than the ignore
  label, would fail; we drop them);
- the confusion matrix has ground truth on rows and predictions on columns;
- IoU_c = TP_c / (TP_c + FP_c + FN_c); a class that occurs neither in the labels nor in the
  predictions (empty union) has IoU NaN and is left out of the mean, exactly as the official
  `mean_iou` averages over the classes with a non-empty union.
"""

from __future__ import annotations

from typing import Dict, Optional, Sequence

import keras
import numpy as np
import tensorflow as tf

from deeplab.modeling.layers import resize_bilinear


def batch_confusion_matrix(labels, predictions, num_classes: int, ignore_label: int = 255):
    """Confusion matrix (int64 [C, C], rows = ground truth) of one batch.

    `labels` and `predictions` are integer tensors of the same number of elements (any shape,
    e.g. labels [N, H, W, 1] and predictions [N, H, W]). Pixels labelled `ignore_label` or outside
    `[0, num_classes)` are not counted; predictions outside that range are not counted either.
    """
    labels = tf.reshape(tf.cast(labels, tf.int64), [-1])
    predictions = tf.reshape(tf.cast(predictions, tf.int64), [-1])
    valid = tf.logical_and(labels >= 0, labels < num_classes)
    valid = tf.logical_and(valid, tf.not_equal(labels, ignore_label))
    valid = tf.logical_and(valid, tf.logical_and(predictions >= 0, predictions < num_classes))
    labels = tf.boolean_mask(labels, valid)
    predictions = tf.boolean_mask(predictions, valid)
    # bincount of label * C + prediction is the confusion matrix, and much faster on CPU than
    # tf.math.confusion_matrix's scatter for large images.
    flat = labels * num_classes + predictions
    counts = tf.math.bincount(
        flat,
        minlength=num_classes * num_classes,
        maxlength=num_classes * num_classes,
        dtype=tf.int64,
    )
    return tf.reshape(counts, [num_classes, num_classes])


def iou_from_confusion_matrix(confusion_matrix) -> Dict[str, object]:
    """Metrics of a confusion matrix (rows = ground truth, columns = prediction).

    Returns a dict with
    - `miou`: mean IoU over the classes with a non-empty union (the official definition); NaN
      when no pixel was counted;
    - `per_class_iou`: list of C floats, NaN for a class absent from labels and predictions;
    - `pixel_accuracy`: correctly labelled pixels / counted pixels;
    - `mean_class_accuracy`: mean over classes present in the labels of TP / (TP + FN);
    - `per_class_accuracy`: list of C floats (NaN for classes absent from the labels);
    - `num_pixels`: counted pixels; `num_classes_present`: classes in the union.
    """
    cm = np.asarray(confusion_matrix, dtype=np.float64)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"confusion matrix must be square, got shape {cm.shape}")
    tp = np.diag(cm)
    gt = cm.sum(axis=1)
    pred = cm.sum(axis=0)
    union = gt + pred - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, tp / np.where(union > 0, union, 1), np.nan)
        acc = np.where(gt > 0, tp / np.where(gt > 0, gt, 1), np.nan)
    total = cm.sum()
    present = union > 0
    return {
        "miou": float(np.mean(iou[present])) if present.any() else float("nan"),
        "per_class_iou": [float(v) for v in iou],
        "pixel_accuracy": float(tp.sum() / total) if total > 0 else float("nan"),
        "mean_class_accuracy": float(np.nanmean(acc)) if (gt > 0).any() else float("nan"),
        "per_class_accuracy": [float(v) for v in acc],
        "num_pixels": int(total),
        "num_classes_present": int(present.sum()),
    }


def _labels_from_predictions(y_pred, label_shape):
    """argmax of logits [N, h, w, C] (resized to the label size when smaller) or int labels."""
    if y_pred.dtype.is_floating:
        y_pred = tf.convert_to_tensor(y_pred)
        size = label_shape[1:3]
        y_pred = tf.cond(
            tf.reduce_all(tf.equal(tf.shape(y_pred)[1:3], size)),
            lambda: y_pred,
            lambda: resize_bilinear(y_pred, size),
        )
        return tf.argmax(y_pred, axis=-1, output_type=tf.int32)
    return tf.cast(y_pred, tf.int32)


@keras.saving.register_keras_serializable(package="deeplab")
class MeanIoUWithIgnore(keras.metrics.Metric):
    """Streaming mIoU that ignores `ignore_label` (and labels outside the class range).

    `update_state(y_true, y_pred)`: `y_true` int labels [N, H, W] or [N, H, W, 1]; `y_pred`
    either logits / probabilities [N, h, w, C] (argmax is taken; logits at a lower resolution
    are first resized bilinearly with align_corners=True to the label size) or int labels
    [N, H, W]. `result()` is the mIoU (0.0 before any pixel is counted, so that Keras logs stay
    finite); `per_class_iou()` and `pixel_accuracy()` give the rest.
    """

    def __init__(
        self, num_classes: int, ignore_label: int = 255, name: str = "miou", dtype=None, **kwargs
    ):
        super().__init__(name=name, dtype=dtype, **kwargs)
        self.num_classes = int(num_classes)
        self.ignore_label = int(ignore_label)
        self.total_cm = self.add_variable(
            shape=(self.num_classes, self.num_classes),
            initializer="zeros",
            dtype="float64",
            name="total_confusion_matrix",
        )

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true = tf.convert_to_tensor(y_true)
        if y_true.shape.rank == 4:
            y_true = tf.squeeze(y_true, axis=-1)
        y_true = tf.cast(y_true, tf.int32)
        predictions = _labels_from_predictions(tf.convert_to_tensor(y_pred), tf.shape(y_true))
        if sample_weight is not None:
            # Pixels with zero weight count as ignored.
            keep = tf.reshape(tf.cast(sample_weight, tf.float32), tf.shape(y_true)) > 0
            y_true = tf.where(keep, y_true, tf.fill(tf.shape(y_true), -1))
        cm = batch_confusion_matrix(y_true, predictions, self.num_classes, self.ignore_label)
        self.total_cm.assign_add(tf.cast(cm, "float64"))

    def _iou(self):
        cm = tf.cast(self.total_cm, tf.float64)
        tp = tf.linalg.diag_part(cm)
        union = tf.reduce_sum(cm, 0) + tf.reduce_sum(cm, 1) - tp
        present = union > 0
        iou = tf.math.divide_no_nan(tp, union)
        return iou, present, tp, cm

    def result(self):
        iou, present, _, _ = self._iou()
        n = tf.reduce_sum(tf.cast(present, tf.float64))
        return tf.cast(tf.math.divide_no_nan(tf.reduce_sum(iou), n), "float32")

    def per_class_iou(self):
        """float32 [C]; NaN for classes with an empty union."""
        iou, present, _, _ = self._iou()
        nan = tf.fill(tf.shape(iou), tf.constant(float("nan"), tf.float64))
        return tf.cast(tf.where(present, iou, nan), tf.float32)

    def pixel_accuracy(self):
        _, _, tp, cm = self._iou()
        return tf.cast(tf.math.divide_no_nan(tf.reduce_sum(tp), tf.reduce_sum(cm)), tf.float32)

    def reset_state(self):
        self.total_cm.assign(tf.zeros_like(self.total_cm))

    def get_config(self):
        config = super().get_config()
        config.update(num_classes=self.num_classes, ignore_label=self.ignore_label)
        return config


def format_iou_table(
    results: Dict[str, object],
    class_names: Optional[Sequence[str]] = None,
    title: Optional[str] = None,
) -> str:
    """A readable text table: one row per class (name, IoU %, accuracy %), then the summary."""
    per_class = list(results["per_class_iou"])
    accuracy = list(results.get("per_class_accuracy") or [float("nan")] * len(per_class))
    names = list(class_names) if class_names else [f"class_{i}" for i in range(len(per_class))]
    if len(names) != len(per_class):
        names = [f"class_{i}" for i in range(len(per_class))]
    width = max([len("mean class accuracy")] + [len(n) for n in names]) + 2
    lines = []
    if title:
        lines.append(title)
    lines.append(f"{'id':>3}  {'class':<{width}}{'IoU %':>8}  {'acc %':>8}")
    lines.append("-" * (3 + 2 + width + 8 + 2 + 8))

    def pct(v):
        return "     n/a" if v is None or np.isnan(v) else f"{100.0 * v:8.2f}"

    for i, (name, iou, acc) in enumerate(zip(names, per_class, accuracy)):
        lines.append(f"{i:>3}  {name:<{width}}{pct(iou)}  {pct(acc)}")
    lines.append("-" * (3 + 2 + width + 8 + 2 + 8))
    lines.append(f"{'':>3}  {'mIoU':<{width}}{pct(results['miou'])}")
    lines.append(f"{'':>3}  {'pixel accuracy':<{width}}{pct(results['pixel_accuracy'])}")
    if "mean_class_accuracy" in results:
        lines.append(
            f"{'':>3}  {'mean class accuracy':<{width}}{pct(results['mean_class_accuracy'])}"
        )
    lines.append(
        "(n/a: class absent from both labels and predictions; left out of the mIoU, "
        "as in the official mean_iou)"
    )
    return "\n".join(lines)
