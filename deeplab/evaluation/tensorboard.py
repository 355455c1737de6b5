"""TensorBoard records written with TensorFlow alone: scalars, images and text.

TensorFlow 2.21 no longer pulls in the `tensorboard` package, and `tf.summary.scalar` /
`tf.summary.image` / `tf.summary.text` need it; `tf.summary.write` with the plugins' metadata
writes the same records (what TensorBoard's scalar, image and text plugins read). All writers
write into the default summary writer (`with writer.as_default(): ...`).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import summary_pb2


def _metadata(plugin: str) -> summary_pb2.SummaryMetadata:
    metadata = summary_pb2.SummaryMetadata()
    metadata.plugin_data.plugin_name = plugin
    return metadata


def write_scalar(name: str, value, step: int) -> None:
    """A scalar in the `scalars` plugin's format."""
    tf.summary.write(
        name, tf.constant(float(value), tf.float32), step=step, metadata=_metadata("scalars")
    )


def write_images(name: str, images: np.ndarray, step: int, max_outputs: int = 3) -> None:
    """uint8 [N, H, W, C] images in the `images` plugin's format (width, height, PNGs)."""
    images = np.asarray(images, np.uint8)[:max_outputs]
    height, width = images.shape[1:3]
    encoded = [tf.io.encode_png(img) for img in images]
    tensor = tf.stack([tf.constant(str(width)), tf.constant(str(height))] + encoded)
    tf.summary.write(name, tensor, step=step, metadata=_metadata("images"))


def write_text(name: str, table, step: int) -> None:
    """A string tensor (e.g. a table as a list of rows) in the `text` plugin's format."""
    tf.summary.write(name, tf.constant(table), step=step, metadata=_metadata("text"))
