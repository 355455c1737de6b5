"""TensorBoard summaries and console progress of a training run.

Scalars (every `log_steps` steps and at the last step): `total_loss`,
`losses/cross_entropy`, `losses/regularization`, `learning_rate`, `pixel_accuracy`,
`images_per_second`. Images (with `save_summaries_images`): `samples/image`,
`samples/label` and `samples/prediction`, labels and predictions drawn in the dataset's
palette.
"""

from __future__ import annotations

import datetime
import time
from typing import Dict, Optional

import numpy as np
import tensorflow as tf
from absl import logging

from deeplab.evaluation import colormaps
from deeplab.evaluation.tensorboard import write_images, write_scalar


class Progress:
    """Measures throughput and prints `step, loss, images/s, ETA` lines."""

    def __init__(self, start_step: int, last_step: int, global_batch_size: int):
        self.last_step = last_step
        self.global_batch_size = global_batch_size
        self._t0 = time.perf_counter()
        self._step0 = start_step
        self._window_t = self._t0
        self._window_step = start_step

    def images_per_second(self, step: int) -> float:
        """Throughput since the previous call (the first call: since the start)."""
        now = time.perf_counter()
        steps = step - self._window_step
        elapsed = max(now - self._window_t, 1e-9)
        self._window_t, self._window_step = now, step
        return steps * self.global_batch_size / elapsed

    def eta(self, step: int) -> str:
        done = step - self._step0
        if done <= 0:
            return "?"
        per_step = (time.perf_counter() - self._t0) / done
        seconds = int(per_step * max(self.last_step - step, 0))
        return str(datetime.timedelta(seconds=seconds))

    def log(self, step: int, scalars: Dict[str, float], images_per_second: float) -> None:
        logging.info(
            "step %d/%d  loss %.4f (ce %.4f, reg %.4f)  lr %.3g  pixel_acc %.3f  "
            "%.1f images/s  ETA %s",
            step,
            self.last_step,
            scalars["total_loss"],
            scalars["losses/cross_entropy"],
            scalars["losses/regularization"],
            scalars["learning_rate"],
            scalars["pixel_accuracy"],
            images_per_second,
            self.eta(step),
        )


class SummaryWriter:
    """tf.summary writer of the chief (a no-op writer on the other workers)."""

    def __init__(
        self,
        logdir: Optional[str],
        *,
        dataset_name: str,
        num_classes: int,
        ignore_label: int,
        max_images: int = 3,
    ):
        self.writer = (
            tf.summary.create_file_writer(logdir) if logdir else tf.summary.create_noop_writer()
        )
        self.colormap = colormaps.get_colormap(dataset_name)
        self.num_classes = num_classes
        self.ignore_label = ignore_label
        self.max_images = max_images

    def scalars(self, step: int, values: Dict[str, float]) -> None:
        with self.writer.as_default(step=step):
            for name, value in values.items():
                write_scalar(name, value, step)

    def images(self, step: int, images, labels, predictions) -> None:
        n = self.max_images
        images = np.clip(np.asarray(images)[:n], 0, 255).astype(np.uint8)
        labels, predictions = (
            colormaps.colorize(
                np.asarray(x)[:n], self.colormap, self.ignore_label, self.num_classes
            )
            for x in (labels, predictions)
        )
        with self.writer.as_default(step=step):
            write_images("samples/image", images, step, n)
            write_images("samples/label", labels, step, n)
            write_images("samples/prediction", predictions, step, n)

    def flush(self) -> None:
        self.writer.flush()
