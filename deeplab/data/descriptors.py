"""Dataset descriptors: classes, ignore label, split sizes and palettes (one place)."""

import dataclasses
from typing import Dict, Optional, Tuple

import numpy as np

from deeplab.evaluation import colormaps

PASCAL_CLASS_NAMES = (
    "background",
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
)

CITYSCAPES_CLASS_NAMES = (
    "road",
    "sidewalk",
    "building",
    "wall",
    "fence",
    "pole",
    "traffic light",
    "traffic sign",
    "vegetation",
    "terrain",
    "sky",
    "person",
    "rider",
    "car",
    "truck",
    "bus",
    "train",
    "motorcycle",
    "bicycle",
)

# Index 0 is "other" (the ignore label); 1..150 follow ADE20K objectInfo150.
ADE20K_CLASS_NAMES = ("other",) + (
    "wall",
    "building",
    "sky",
    "floor",
    "tree",
    "ceiling",
    "road",
    "bed",
    "windowpane",
    "grass",
    "cabinet",
    "sidewalk",
    "person",
    "earth",
    "door",
    "table",
    "mountain",
    "plant",
    "curtain",
    "chair",
    "car",
    "water",
    "painting",
    "sofa",
    "shelf",
    "house",
    "sea",
    "mirror",
    "rug",
    "field",
    "armchair",
    "seat",
    "fence",
    "desk",
    "rock",
    "wardrobe",
    "lamp",
    "bathtub",
    "railing",
    "cushion",
    "base",
    "box",
    "column",
    "signboard",
    "chest of drawers",
    "counter",
    "sand",
    "sink",
    "skyscraper",
    "fireplace",
    "refrigerator",
    "grandstand",
    "path",
    "stairs",
    "runway",
    "case",
    "pool table",
    "pillow",
    "screen door",
    "stairway",
    "river",
    "bridge",
    "bookcase",
    "blind",
    "coffee table",
    "toilet",
    "flower",
    "book",
    "hill",
    "bench",
    "countertop",
    "stove",
    "palm",
    "kitchen island",
    "computer",
    "swivel chair",
    "boat",
    "bar",
    "arcade machine",
    "hovel",
    "bus",
    "towel",
    "light",
    "truck",
    "tower",
    "chandelier",
    "awning",
    "streetlight",
    "booth",
    "television receiver",
    "airplane",
    "dirt track",
    "apparel",
    "pole",
    "land",
    "bannister",
    "escalator",
    "ottoman",
    "bottle",
    "buffet",
    "poster",
    "stage",
    "van",
    "ship",
    "fountain",
    "conveyer belt",
    "canopy",
    "washer",
    "plaything",
    "swimming pool",
    "stool",
    "barrel",
    "basket",
    "waterfall",
    "tent",
    "bag",
    "minibike",
    "cradle",
    "oven",
    "ball",
    "food",
    "step",
    "tank",
    "trade name",
    "microwave",
    "pot",
    "animal",
    "bicycle",
    "lake",
    "dishwasher",
    "screen",
    "blanket",
    "sculpture",
    "hood",
    "sconce",
    "vase",
    "traffic light",
    "tray",
    "ashcan",
    "fan",
    "pier",
    "crt screen",
    "plate",
    "monitor",
    "bulletin board",
    "shower",
    "radiator",
    "glass",
    "clock",
    "flag",
)

# Shape classes of the built-in synthetic dataset (see deeplab/data/synthetic.py).
SYNTHETIC_CLASS_NAMES = ("background", "disc", "square", "triangle", "ring", "cross", "striped_bar")

OXFORD_PET_CLASS_NAMES = ("background", "pet")


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """Static description of a segmentation dataset.

    Attributes:
      name: dataset name.
      num_classes: number of classes the model predicts (ignore label excluded,
        except ADE20K where class 0 is both a class index and the ignore label,
        as in the official code).
      ignore_label: label value excluded from loss and metrics.
      splits: split name -> number of images.
      class_names: tuple of num_classes names.
      palette: uint8 [N, 3] colours for visualisation (N >= num_classes).
      image_format: image encoding written by the official builder.
      tfds_label_map: for TensorFlow Datasets sources, raw mask value -> label
        (unlisted raw values are invalid); None keeps raw values.
    """

    name: str
    num_classes: int
    ignore_label: int
    splits: Dict[str, int]
    class_names: Tuple[str, ...]
    palette: np.ndarray = dataclasses.field(compare=False, repr=False)
    image_format: str = "jpg"
    tfds_label_map: Optional[Dict[int, int]] = None

    def __post_init__(self):
        if len(self.class_names) != self.num_classes:
            raise ValueError(
                f"{self.name}: {len(self.class_names)} class names for {self.num_classes} classes."
            )
        self.palette.setflags(write=False)


def _info(name, num_classes, ignore_label, splits, class_names, palette, **kwargs):
    return DatasetInfo(
        name=name,
        num_classes=num_classes,
        ignore_label=ignore_label,
        splits=dict(splits),
        class_names=tuple(class_names),
        palette=np.asarray(palette, dtype=np.uint8),
        **kwargs,
    )


# Default sizes of the built-in synthetic dataset (datasets/build_synthetic_data.py).
# Shards per split of the official conversion scripts (build_*_data.py).
VOC_NUM_SHARDS = 4
CITYSCAPES_NUM_SHARDS = 10
ADE20K_NUM_SHARDS = 4
SYNTHETIC_NUM_TRAIN = 400
SYNTHETIC_NUM_VAL = 80

_REGISTRY = {
    "pascal_voc_seg": lambda: _info(
        "pascal_voc_seg",
        21,
        255,
        {"train": 1464, "train_aug": 10582, "trainval": 2913, "val": 1449},
        PASCAL_CLASS_NAMES,
        colormaps.create_pascal_label_colormap()[:256],
    ),
    "cityscapes": lambda: _info(
        "cityscapes",
        19,
        255,
        {"train_fine": 2975, "val_fine": 500, "test_fine": 1525},
        CITYSCAPES_CLASS_NAMES,
        colormaps.create_cityscapes_label_colormap(),
        image_format="png",
    ),
    "ade20k": lambda: _info(
        "ade20k",
        151,
        0,
        {"train": 20210, "val": 2000},
        ADE20K_CLASS_NAMES,
        colormaps.create_ade20k_label_colormap(),
    ),
    "synthetic": lambda: _info(
        "synthetic",
        len(SYNTHETIC_CLASS_NAMES),
        255,
        {"train": SYNTHETIC_NUM_TRAIN, "val": SYNTHETIC_NUM_VAL},
        SYNTHETIC_CLASS_NAMES,
        colormaps.create_synthetic_label_colormap(),
    ),
    # TensorFlow Datasets: oxford_iiit_pet trimaps hold 1 = pet, 2 = background,
    # 3 = border; we map them to 1, 0 and the ignore label.
    "oxford_iiit_pet": lambda: _info(
        "oxford_iiit_pet",
        2,
        255,
        {"train": 3680, "test": 3669},
        OXFORD_PET_CLASS_NAMES,
        colormaps.create_pascal_label_colormap()[:256],
        tfds_label_map={1: 1, 2: 0, 3: 255},
    ),
}

TFDS_PREFIX = "tfds:"


def known_datasets():
    """Returns the sorted names get_dataset_info accepts."""
    return sorted(_REGISTRY)


def get_dataset_info(name):
    """Returns the DatasetInfo of a dataset name.

    A 'tfds:NAME' name is looked up as NAME.

    Raises:
      ValueError: unknown name (the message lists the known ones).
    """
    key = name[len(TFDS_PREFIX) :] if name.startswith(TFDS_PREFIX) else name
    if key not in _REGISTRY:
        raise ValueError(
            "Unknown dataset {!r}; known datasets: {}.".format(name, ", ".join(known_datasets()))
        )
    return _REGISTRY[key]()
