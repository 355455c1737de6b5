"""Data sources: official TFRecords, VOC / images+labels folders, TFDS.

Each reader returns a tf.data.Dataset of *raw* elements (dicts with
'image_name', 'source' and either encoded bytes or file paths) for
deeplab.data.decode, except TFDS which yields decoded tensors.
"""

import dataclasses
import os
import struct
from typing import List, Optional, Tuple

import tensorflow as tf
from absl import logging

from deeplab.data import decode, tfrecord

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")
# VOC label folders in order of preference; the last holds palette PNGs.
VOC_LABEL_DIRS = ("SegmentationClassRaw", "SegmentationClassAug", "SegmentationClass")
VOC_PALETTE_DIR = "SegmentationClass"


@dataclasses.dataclass
class FolderPairs:
    """Image/label file pairs of one split of a folder dataset."""

    images: List[str]
    labels: List[str]
    names: List[str]
    color_labels: bool = False  # labels are palette/RGB PNGs


def _check_pairs(images, labels, names, skip_missing, where):
    """Drops or reports pairs whose files are missing; raises on an empty split."""
    kept = ([], [], [])
    missing = 0
    for image, label, name in zip(images, labels, names):
        absent = [p for p in (image, label) if not tf.io.gfile.exists(p)]
        if absent:
            if not skip_missing:
                raise FileNotFoundError(f"Missing file {absent[0]} (example {name!r} of {where}).")
            missing += 1
            logging.warning(
                "Skipping example %r: missing file %s (%d skipped).", name, absent[0], missing
            )
            continue
        for bucket, value in zip(kept, (image, label, name)):
            bucket.append(value)
    if not kept[0]:
        raise ValueError(f"Empty split: no examples in {where}.")
    return kept


def find_voc_root(dataset_dir):
    """Returns the folder holding JPEGImages/ (dataset_dir, .../VOC2012 or
    .../VOCdevkit/VOC2012), or None."""
    for candidate in (
        dataset_dir,
        os.path.join(dataset_dir, "VOC2012"),
        os.path.join(dataset_dir, "VOCdevkit", "VOC2012"),
    ):
        if tf.io.gfile.isdir(os.path.join(candidate, "JPEGImages")):
            return candidate
    return None


def find_voc_label_dir(voc_root):
    """Returns the first existing folder name of VOC_LABEL_DIRS in voc_root.

    Raises:
      FileNotFoundError: none exists.
    """
    for name in VOC_LABEL_DIRS:
        if tf.io.gfile.isdir(os.path.join(voc_root, name)):
            return name
    raise FileNotFoundError(
        "No label folder ({}) in {}.".format(", ".join(VOC_LABEL_DIRS), voc_root)
    )


def list_voc_split(voc_root, split, skip_missing=False):
    """Lists a VOC split from ImageSets/Segmentation/{split}.txt.

    Labels come from the first existing folder of VOC_LABEL_DIRS; palette
    labels (SegmentationClass/) are flagged for colour-to-index mapping.

    Raises:
      FileNotFoundError: the split list or a listed file is missing.
      ValueError: the split list is empty.
    """
    list_path = os.path.join(voc_root, "ImageSets", "Segmentation", split + ".txt")
    if not tf.io.gfile.exists(list_path):
        raise FileNotFoundError(f"VOC split list {list_path} not found.")
    with tf.io.gfile.GFile(list_path) as f:
        names = [line.strip().split()[0] for line in f if line.strip()]
    label_dir = find_voc_label_dir(voc_root)
    images = [os.path.join(voc_root, "JPEGImages", n + ".jpg") for n in names]
    labels = [os.path.join(voc_root, label_dir, n + ".png") for n in names]
    images, labels, names = _check_pairs(images, labels, names, skip_missing, list_path)
    return FolderPairs(images, labels, names, color_labels=label_dir == VOC_PALETTE_DIR)


def _files_by_stem(folder):
    """Maps file stem -> path for the image-like files of a folder."""
    result = {}
    for name in sorted(tf.io.gfile.listdir(folder)):
        stem, ext = os.path.splitext(name)
        if ext.lower() in IMAGE_EXTENSIONS:
            result.setdefault(stem, os.path.join(folder, name))
    return result


def list_image_label_split(dataset_dir, split, skip_missing=False):
    """Lists images/ + labels/ pairs (matched by file stem) of a split.

    The split is either sub-folders images/{split}/ and labels/{split}/, or a
    list of stems in {dataset_dir}/{split}.txt over images/ and labels/.

    Raises:
      FileNotFoundError: the split is not found or a label is missing.
      ValueError: the split is empty.
    """
    image_dir = os.path.join(dataset_dir, "images")
    label_dir = os.path.join(dataset_dir, "labels")
    list_path = os.path.join(dataset_dir, split + ".txt")
    if tf.io.gfile.isdir(os.path.join(image_dir, split)):
        image_dir = os.path.join(image_dir, split)
        label_dir = os.path.join(label_dir, split)
        images = _files_by_stem(image_dir)
        stems = sorted(images)
        where = image_dir
    elif tf.io.gfile.exists(list_path):
        images = _files_by_stem(image_dir)
        with tf.io.gfile.GFile(list_path) as f:
            stems = [line.strip() for line in f if line.strip()]
        where = list_path
    else:
        raise FileNotFoundError(
            f"Split {split!r} not found in {dataset_dir}: expected images/{split}/ + labels/{split}/ or {list_path}."
        )
    labels = _files_by_stem(label_dir) if tf.io.gfile.isdir(label_dir) else {}
    image_paths = [images.get(s, os.path.join(image_dir, s + ".jpg")) for s in stems]
    label_paths = [labels.get(s, os.path.join(label_dir, s + ".png")) for s in stems]
    images, labels, names = _check_pairs(image_paths, label_paths, stems, skip_missing, where)
    return FolderPairs(images, labels, names)


def folder_dataset(pairs: FolderPairs):
    """Raw-element dataset of folder pairs (paths; decoding reads the files)."""
    return tf.data.Dataset.from_tensor_slices(
        {
            "image_path": pairs.images,
            "label_path": pairs.labels,
            "image_name": pairs.names,
            "source": ["{} (label {})".format(*pair) for pair in zip(pairs.images, pairs.labels)],
        }
    )


def list_tfrecord_split(dataset_dir, split):
    """Returns the shards of a split; [] when there are none.

    Raises:
      ValueError: shards exist but all are empty (an empty split).
    """
    shards = tfrecord.list_shards(dataset_dir, split)
    if shards and all(tf.io.gfile.stat(p).length == 0 for p in shards):
        raise ValueError(
            "Empty split {!r}: shards {} hold no records.".format(split, ", ".join(shards))
        )
    return shards


# Bytes around each record in a TFRecord file: length (8), its CRC (4), the data's CRC (4).
_RECORD_FRAMING = 16


def records_from(path, offset):
    """How many TFRecord records the bytes of `path` from `offset` on hold, by the lengths in
    their headers (a record cut short by the end of the file counts; at least 1)."""
    size = tf.io.gfile.stat(path).length
    count = 0
    with tf.io.gfile.GFile(path, "rb") as f:
        while offset < size:
            f.seek(offset)
            header = f.read(8)
            count += 1
            if len(header) < 8:
                break
            offset += _RECORD_FRAMING + struct.unpack("<Q", header)[0]
    return max(count, 1)


def _shard_records(path, size):
    """(serialized, offset, error) of one shard's records. A record that cannot be read
    (truncated or corrupt: TFRecord reading stops there) ends the shard with one element whose
    `error` names the byte offset and how many records are lost from there on; the file size
    tells a clean end from a broken one."""
    records = tf.data.TFRecordDataset(path, buffer_size=8 << 20).ignore_errors()
    records = records.map(lambda r: (r, tf.constant(False)))
    end = tf.data.Dataset.from_tensors((tf.constant(b""), tf.constant(True)))

    def lost(offset):
        return tf.py_function(
            lambda p, o: records_from(p.numpy().decode(), int(o)), [path, offset], tf.int64
        )

    def account(offset, item):
        record, is_end = item
        length = tf.cast(tf.strings.length(record), tf.int64) + _RECORD_FRAMING
        following = offset + tf.where(is_end, tf.constant(0, tf.int64), length)
        broken = tf.logical_and(is_end, tf.not_equal(offset, size))
        error = tf.cond(
            broken,
            lambda: tf.strings.format(
                "unreadable record at byte offset {} of {} (truncated or corrupt file): {} "
                + decode.LOST_RECORDS,
                (offset, size, lost(offset)),
            ),
            lambda: tf.constant(""),
        )
        return following, (record, is_end, error)

    scanned = records.concatenate(end).scan(tf.constant(0, tf.int64), account)
    kept = scanned.filter(lambda record, is_end, error: tf.logical_or(~is_end, error != ""))
    return kept.map(lambda record, is_end, error: (record, path, error))


def tfrecord_dataset(shards, *, shuffle_files, seed, num_readers, deterministic):
    """Raw-element dataset of official TFRecord shards.

    'source' names the record's image/filename and its shard. A truncated or corrupt shard
    gives one element whose 'error' names the shard and the byte offset (decoding then raises
    it, or skips and counts it with skip_bad_examples).
    """
    sizes = [tf.io.gfile.stat(p).length for p in shards]
    files = tf.data.Dataset.from_tensor_slices((shards, tf.constant(sizes, tf.int64)))
    if shuffle_files:
        files = files.shuffle(len(shards), seed=seed, reshuffle_each_iteration=True)

    records = files.interleave(
        _shard_records,
        cycle_length=max(1, min(num_readers, len(shards))),
        block_length=1,
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=deterministic,
    )

    def to_raw(serialized, path, error):
        raw = tfrecord.parse_example(serialized)
        raw["source"] = tf.where(
            error == "",
            tf.strings.join(["'", raw["image_name"], "' in ", path]),
            tf.strings.join(["in TFRecord shard ", path]),
        )
        raw["error"] = error
        return raw

    return records.map(to_raw, num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)


def shard_list(items, input_context):
    """Keeps this input pipeline's share of a list (every n-th item)."""
    if input_context is None or input_context.num_input_pipelines <= 1:
        return items
    return items[input_context.input_pipeline_id :: input_context.num_input_pipelines]


# ----------------------------------------------------------------- TFDS --

_MASK_FEATURE_NAMES = ("segmentation_mask", "mask", "label", "annotation", "segmentation")


def tfds_feature_keys(features) -> Tuple[str, str]:
    """Picks the image and segmentation-mask feature names of a TFDS dataset.

    Raises:
      ValueError: no 3-channel image or no 1-channel mask feature.
    """
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

    images = {k: v for k, v in features.items() if isinstance(v, tfds.features.Image)}
    color = [k for k, v in images.items() if v.shape[-1] == 3]
    masks = [k for k, v in images.items() if v.shape[-1] == 1]
    image_key = "image" if "image" in color else (color[0] if color else None)
    mask_key = next((k for k in _MASK_FEATURE_NAMES if k in masks), masks[0] if masks else None)
    if image_key is None or mask_key is None:
        raise ValueError(
            f"TFDS features {sorted(features.keys())} need an RGB image and a 1-channel "
            "segmentation mask."
        )
    return image_key, mask_key


def tfds_dataset(
    name,
    split,
    *,
    data_dir=None,
    shuffle_files=False,
    seed=None,
    input_context=None,
    label_map: Optional[dict] = None,
):
    """Decoded-element dataset of a TensorFlow Datasets segmentation dataset.

    Never downloads: the dataset must already be prepared in data_dir (or be
    mocked with tfds.testing.mock_data). ``label_map`` maps raw mask values to
    labels (unlisted values become -1 and fail validation).
    """
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

    builder = tfds.builder(name, data_dir=data_dir)
    image_key, mask_key = tfds_feature_keys(builder.info.features)
    read_config = tfds.ReadConfig(input_context=input_context, shuffle_seed=seed)
    dataset = builder.as_dataset(split=split, shuffle_files=shuffle_files, read_config=read_config)
    table = None
    if label_map:
        values = [-1] * 256
        for raw, mapped in label_map.items():
            values[raw] = mapped
        table = tf.constant(values, tf.int32)
    has_file_name = "file_name" in builder.info.features

    def convert(index, example):
        label = tf.cast(example[mask_key], tf.int32)
        if table is not None:
            label = tf.gather(table, tf.clip_by_value(label, 0, 255))
        if has_file_name:
            image_name = example["file_name"]
        else:
            image_name = tf.strings.format("{}/{}/{}", (name, split, index))
        return {
            "image": example[image_key],
            "label": label,
            "has_label": tf.constant(True),
            "image_name": image_name,
            "source": tf.strings.join(["tfds ", image_name]),
            "error": tf.constant(""),
        }

    return dataset.enumerate().map(convert, num_parallel_calls=tf.data.AUTOTUNE)
