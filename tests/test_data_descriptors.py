"""Dataset descriptors."""

import dataclasses

import numpy as np
import pytest

from deeplab.data import descriptors


@pytest.mark.parametrize(
    "name,classes,ignore,splits",
    [
        (
            "pascal_voc_seg",
            21,
            255,
            {"train": 1464, "train_aug": 10582, "trainval": 2913, "val": 1449},
        ),
        ("cityscapes", 19, 255, {"train_fine": 2975, "val_fine": 500, "test_fine": 1525}),
        ("ade20k", 151, 0, {"train": 20210, "val": 2000}),
    ],
)
def test_official_descriptors(name, classes, ignore, splits):
    info = descriptors.get_dataset_info(name)
    assert (info.name, info.num_classes, info.ignore_label) == (name, classes, ignore)
    assert info.splits == splits
    assert len(info.class_names) == classes
    assert info.palette.dtype == np.uint8 and info.palette.shape[1] == 3
    assert info.palette.shape[0] >= classes


def test_synthetic_descriptor():
    info = descriptors.get_dataset_info("synthetic")
    assert info.class_names[0] == "background"
    assert 5 <= info.num_classes <= 8 and info.ignore_label == 255
    assert set(info.splits) == {"train", "val"}
    assert len({tuple(c) for c in info.palette[: info.num_classes]}) == info.num_classes


def test_descriptor_is_frozen():
    info = descriptors.get_dataset_info("pascal_voc_seg")
    with pytest.raises(dataclasses.FrozenInstanceError):
        info.num_classes = 3
    assert info.class_names[15] == "person"


def test_unknown_name_lists_known_ones():
    with pytest.raises(ValueError, match="pascal_voc_seg.*synthetic|cityscapes"):
        descriptors.get_dataset_info("coco")


def test_tfds_prefix():
    info = descriptors.get_dataset_info("tfds:oxford_iiit_pet")
    assert info.num_classes == 2 and info.tfds_label_map[3] == 255
