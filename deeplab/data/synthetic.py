"""The built-in synthetic segmentation dataset (default when no data is given).

Scenes of 2-6 objects of six shape classes (disc, square, triangle, ring,
cross, striped bar) on a textured, noisy, greyish background. Colour narrows
a class down but never decides it: the classes come in three pairs that share
a hue family (disc and ring: warm; square and triangle: green; cross and bar:
blue), and within a pair only shape and structure tell them apart (the ring's
hole, the square's checks against the plain triangle, the cross's grid
against the bar's stripes). Objects occlude each other; label boundaries carry
a band of the ignore label like VOC's. Image sizes and aspect ratios vary.
Every image is a pure function of (seed, split, index), so the set is
deterministic. Shards are written in the official TFRecord format.
"""

import colorsys
import io
import json
import math
import os
import re

import numpy as np
import tensorflow as tf
from PIL import Image

from deeplab.data import descriptors, tfrecord

CLASS_NAMES = descriptors.SYNTHETIC_CLASS_NAMES
NUM_CLASSES = len(CLASS_NAMES)
IGNORE_LABEL = 255
_SPLIT_IDS = {"train": 1, "val": 2}


def _smooth_noise(rng, height, width, cells, channels):
    """Low-frequency noise in [-1, 1]: a random grid upsampled bilinearly."""
    grid = rng.uniform(-1, 1, size=(cells, cells, channels)).astype(np.float32)
    layers = [
        np.asarray(Image.fromarray(grid[..., c], mode="F").resize((width, height), Image.BILINEAR))
        for c in range(channels)
    ]
    return np.stack(layers, axis=-1)


# Hue ranges (degrees) of the class pairs: disc/ring, square/triangle, cross/bar.
_HUE_FAMILIES = {
    1: (-20, 40),
    4: (-20, 40),
    2: (80, 150),
    3: (80, 150),
    5: (190, 260),
    6: (190, 260),
}


def _hsv_color(hue_degrees, saturation, value):
    """An RGB colour in [0, 255] from a hue in degrees, saturation and value."""
    return 255.0 * np.array(colorsys.hsv_to_rgb((hue_degrees / 360.0) % 1.0, saturation, value))


def _object_colors(rng, class_id):
    """The fill colour of an object and the second colour of its structure.

    Both come from the class's hue family: bright and saturated, the second
    one darker, so the structure shows but colour alone only names the pair.
    """
    hue = rng.uniform(*_HUE_FAMILIES[class_id])
    saturation = rng.uniform(0.55, 1.0)
    value = rng.uniform(0.75, 1.0)
    second = _hsv_color(hue + rng.uniform(-10, 10), saturation, value * rng.uniform(0.35, 0.55))
    return _hsv_color(hue, saturation, value), second


def _shape_mask(class_id, u, v, radius):
    """Boolean mask of a shape in object coordinates (u, v), size ``radius``."""
    r2 = u * u + v * v
    if class_id == 1:  # disc
        return r2 <= radius**2
    if class_id == 2:  # square
        return (np.abs(u) <= 0.8 * radius) & (np.abs(v) <= 0.8 * radius)
    if class_id == 3:  # triangle (equilateral, circumradius = radius)
        mask = np.ones_like(u, dtype=bool)
        for k in range(3):
            angle = math.pi / 2 + k * 2 * math.pi / 3
            mask &= (u * math.cos(angle) + v * math.sin(angle)) <= radius / 2
        return mask
    if class_id == 4:  # ring
        return (r2 <= radius**2) & (r2 >= (0.55 * radius) ** 2)
    if class_id == 5:  # cross
        arm = 0.3 * radius
        return ((np.abs(u) <= radius) & (np.abs(v) <= arm)) | (
            (np.abs(u) <= arm) & (np.abs(v) <= radius)
        )
    if class_id == 6:  # striped bar
        return (np.abs(u) <= 1.2 * radius) & (np.abs(v) <= 0.45 * radius)
    raise ValueError(f"Unknown synthetic class {class_id}.")


def _class_pattern(class_id, u, v, radius):
    """The surface structure of a class in object coordinates, or None (plain).

    Discs, rings and triangles are plain (the ring's hole and the triangle's
    corners are their structure), squares are checkered, crosses carry a grid of
    thin lines and bars stripes, each in a darker shade of the object's colour.
    """
    period = max(4.0, radius / 2.5)
    if class_id == 2:  # checkerboard
        return (np.floor(u / period) + np.floor(v / period)) % 2 == 0
    if class_id == 5:  # grid of thin lines
        return ((u / period) % 1.0 > 0.25) & ((v / period) % 1.0 > 0.25)
    if class_id == 6:  # stripes across the bar
        return np.floor(u / period) % 2 == 0
    return None


def _ignore_border(label, width):
    """Marks pixels within ``width`` of a label change with the ignore label."""
    edge = np.zeros(label.shape, dtype=bool)
    for axis in (0, 1):
        change = np.diff(label, axis=axis) != 0
        pad_before = [(0, 0), (0, 0)]
        pad_after = [(0, 0), (0, 0)]
        pad_before[axis] = (1, 0)
        pad_after[axis] = (0, 1)
        edge |= np.pad(change, pad_before) | np.pad(change, pad_after)
    for _ in range(width - 1):
        grown = edge.copy()
        grown[1:] |= edge[:-1]
        grown[:-1] |= edge[1:]
        grown[:, 1:] |= edge[:, :-1]
        grown[:, :-1] |= edge[:, 1:]
        edge = grown
    out = label.copy()
    out[edge] = IGNORE_LABEL
    return out


def generate_example(
    seed,
    split,
    index,
    *,
    min_size=112,
    max_size=224,
    min_objects=2,
    max_objects=6,
    border_width=1,
    noise_std=10.0,
):
    """Generates one scene: (uint8 image [H, W, 3], uint8 label [H, W]).

    Labels are 0 (background), 1..6 (shape classes) and 255 (ignore band of
    ``border_width`` pixels on each side of every label boundary; 0 = none).
    """
    rng = np.random.default_rng([seed, _SPLIT_IDS.get(split, 3), index])
    height = int(rng.integers(min_size, max_size + 1))
    width = int(rng.integers(min_size, max_size + 1))
    # Background: a random greyish base colour, smooth blotches, a gradient.
    base = _hsv_color(rng.uniform(0, 360), rng.uniform(0.0, 0.25), rng.uniform(0.2, 0.9))
    image = (
        base
        + 40.0 * _smooth_noise(rng, height, width, int(rng.integers(3, 8)), 1)
        + 8.0 * _smooth_noise(rng, height, width, int(rng.integers(3, 8)), 3)
        + 20.0 * _smooth_noise(rng, height, width, 16, 1)
    )
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    tilt = rng.uniform(-0.25, 0.25, size=2)
    image += (tilt[0] * (yy - height / 2) + tilt[1] * (xx - width / 2))[..., None]
    label = np.zeros((height, width), dtype=np.uint8)
    short = min(height, width)
    for _ in range(int(rng.integers(min_objects, max_objects + 1))):
        class_id = int(rng.integers(1, NUM_CLASSES))
        radius = rng.uniform(0.12, 0.28) * short
        cy = rng.uniform(0.1, 0.9) * height
        cx = rng.uniform(0.1, 0.9) * width
        angle = rng.uniform(0, 2 * math.pi)
        u = (xx - cx) * math.cos(angle) + (yy - cy) * math.sin(angle)
        v = -(xx - cx) * math.sin(angle) + (yy - cy) * math.cos(angle)
        mask = _shape_mask(class_id, u, v, radius)
        if not mask.any():
            continue
        color, second = _object_colors(rng, class_id)
        fill = color + rng.uniform(5, 20) * _smooth_noise(
            rng, height, width, int(rng.integers(4, 10)), 3
        )
        pattern = _class_pattern(class_id, u, v, radius)
        if pattern is not None:  # The class's surface structure, in the darker colour.
            fill = np.where(pattern[..., None], fill, second)
        image[mask] = fill[mask]
        label[mask] = class_id
    image += rng.normal(0, noise_std, size=image.shape)
    image = np.clip(np.round(image), 0, 255).astype(np.uint8)
    if border_width > 0:
        label = _ignore_border(label, border_width)
    return image, label


def encode_example(image, label, name, jpeg_quality=90):
    """Returns the official tf.train.Example of an image (JPEG) and label (PNG)."""
    image_buffer = io.BytesIO()
    Image.fromarray(image).save(image_buffer, format="JPEG", quality=jpeg_quality)
    label_buffer = io.BytesIO()
    Image.fromarray(label, mode="L").save(label_buffer, format="PNG")
    return tfrecord.image_seg_to_tfexample(
        image_buffer.getvalue(),
        name,
        image.shape[0],
        image.shape[1],
        label_buffer.getvalue(),
        image_format="jpg",
    )


MARKER_FILE = "DEEPLAB_SYNTHETIC.json"
_SHARD_NAME = re.compile(r"^(train|val)-\d{5}-of-\d{5}\.tfrecord$")
# A name a split's shard list (`{split}-*`) would take in; other files (a README, a DONE
# marker, .DS_Store) are left alone and never read.
_SPLIT_FILE = re.compile(r"^[^.][^-]*-")


class NotASyntheticDirError(ValueError):
    """The directory holds files that are not a synthetic set built here."""


def _write_marker(output_dir, complete, files, **settings):
    """Writes the marker: whether the build finished, the names of the files it wrote (the
    only files of the folder that are ours) and the build settings."""
    tfrecord_dir = os.fspath(output_dir)
    os.makedirs(tfrecord_dir, exist_ok=True)
    with open(os.path.join(tfrecord_dir, MARKER_FILE), "w") as f:
        json.dump(
            {"complete": complete, "files": sorted(files), **settings}, f, indent=2, sort_keys=True
        )


def _read_marker(output_dir):
    try:
        with open(os.path.join(output_dir, MARKER_FILE)) as f:
            marker = json.load(f)
    except FileNotFoundError:
        return None
    except ValueError:
        return {"complete": False}
    return marker if isinstance(marker, dict) else {"complete": False}


def _our_files(marker, names):
    """The names of `names` that a build of ours wrote: those the marker lists (a marker
    written before the list existed: the shard names the generator gives)."""
    listed = marker.get("files")
    if isinstance(listed, list):
        return [n for n in names if n in listed]
    return [n for n in names if _SHARD_NAME.match(n)]


def _legacy_synthetic_dir(output_dir, names):
    """A set built before the marker existed: only train/val shards whose first record is
    `train_000000` / `val_000000` (the names the generator gives)."""
    if not names or not all(_SHARD_NAME.match(n) for n in names):
        return False
    for split in ("train", "val"):
        shards = tfrecord.list_shards(output_dir, split)
        if not shards:
            return False
        try:
            first = next(iter(tf.data.TFRecordDataset(shards[0]).take(1)), None)
        except tf.errors.OpError:
            return False
        if first is None or tfrecord.parse_example(first)["image_name"].numpy() != (
            f"{split}_000000".encode()
        ):
            return False
    return True


def build_synthetic_dataset(
    output_dir,
    *,
    seed=0,
    num_train=descriptors.SYNTHETIC_NUM_TRAIN,
    num_val=descriptors.SYNTHETIC_NUM_VAL,
    num_shards=4,
    **generate_kwargs,
):
    """Writes train-*/val-* official TFRecord shards and the marker file that says the folder
    holds a synthetic set built here; returns the shard paths.

    generate_kwargs go to generate_example (min_size, max_size, min_objects,
    max_objects, border_width, noise_std).
    """
    settings = dict(seed=seed, num_train=num_train, num_val=num_val, **generate_kwargs)
    counts = (("train", num_train), ("val", num_val))
    shards = {split: max(1, min(num_shards, count)) for split, count in counts}
    planned = [
        os.path.basename(tfrecord.shard_path(output_dir, split, i, shards[split]))
        for split, _ in counts
        for i in range(shards[split])
    ]
    # Listed before they exist, so that an interrupted build knows which files are its own.
    _write_marker(output_dir, False, planned, **settings)
    paths = []
    for split, count in counts:

        def make_example(index, split=split):
            image, label = generate_example(seed, split, index, **generate_kwargs)
            return encode_example(image, label, f"{split}_{index:06d}")

        paths += tfrecord.write_shards(range(count), output_dir, split, shards[split], make_example)
    _write_marker(output_dir, True, [os.path.basename(p) for p in paths], **settings)
    return paths


def is_built(output_dir) -> bool:
    """True when output_dir holds a complete synthetic set built here."""
    output_dir = os.fspath(output_dir)
    return os.path.isdir(output_dir) and bool((_read_marker(output_dir) or {}).get("complete"))


def ensure_synthetic_dataset(output_dir, *, rebuild=False, flag="--dataset_dir", **kwargs):
    """Returns the shard paths of the synthetic set in output_dir, building it first when
    output_dir does not exist, is empty, or holds an unfinished build of ours (`rebuild`:
    also over a finished one, replacing only the files it wrote). `flag`: the flag that
    named output_dir, for the messages.

    Raises:
      NotASyntheticDirError: output_dir holds anything else, or a file that a split would read
        (`{split}-*`) besides those a build of ours wrote (a user's data is never touched,
        nor read as part of the set).
    """
    output_dir = os.fspath(output_dir)
    if os.path.exists(output_dir) and not os.path.isdir(output_dir):
        raise NotASyntheticDirError(
            f"{flag}={output_dir} is a file, not a directory for the synthetic set."
        )
    names = sorted(os.listdir(output_dir)) if os.path.isdir(output_dir) else []
    names = [n for n in names if n != MARKER_FILE]
    marker = _read_marker(output_dir)
    if marker is None and names:
        if not _legacy_synthetic_dir(output_dir, names):
            raise NotASyntheticDirError(
                f"{flag}={output_dir} holds data that this tool did not build "
                f"(no {MARKER_FILE}); refusing to write into it: give {flag} a new or "
                "empty folder (for your own data: --dataset and --dataset_dir)."
            )
        _write_marker(output_dir, True, names)
        marker = {"complete": True, "files": names}
    ours = _our_files(marker or {}, names)
    foreign = sorted(n for n in set(names) - set(ours) if _SPLIT_FILE.match(n))
    if foreign:
        raise NotASyntheticDirError(
            f"{flag}={output_dir} holds {os.path.join(output_dir, foreign[0])}"
            + (f" and {len(foreign) - 1} more file(s)" if len(foreign) > 1 else "")
            + " that this tool did not write; refusing to use the folder: move them out, or "
            f"give {flag} a new or empty folder."
        )
    if marker and marker.get("complete") and not rebuild:
        return tfrecord.list_shards(output_dir, "train") + tfrecord.list_shards(output_dir, "val")
    # An unfinished build of ours, or a rebuild: remove only the files it wrote, start again.
    for name in ours:
        path = os.path.join(output_dir, name)
        if os.path.isdir(path):
            raise NotASyntheticDirError(f"{flag}: {path} is a folder, not a shard of ours.")
        os.remove(path)
    return build_synthetic_dataset(output_dir, **kwargs)
