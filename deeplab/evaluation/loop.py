"""The evaluation loop: a model over an eval dataset into a confusion matrix and metrics.

`evaluate` runs a model over an eval dataset (dicts with 'image' float32 [B, H, W, 3] and
'label' int [B, H, W, 1], as `deeplab.data.pipeline.build_dataset` yields for an evaluation
`DataConfig`) and accumulates a confusion matrix; metrics follow `deeplab.metrics` (the
official `tf.metrics.mean_iou` with the ignore label weighted out). Result files and summaries:
`deeplab.eval_results`; checkpoint polling: `deeplab.checkpoint_polling`; images:
`deeplab.visualization`.
"""

from __future__ import annotations

import sys
import time
from typing import Callable, Dict, Optional, Sequence

import keras
import numpy as np
import tensorflow as tf

from deeplab.evaluation import metrics as metrics_lib
from deeplab.modeling import inference


def make_eval_step(model, num_classes: int, ignore_label: int, *args, **kwargs) -> Callable:
    """A compiled function (images, labels) -> (predictions int32 [B, H, W], confusion int64).

    The remaining arguments are those of `inference.predict_labels` after `images`
    (`eval_scales`, `add_flipped_images`, `logits_output_stride`,
    `prediction_with_upsampled_logits`).
    """

    @tf.function(
        input_signature=[
            tf.TensorSpec([None, None, None, 3], tf.float32),
            tf.TensorSpec(None, tf.int32),
        ]
    )
    def step(images, labels):
        predictions = inference.predict_labels(model, images, *args, **kwargs)
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
        # On a terminal a live bar; in a log (not a tty) Keras's verbose=2 writes one line at
        # the end instead of an ever-growing line of bar updates. The mIoU shown is that of the
        # confusion matrix so far (stateful: not an average of running values), so the last
        # one is the table's.
        progress = keras.utils.Progbar(
            target,
            unit_name="batch",
            verbose=1 if sys.stdout.isatty() else 2,
            stateful_metrics=["miou"],
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
    results = metrics_lib.iou_from_confusion_matrix(total)
    if progress is not None:
        progress.update(seen, values=[("miou", results["miou"])], finalize=True)
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
