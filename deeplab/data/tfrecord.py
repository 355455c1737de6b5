"""The official DeepLab TFRecord format (``datasets/build_data.py``): write and parse.

Each record is a ``tf.train.Example`` with the keys below; shards are named
``{split}-{shard:05d}-of-{num_shards:05d}.tfrecord`` and found by ``{split}-*``.
"""

import math
import os

import tensorflow as tf

IMAGE_ENCODED = "image/encoded"
IMAGE_FILENAME = "image/filename"
IMAGE_FORMAT = "image/format"
IMAGE_HEIGHT = "image/height"
IMAGE_WIDTH = "image/width"
IMAGE_CHANNELS = "image/channels"
LABEL_ENCODED = "image/segmentation/class/encoded"
LABEL_FORMAT = "image/segmentation/class/format"

FEATURE_SPEC = {
    IMAGE_ENCODED: tf.io.FixedLenFeature((), tf.string, default_value=""),
    IMAGE_FILENAME: tf.io.FixedLenFeature((), tf.string, default_value=""),
    IMAGE_FORMAT: tf.io.FixedLenFeature((), tf.string, default_value="jpeg"),
    IMAGE_HEIGHT: tf.io.FixedLenFeature((), tf.int64, default_value=0),
    IMAGE_WIDTH: tf.io.FixedLenFeature((), tf.int64, default_value=0),
    LABEL_ENCODED: tf.io.FixedLenFeature((), tf.string, default_value=""),
    LABEL_FORMAT: tf.io.FixedLenFeature((), tf.string, default_value="png"),
}


def _bytes(value):
    if isinstance(value, str):
        value = value.encode("utf-8")
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


def _int64(value):
    return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(value)]))


def image_seg_to_tfexample(
    image_data,
    filename,
    height,
    width,
    seg_data,
    image_format="jpg",
    label_format="png",
    channels=3,
):
    """Returns a tf.train.Example with the official keys and feature types."""
    return tf.train.Example(
        features=tf.train.Features(
            feature={
                IMAGE_ENCODED: _bytes(image_data),
                IMAGE_FILENAME: _bytes(filename),
                IMAGE_FORMAT: _bytes(image_format),
                IMAGE_HEIGHT: _int64(height),
                IMAGE_WIDTH: _int64(width),
                IMAGE_CHANNELS: _int64(channels),
                LABEL_ENCODED: _bytes(seg_data),
                LABEL_FORMAT: _bytes(label_format),
            }
        )
    )


def shard_path(output_dir, split, shard_id, num_shards):
    """Returns the official shard file name for one shard."""
    return os.path.join(output_dir, f"{split}-{shard_id:05d}-of-{num_shards:05d}.tfrecord")


def write_shards(items, output_dir, split, num_shards, make_example=None):
    """Writes examples into ``num_shards`` official shards, one at a time.

    Args:
      items: a sequence (len() known) of tf.train.Example, or of anything
        ``make_example`` turns into one (so a large split is never held in
        memory as examples).
      output_dir: folder, created when absent.
      split: split name used as file prefix.
      num_shards: number of shards; items are split into contiguous runs of
        ceil(n / num_shards) as the official builders do.
      make_example: optional callable item -> tf.train.Example.

    Returns:
      The list of shard paths written.
    """
    tf.io.gfile.makedirs(output_dir)
    per_shard = max(1, int(math.ceil(len(items) / float(num_shards))))
    paths = []
    for shard_id in range(num_shards):
        path = shard_path(output_dir, split, shard_id, num_shards)
        with tf.io.TFRecordWriter(path) as writer:
            for item in items[shard_id * per_shard : (shard_id + 1) * per_shard]:
                example = make_example(item) if make_example else item
                writer.write(example.SerializeToString())
        paths.append(path)
    return paths


def list_shards(dataset_dir, split):
    """Returns the sorted shard paths matching ``{split}-*`` in dataset_dir."""
    return sorted(tf.io.gfile.glob(os.path.join(dataset_dir, f"{split}-*")))


def parse_example(serialized):
    """Parses one serialized official example into a dict of raw tensors.

    Returns keys 'image_bytes', 'label_bytes' (empty when the record has no
    label, e.g. a test split), 'image_name'.
    """
    features = tf.io.parse_single_example(serialized, FEATURE_SPEC)
    return {
        "image_bytes": features[IMAGE_ENCODED],
        "label_bytes": features[LABEL_ENCODED],
        "image_name": features[IMAGE_FILENAME],
    }
