"""Label colour maps (PASCAL VOC, Cityscapes, ADE20K, synthetic) and overlays.

The tables equal the ones of the official research/deeplab
``utils/get_dataset_colormap.py``: PASCAL uses the VOC bit-interleave palette
(512 entries), Cityscapes the 19 train-id colours (256 entries, the rest black)
and ADE20K a fixed 151-entry table (entry 0, "other", is black).
"""

import numpy as np

_PASCAL_ENTRIES = 512
_CITYSCAPES_ENTRIES = 256

# fmt: off
_CITYSCAPES_COLORS = (
    (128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153),
    (153, 153, 153), (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152),
    (70, 130, 180), (220, 20, 60), (255, 0, 0), (0, 0, 142), (0, 0, 70),
    (0, 60, 100), (0, 80, 100), (0, 0, 230), (119, 11, 32),
)
# fmt: on

# 151 RGB triples, flattened; index 0 is the ignored "other" class.
# fmt: off
_ADE20K_FLAT = (
    0, 0, 0, 120, 120, 120, 180, 120, 120, 6, 230, 230, 80, 50, 50, 4, 200, 3,
    120, 120, 80, 140, 140, 140, 204, 5, 255, 230, 230, 230, 4, 250, 7, 224, 5, 255,
    235, 255, 7, 150, 5, 61, 120, 120, 70, 8, 255, 51, 255, 6, 82, 143, 255, 140,
    204, 255, 4, 255, 51, 7, 204, 70, 3, 0, 102, 200, 61, 230, 250, 255, 6, 51,
    11, 102, 255, 255, 7, 71, 255, 9, 224, 9, 7, 230, 220, 220, 220, 255, 9, 92,
    112, 9, 255, 8, 255, 214, 7, 255, 224, 255, 184, 6, 10, 255, 71, 255, 41, 10,
    7, 255, 255, 224, 255, 8, 102, 8, 255, 255, 61, 6, 255, 194, 7, 255, 122, 8,
    0, 255, 20, 255, 8, 41, 255, 5, 153, 6, 51, 255, 235, 12, 255, 160, 150, 20,
    0, 163, 255, 140, 140, 140, 250, 10, 15, 20, 255, 0, 31, 255, 0, 255, 31, 0,
    255, 224, 0, 153, 255, 0, 0, 0, 255, 255, 71, 0, 0, 235, 255, 0, 173, 255,
    31, 0, 255, 11, 200, 200, 255, 82, 0, 0, 255, 245, 0, 61, 255, 0, 255, 112,
    0, 255, 133, 255, 0, 0, 255, 163, 0, 255, 102, 0, 194, 255, 0, 0, 143, 255,
    51, 255, 0, 0, 82, 255, 0, 255, 41, 0, 255, 173, 10, 0, 255, 173, 255, 0,
    0, 255, 153, 255, 92, 0, 255, 0, 255, 255, 0, 245, 255, 0, 102, 255, 173, 0,
    255, 0, 20, 255, 184, 184, 0, 31, 255, 0, 255, 61, 0, 71, 255, 255, 0, 204,
    0, 255, 194, 0, 255, 82, 0, 10, 255, 0, 112, 255, 51, 0, 255, 0, 194, 255,
    0, 122, 255, 0, 255, 163, 255, 153, 0, 0, 255, 10, 255, 112, 0, 143, 255, 0,
    82, 0, 255, 163, 255, 0, 255, 235, 0, 8, 184, 170, 133, 0, 255, 0, 255, 92,
    184, 0, 255, 255, 0, 31, 0, 184, 255, 0, 214, 255, 255, 0, 112, 92, 255, 0,
    0, 224, 255, 112, 224, 255, 70, 184, 160, 163, 0, 255, 153, 0, 255, 71, 255, 0,
    255, 0, 163, 255, 204, 0, 255, 0, 143, 0, 255, 235, 133, 255, 0, 255, 0, 235,
    245, 0, 255, 255, 0, 122, 255, 245, 0, 10, 190, 212, 214, 255, 0, 0, 204, 255,
    20, 0, 255, 255, 255, 0, 0, 153, 255, 0, 41, 255, 0, 255, 204, 41, 0, 255,
    41, 255, 0, 173, 0, 255, 0, 245, 255, 71, 0, 255, 122, 0, 255, 0, 255, 184,
    0, 92, 255, 184, 255, 0, 0, 133, 255, 255, 214, 0, 25, 194, 194, 102, 255, 0,
    92, 0, 255,
)
# fmt: on

# Synthetic dataset: background grey-blue, then one distinct colour per shape
# class. Index 255 (ignore) is drawn white.
# fmt: off
_SYNTHETIC_COLORS = (
    (40, 40, 60), (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
    (145, 30, 180),
)
# fmt: on


def create_pascal_label_colormap():
    """Returns the PASCAL VOC colormap, uint8 [512, 3] (bit-interleave palette)."""
    colormap = np.zeros((_PASCAL_ENTRIES, 3), dtype=np.int64)
    index = np.arange(_PASCAL_ENTRIES, dtype=np.int64)
    for shift in range(7, -1, -1):
        for channel in range(3):
            colormap[:, channel] |= ((index >> channel) & 1) << shift
        index >>= 3
    return colormap.astype(np.uint8)


def create_cityscapes_label_colormap():
    """Returns the Cityscapes train-id colormap, uint8 [256, 3]."""
    colormap = np.zeros((_CITYSCAPES_ENTRIES, 3), dtype=np.uint8)
    colormap[: len(_CITYSCAPES_COLORS)] = _CITYSCAPES_COLORS
    return colormap


def create_ade20k_label_colormap():
    """Returns the ADE20K colormap, uint8 [151, 3]."""
    return np.asarray(_ADE20K_FLAT, dtype=np.uint8).reshape(-1, 3)


def create_synthetic_label_colormap():
    """Returns the synthetic dataset colormap, uint8 [256, 3] (255 is white)."""
    colormap = np.zeros((256, 3), dtype=np.uint8)
    colormap[: len(_SYNTHETIC_COLORS)] = _SYNTHETIC_COLORS
    colormap[255] = (255, 255, 255)
    return colormap


_COLORMAPS = {
    "pascal": create_pascal_label_colormap,
    "pascal_voc_seg": create_pascal_label_colormap,
    "cityscapes": create_cityscapes_label_colormap,
    "ade20k": create_ade20k_label_colormap,
    "synthetic": create_synthetic_label_colormap,
}


def get_colormap(dataset_name):
    """Returns the uint8 [N, 3] colormap of a dataset name.

    Accepts 'pascal_voc_seg' (or 'pascal'), 'cityscapes', 'ade20k', 'synthetic';
    any other name gets the PASCAL palette, which gives every index a distinct
    colour (used, e.g., for TensorFlow Datasets sources).
    """
    factory = _COLORMAPS.get(dataset_name, create_pascal_label_colormap)
    return factory()


def colorize(label, colormap, ignore_label=None, num_classes=None, ignore_color=(255, 255, 255)):
    """Maps integer label maps [..., H, W] (or [..., H, W, 1]) to RGB uint8 [..., H, W, 3].

    Args:
      label: integer array, one label map or a batch of them.
      colormap: a dataset name (see get_colormap) or an explicit [N, 3] colormap array.
      ignore_label: pixels of this label are drawn in `ignore_color` when it is not a class
        (`num_classes` unset or `ignore_label >= num_classes`, as 255 in PASCAL / Cityscapes).
      num_classes: the number of classes (see `ignore_label`).
      ignore_color: RGB colour of the ignored pixels.

    Raises:
      ValueError: if a (not ignored) label is negative or has no colormap entry.
    """
    label = np.asarray(label)
    if label.ndim >= 3 and label.shape[-1] == 1:
        label = label[..., 0]
    label = label.astype(np.int64)
    if isinstance(colormap, str):
        colormap = get_colormap(colormap)
    colormap = np.asarray(colormap, dtype=np.uint8)
    ignore = None
    if ignore_label is not None and (num_classes is None or ignore_label >= num_classes):
        ignore = label == ignore_label
        label = np.where(ignore, 0, label)
    if label.size and (label.min() < 0 or label.max() >= len(colormap)):
        raise ValueError(
            f"Label values must lie in [0, {len(colormap)}), got [{label.min()}, {label.max()}]."
        )
    color = colormap[label]
    if ignore is not None:
        color[ignore] = np.asarray(ignore_color, np.uint8)
    return color


def label_to_color_image(label, dataset_name_or_colormap="pascal_voc_seg"):
    """Maps a 2-D integer label map to an RGB uint8 image [H, W, 3].

    Args:
      label: 2-D integer array (a trailing channel of size 1 is accepted).
      dataset_name_or_colormap: a dataset name (see get_colormap) or an explicit
        [N, 3] colormap array.

    Raises:
      ValueError: if the label is not 2-D, or holds a negative value or a value
        the colormap has no entry for.
    """
    label = np.asarray(label)
    if label.ndim == 3 and label.shape[-1] == 1:
        label = label[..., 0]
    if label.ndim != 2:
        raise ValueError(f"Expect a 2-D label map, got shape {label.shape}.")
    return colorize(label, dataset_name_or_colormap)


def overlay(image, label_color, alpha=0.5):
    """Blends a colour label image over an RGB image; returns uint8 [H, W, 3].

    ``alpha`` is the weight of the label colours (0: image only, 1: colours only).
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha!r}.")
    image = np.asarray(image, dtype=np.float32)
    label_color = np.asarray(label_color, dtype=np.float32)
    if image.shape != label_color.shape:
        raise ValueError(
            f"image {image.shape} and label colours {label_color.shape} differ in shape."
        )
    blended = (1.0 - alpha) * image + alpha * label_color
    return np.clip(np.round(blended), 0, 255).astype(np.uint8)
