"""Folder -> official TFRecord builders for PASCAL VOC 2012, Cityscapes, ADE20K.

Images are stored with their original bytes; labels as single-channel PNGs of
class indices (VOC palette labels lose their colour map, Cityscapes labelIds
become trainIds). Shards and keys are those of the official builders.
"""

import io
import os

import numpy as np
import tensorflow as tf
from absl import logging
from PIL import Image

from deeplab.data import readers, tfrecord
from deeplab.data.descriptors import ADE20K_NUM_SHARDS, CITYSCAPES_NUM_SHARDS, VOC_NUM_SHARDS

# Cityscapes labelIds (0..33, and -1 for license plate) -> trainIds; every id
# not listed maps to the ignore label 255 (cityscapesScripts labels.py).
CITYSCAPES_ID_TO_TRAIN_ID = {
    7: 0,
    8: 1,
    11: 2,
    12: 3,
    13: 4,
    17: 5,
    19: 6,
    20: 7,
    21: 8,
    22: 9,
    23: 10,
    24: 11,
    25: 12,
    26: 13,
    27: 14,
    28: 15,
    31: 16,
    32: 17,
    33: 18,
}


def _png_bytes(label):
    buffer = io.BytesIO()
    Image.fromarray(label.astype(np.uint8), mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


def _image_size(path):
    """(height, width) of an image file, read from its header."""
    try:
        with Image.open(path) as image:
            width, height = image.size
    except (OSError, SyntaxError) as e:
        raise ValueError(f"Cannot read image {path}: {e}") from e
    return height, width


def read_label_indices(path):
    """Reads a label PNG as uint8 class indices [H, W].

    A palette ('P') PNG gives its palette indices, i.e. the colour map is
    removed (the official remove_gt_colormap.py); 'L' gives its values.

    Raises:
      ValueError: unreadable file, or an RGB label (no indices to recover).
    """
    try:
        with Image.open(path) as label:
            if label.mode not in ("P", "L"):
                raise ValueError(
                    f"Label {path} has mode {label.mode}; expected a palette or single-channel PNG."
                )
            return np.asarray(label)
    except (OSError, SyntaxError) as e:
        raise ValueError(f"Cannot read label {path}: {e}") from e


def remove_gt_colormap(input_dir, output_dir):
    """Writes the palette PNGs of input_dir as raw index PNGs into output_dir."""
    tf.io.gfile.makedirs(output_dir)
    names = [n for n in sorted(tf.io.gfile.listdir(input_dir)) if n.lower().endswith(".png")]
    for name in names:
        with tf.io.gfile.GFile(os.path.join(output_dir, name), "wb") as f:
            f.write(_png_bytes(read_label_indices(os.path.join(input_dir, name))))
    return len(names)


def _pair_example(image_path, name, label, image_format):
    """Official example of an image file (bytes unchanged) and a label array."""
    height, width = _image_size(image_path)
    if label.shape[:2] != (height, width):
        raise ValueError(
            f"Label of {image_path} is {label.shape[0]}x{label.shape[1]} "
            f"but the image is {height}x{width}."
        )
    with tf.io.gfile.GFile(image_path, "rb") as f:
        image_data = f.read()
    return tfrecord.image_seg_to_tfexample(
        image_data, name, height, width, _png_bytes(label), image_format
    )


def _write_pairs(items, output_dir, split, num_shards, image_format="jpg"):
    """Writes (image_path, label_path, name[, label_fn]) items as shards.

    label_fn, when given and not None, converts the label indices (e.g.
    Cityscapes labelIds to trainIds).
    """

    def make(item):
        image, label_path, name = item[:3]
        label = read_label_indices(label_path)
        if len(item) > 3 and item[3] is not None:
            label = item[3](label)
        return _pair_example(image, name, label, image_format)

    return tfrecord.write_shards(items, output_dir, split, num_shards, make)


def build_voc2012_from_folders(
    image_folder, label_folder, list_folder, output_dir, splits=None, num_shards=VOC_NUM_SHARDS
):
    """Converts VOC-style folders into official TFRecords; returns the paths.

    Args:
      image_folder: JPEG images ({name}.jpg).
      label_folder: label PNGs ({name}.png), raw indices or palette PNGs (the
        colour map is removed).
      list_folder: {split}.txt lists of names.
      output_dir: where the shards go.
      splits: split names; None = every *.txt of list_folder (as official).
      num_shards: shards per split.
    """
    if splits is None:
        splits = sorted(
            os.path.splitext(os.path.basename(p))[0]
            for p in tf.io.gfile.glob(os.path.join(list_folder, "*.txt"))
        )
        if not splits:
            raise ValueError(f"No split lists (*.txt) in {list_folder}.")
    paths = []
    for split in splits:
        list_path = os.path.join(list_folder, split + ".txt")
        if not tf.io.gfile.exists(list_path):
            raise FileNotFoundError(f"Split list {list_path} not found.")
        with tf.io.gfile.GFile(list_path) as f:
            names = [line.strip().split()[0] for line in f if line.strip()]
        items = []
        for name in names:
            image = os.path.join(image_folder, name + ".jpg")
            label = os.path.join(label_folder, name + ".png")
            for path in (image, label):
                if not tf.io.gfile.exists(path):
                    raise FileNotFoundError(f"Missing file {path} (listed in {list_path}).")
            items.append((image, label, name))
        if not items:
            raise ValueError(f"Empty split: {list_path} lists no images.")
        logging.info("VOC %s: %d images.", split, len(items))
        paths += _write_pairs(items, output_dir, split, num_shards)
    return paths


def build_voc2012(voc_root, output_dir, splits=None, num_shards=VOC_NUM_SHARDS):
    """Converts a VOC2012 folder (or one holding VOCdevkit/VOC2012) into
    official TFRecords. Labels come from SegmentationClassRaw/ (or
    SegmentationClassAug/), else from SegmentationClass/ palette PNGs."""
    root = readers.find_voc_root(voc_root)
    if root is None:
        raise FileNotFoundError(f"No VOC folder (JPEGImages/) under {voc_root}.")
    label_dir = readers.find_voc_label_dir(root)
    return build_voc2012_from_folders(
        os.path.join(root, "JPEGImages"),
        os.path.join(root, label_dir),
        os.path.join(root, "ImageSets", "Segmentation"),
        output_dir,
        splits,
        num_shards,
    )


def cityscapes_train_ids(label_ids):
    """Maps a Cityscapes labelIds array to trainIds (255 = ignore)."""
    table = np.full(256, 255, dtype=np.uint8)
    for label_id, train_id in CITYSCAPES_ID_TO_TRAIN_ID.items():
        table[label_id] = train_id
    return table[np.asarray(label_ids, dtype=np.uint8)]


def _cityscapes_pairs(root, split):
    image_glob = os.path.join(root, "leftImg8bit", split, "*", "*_leftImg8bit.png")
    images = sorted(tf.io.gfile.glob(image_glob))
    if not images:
        raise ValueError(f"Empty split: no images match {image_glob}.")
    pairs = []
    for image in images:
        city = os.path.basename(os.path.dirname(image))
        stem = os.path.basename(image)[: -len("_leftImg8bit.png")]
        base = os.path.join(root, "gtFine", split, city, stem + "_gtFine_")
        if tf.io.gfile.exists(base + "labelTrainIds.png"):
            pairs.append((image, base + "labelTrainIds.png", stem, None))
        elif tf.io.gfile.exists(base + "labelIds.png"):
            pairs.append((image, base + "labelIds.png", stem, cityscapes_train_ids))
        else:
            raise FileNotFoundError(f"Missing label {base}labelIds.png for {image}.")
    return pairs


def build_cityscapes(
    cityscapes_root, output_dir, splits=("train", "val", "test"), num_shards=CITYSCAPES_NUM_SHARDS
):
    """Converts leftImg8bit/ + gtFine/ into official `{split}_fine` TFRecords.

    Uses *_gtFine_labelTrainIds.png when present, else converts
    *_gtFine_labelIds.png to trainIds.
    """
    paths = []
    for split in splits:
        pairs = _cityscapes_pairs(cityscapes_root, split)
        logging.info("Cityscapes %s: %d images.", split, len(pairs))

        paths += _write_pairs(pairs, output_dir, split + "_fine", num_shards, image_format="png")
    return paths


def build_ade20k_split(image_folder, label_folder, output_dir, split, num_shards=ADE20K_NUM_SHARDS):
    """Converts one ADE20K split ({stem}.jpg + {stem}.png) into TFRecords."""
    images = sorted(tf.io.gfile.glob(os.path.join(image_folder, "*.jpg")))
    if not images:
        raise ValueError(f"Empty split: no JPEG images in {image_folder}.")
    items = []
    for image in images:
        stem = os.path.splitext(os.path.basename(image))[0]
        label = os.path.join(label_folder, stem + ".png")
        if not tf.io.gfile.exists(label):
            raise FileNotFoundError(f"Missing label {label} for {image}.")
        items.append((image, label, stem))
    logging.info("ADE20K %s: %d images.", split, len(items))
    return _write_pairs(items, output_dir, split, num_shards)


def build_ade20k(ade20k_root, output_dir, num_shards=ADE20K_NUM_SHARDS):
    """Converts ADEChallengeData2016 (images/ and annotations/, each with
    training/ and validation/) into official `train` / `val` TFRecords."""
    paths = []
    for folder, split in (("training", "train"), ("validation", "val")):
        paths += build_ade20k_split(
            os.path.join(ade20k_root, "images", folder),
            os.path.join(ade20k_root, "annotations", folder),
            output_dir,
            split,
            num_shards,
        )
    return paths
