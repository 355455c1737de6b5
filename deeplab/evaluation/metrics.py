"""Segmentation metrics from a streaming confusion matrix: mIoU, per-class IoU, pixel accuracy.

Semantics follow the official evaluation (`tf.metrics.mean_iou` with weights):
- pixels whose label is the ignore label are not counted, and neither are labels outside
  `[0, num_classes)` (the official eval gives them weight 0 or, for labels other than the ignore
  label, would fail; we drop them);
- the confusion matrix has ground truth on rows and predictions on columns;
- IoU_c = TP_c / (TP_c + FP_c + FN_c); a class that occurs neither in the labels nor in the
  predictions (empty union) has IoU NaN and is left out of the mean, exactly as the official
  `mean_iou` averages over the classes with a non-empty union.

The metric is written in `keras.ops` (every backend); on TensorFlow the batch confusion matrix
and the resize of low-resolution logits keep their TensorFlow kernels (`bincount` of the
masked pixels, a `tf.cond` on dynamic sizes).
"""

from __future__ import annotations

from typing import Dict, Optional, Sequence

import keras
import numpy as np
from keras import ops

from deeplab.modeling.layers import on_tensorflow, resize_bilinear, spatial_size


def batch_confusion_matrix(labels, predictions, num_classes: int, ignore_label: int = 255):
    """Confusion matrix ([C, C], rows = ground truth) of one batch; int64 on TensorFlow.

    `labels` and `predictions` are integer tensors of the same number of elements (any shape,
    e.g. labels [N, H, W, 1] and predictions [N, H, W]). Pixels labelled `ignore_label` or outside
    `[0, num_classes)` are not counted; predictions outside that range are not counted either.
    """
    if not on_tensorflow():
        return _confusion_matrix_by_segment_sum(labels, predictions, num_classes, ignore_label)
    import tensorflow as tf

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


def _confusion_matrix_by_segment_sum(labels, predictions, num_classes, ignore_label):
    """`batch_confusion_matrix` with static shapes (int32): uncounted pixels go to an extra
    bin that is dropped, since backends such as JAX cannot mask to a data-dependent size."""
    labels = ops.reshape(ops.cast(labels, "int32"), [-1])
    predictions = ops.reshape(ops.cast(predictions, "int32"), [-1])
    valid = (labels >= 0) & (labels < num_classes) & (labels != ignore_label)
    valid = valid & (predictions >= 0) & (predictions < num_classes)
    bins = num_classes * num_classes
    flat = ops.where(valid, labels * num_classes + predictions, bins)
    counts = ops.segment_sum(ops.ones_like(flat), flat, num_segments=bins + 1)
    return ops.reshape(counts[:bins], [num_classes, num_classes])


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


def _labels_from_predictions(y_pred, label_size):
    """argmax of logits [N, h, w, C] (resized to the label size when smaller) or int labels."""
    if "float" not in keras.backend.standardize_dtype(y_pred.dtype):
        return ops.cast(y_pred, "int32")
    if on_tensorflow():
        import tensorflow as tf

        y_pred = tf.cond(
            tf.reduce_all(tf.equal(tf.shape(y_pred)[1:3], label_size)),
            lambda: y_pred,
            lambda: resize_bilinear(y_pred, label_size),
        )
    elif tuple(y_pred.shape[1:3]) != tuple(label_size):
        y_pred = resize_bilinear(y_pred, label_size)
    return ops.argmax(y_pred, axis=-1)


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
        y_true = ops.convert_to_tensor(y_true)
        if len(y_true.shape) == 4:
            y_true = ops.squeeze(y_true, axis=-1)
        y_true = ops.cast(y_true, "int32")
        y_pred = ops.convert_to_tensor(y_pred)
        predictions = _labels_from_predictions(y_pred, spatial_size(y_true))
        if sample_weight is not None:
            # Pixels with zero weight count as ignored.
            keep = ops.reshape(ops.cast(sample_weight, "float32"), ops.shape(y_true)) > 0
            y_true = ops.where(keep, y_true, -ops.ones_like(y_true))
        cm = batch_confusion_matrix(y_true, predictions, self.num_classes, self.ignore_label)
        self.total_cm.assign_add(ops.cast(cm, "float64"))

    def _iou(self):
        cm = ops.cast(self.total_cm, "float64")
        tp = ops.diagonal(cm)
        union = ops.sum(cm, 0) + ops.sum(cm, 1) - tp
        present = union > 0
        iou = ops.divide_no_nan(tp, union)
        return iou, present, tp, cm

    def result(self):
        iou, present, _, _ = self._iou()
        n = ops.sum(ops.cast(present, "float64"))
        return ops.cast(ops.divide_no_nan(ops.sum(iou), n), "float32")

    def per_class_iou(self):
        """float32 [C]; NaN for classes with an empty union."""
        iou, present, _, _ = self._iou()
        return ops.cast(ops.where(present, iou, float("nan")), "float32")

    def pixel_accuracy(self):
        _, _, tp, cm = self._iou()
        return ops.cast(ops.divide_no_nan(ops.sum(tp), ops.sum(cm)), "float32")

    def reset_state(self):
        self.total_cm.assign(ops.zeros_like(self.total_cm))

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
