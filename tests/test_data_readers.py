"""Readers: official TFRecords (byte-compatible), VOC and images/labels folders,
TensorFlow Datasets (mocked, never downloaded)."""

import os

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from deeplab.data import pipeline, tfrecord
from deeplab.data.config import DataConfig
from tests import helpers


def _eval_batches(name, data_dir, split, crop, **kwargs):
    ds = pipeline.build_dataset(
        DataConfig(name, data_dir, split, crop_size=crop, batch_size=1, is_training=False, **kwargs)
    )
    return list(ds.as_numpy_iterator())


def test_reads_tfrecords_written_as_the_official_builder(tmp_path):
    rng = np.random.default_rng(1)
    pairs = [(f"img_{i}",) + helpers.random_pair(rng, 17 + i, 23, 21) for i in range(5)]
    expected = helpers.write_official_tfrecords(str(tmp_path), "val", pairs, num_shards=2)
    assert len(tfrecord.list_shards(str(tmp_path), "val")) == 2
    batches = _eval_batches("pascal_voc_seg", str(tmp_path), "val", (33, 33))
    assert [b["image_name"][0].decode() for b in batches] == [f"img_{i}" for i in range(5)]
    for b in batches:
        name = b["image_name"][0].decode()
        image, label = expected[name]
        h, w = label.shape
        assert (b["height"][0], b["width"][0]) == (h, w)
        np.testing.assert_array_equal(b["image"][0, :h, :w], image)
        np.testing.assert_array_equal(b["label"][0, :h, :w, 0], label)
        assert np.all(b["label"][0, h:] == 255) and np.all(b["image"][0, h:] == 127.5)


def test_parse_example_keys_roundtrip():
    example = tfrecord.image_seg_to_tfexample(b"img", "a", 3, 4, b"seg")
    features = example.features.feature
    assert set(features) == {
        "image/encoded",
        "image/filename",
        "image/format",
        "image/height",
        "image/width",
        "image/channels",
        "image/segmentation/class/encoded",
        "image/segmentation/class/format",
    }
    assert features["image/height"].int64_list.value == [3]
    assert features["image/format"].bytes_list.value == [b"jpg"]
    parsed = tfrecord.parse_example(example.SerializeToString())
    assert parsed["image_bytes"].numpy() == b"img"
    assert parsed["label_bytes"].numpy() == b"seg"
    assert parsed["image_name"].numpy() == b"a"


@pytest.mark.parametrize("palette_labels", [False, True])
def test_voc_folder(tmp_path, palette_labels):
    rng = np.random.default_rng(2)
    root = os.path.join(str(tmp_path), "VOCdevkit", "VOC2012")
    data = helpers.write_voc_folder(
        root, {"val": ["b", "a", "c"]}, rng, palette_labels=palette_labels
    )
    batches = _eval_batches("pascal_voc_seg", str(tmp_path), "val", (21, 25))
    assert [b["image_name"][0].decode() for b in batches] == ["b", "a", "c"]
    for b in batches:
        _, label = data[b["image_name"][0].decode()]
        np.testing.assert_array_equal(b["label"][0, :20, :24, 0], label)


def test_images_labels_folder_by_stem(tmp_path):
    rng = np.random.default_rng(3)
    data = {}
    for split, stems in (("train", ["x1", "x2"]), ("val", ["y1"])):
        for stem in stems:
            image, label = helpers.random_pair(rng, 12, 14, 7)
            helpers.write(
                os.path.join(str(tmp_path), "images", split, stem + ".png"),
                helpers.encode(image, "PNG"),
            )
            helpers.write(
                os.path.join(str(tmp_path), "labels", split, stem + ".png"),
                helpers.encode(label, "PNG", mode="L"),
            )
            data[stem] = (image, label)
    batches = _eval_batches("synthetic", str(tmp_path), "train", (16, 16))
    assert [b["image_name"][0].decode() for b in batches] == ["x1", "x2"]
    for b in batches:
        image, label = data[b["image_name"][0].decode()]
        np.testing.assert_array_equal(b["image"][0, :12, :14], image)  # PNG: exact
        np.testing.assert_array_equal(b["label"][0, :12, :14, 0], label)


def test_images_labels_folder_with_split_list(tmp_path):
    rng = np.random.default_rng(4)
    for stem in ("p", "q", "r"):
        image, label = helpers.random_pair(rng, 9, 9, 7)
        helpers.write(
            os.path.join(str(tmp_path), "images", stem + ".jpg"), helpers.encode(image, "JPEG")
        )
        helpers.write(
            os.path.join(str(tmp_path), "labels", stem + ".png"),
            helpers.encode(label, "PNG", mode="L"),
        )
    helpers.write(os.path.join(str(tmp_path), "val.txt"), b"r\np\n")
    batches = _eval_batches("synthetic", str(tmp_path), "val", (9, 9))
    assert [b["image_name"][0].decode() for b in batches] == ["r", "p"]


def _pet_as_dataset(self, split, **unused_kwargs):
    """Mock oxford_iiit_pet examples: trimap values 1 (pet), 2 (bg), 3 (border)."""
    del self, split
    masks = np.array([[[1], [2]], [[3], [2]]], np.uint8).repeat(4, 0).repeat(4, 1)
    images = np.full((2, 8, 8, 3), 200, np.uint8)
    return tf.data.Dataset.from_tensor_slices(
        {
            "image": images,
            "segmentation_mask": np.stack([masks, 4 - masks]),
            "file_name": [b"cat_1.jpg", b"dog_2.jpg"],
            "label": [0, 1],
            "species": [0, 1],
        }
    )


@pytest.mark.slow
def test_tfds_oxford_pet_with_mock_data():
    with tfds.testing.mock_data(as_dataset_fn=_pet_as_dataset):
        batches = _eval_batches("tfds:oxford_iiit_pet", None, "test", (9, 9))
    assert [b["image_name"][0] for b in batches] == [b"cat_1.jpg", b"dog_2.jpg"]
    label = batches[0]["label"][0, :8, :8, 0]
    # 1 (pet) -> 1, 2 (background) -> 0, 3 (border) -> ignore 255.
    assert label[0, 0] == 1 and label[0, 7] == 0 and label[7, 0] == 255
    assert np.all(batches[0]["label"][0, 8:] == 255)


@pytest.mark.slow  # a whole tf.data pipeline or checkpoint: the full suite's
def test_tfds_training_batches_with_mock_data():
    with tfds.testing.mock_data(as_dataset_fn=_pet_as_dataset):
        ds = pipeline.build_dataset(
            DataConfig(
                "tfds:oxford_iiit_pet",
                None,
                "train",
                crop_size=(6, 6),
                batch_size=2,
                is_training=True,
                seed=1,
            )
        )
        batch = next(iter(ds))
    assert batch["image"].shape == (2, 6, 6, 3)
    assert set(np.unique(batch["label"])) <= {0, 1, 255}
