"""Bad input: each case raises an error naming the file, or is skipped and
logged with skip_bad_examples; grayscale and RGBA images are converted."""

import os
import time

import numpy as np
import pytest
import tensorflow as tf

from deeplab.data import pipeline
from deeplab.data.config import DataConfig
from tests import helpers


def _folder(tmp_path, entries, split="val"):
    """entries: stem -> (image bytes or None, label bytes or None)."""
    root = str(tmp_path)
    for stem, (image, label) in entries.items():
        if image is not None:
            helpers.write(os.path.join(root, "images", split, stem + ".png"), image)
        if label is not None:
            helpers.write(os.path.join(root, "labels", split, stem + ".png"), label)
    return root


def _good(rng, size=(8, 10)):
    image, label = helpers.random_pair(rng, size[0], size[1], 7)
    return helpers.encode(image, "PNG"), helpers.encode(label, "PNG", mode="L")


def _log_until(capfd, text):
    """What was printed, read until `text` shows (tf.print writes from TensorFlow's own threads:
    a loaded machine gets up to 5 s to flush)."""
    log = ""
    for _ in range(50):
        captured = capfd.readouterr()
        log += captured.out + captured.err
        if text in log:
            break
        time.sleep(0.1)
    return log


def _read(root, skip=False, split="val"):
    ds = pipeline.build_dataset(
        DataConfig(
            "synthetic",
            root,
            split,
            crop_size=(12, 12),
            batch_size=1,
            is_training=False,
            skip_bad_examples=skip,
        )
    )
    return [b["image_name"][0].decode() for b in ds.as_numpy_iterator()]


def _bad_cases(rng):
    image, label = helpers.random_pair(rng, 8, 10, 7)
    wrong_values = label.copy()
    wrong_values[2, 2] = 9  # synthetic has 7 classes; 9 is neither class nor 255
    jpeg = helpers.encode(image, "JPEG")
    return {
        "corrupt_jpeg": (
            jpeg[:20] + b"\x00garbage" * 20,
            helpers.encode(label, "PNG", mode="L"),
            "could not read",
        ),
        "corrupt_png": (helpers.encode(image, "PNG"), b"\x89PNG\r\n\x1a\nbroken", "could not read"),
        "size_mismatch": (
            helpers.encode(image, "PNG"),
            helpers.encode(label[:6], "PNG", mode="L"),
            "label size 6x10 differs from image size 8x10",
        ),
        "bad_values": (
            helpers.encode(image, "PNG"),
            helpers.encode(wrong_values, "PNG", mode="L"),
            "label value 9 outside 0..6",
        ),
    }


@pytest.mark.slow
@pytest.mark.parametrize("case", ["corrupt_jpeg", "corrupt_png", "size_mismatch", "bad_values"])
def test_bad_example_error_names_the_file(tmp_path, case):
    rng = np.random.default_rng(0)
    image, label, message = _bad_cases(rng)[case]
    root = _folder(tmp_path, {"a_good": _good(rng), case: (image, label)})
    with pytest.raises(tf.errors.InvalidArgumentError) as info:
        _read(root)
    assert case + ".png" in str(info.value)
    assert message in str(info.value)


@pytest.mark.slow
def test_bad_examples_skipped_and_counted(tmp_path, capfd):
    rng = np.random.default_rng(1)
    entries = {k: v[:2] for k, v in _bad_cases(rng).items()}
    entries.update(a_good=_good(rng), z_good=_good(rng))
    root = _folder(tmp_path, entries)
    assert _read(root, skip=True) == ["a_good", "z_good"]
    log = _log_until(capfd, "skipped so far: 4")
    assert "skipping" in log and "bad_values.png" in log
    assert "skipped so far: 4" in log


@pytest.mark.slow  # a whole tf.data pipeline or checkpoint: the full suite's
def test_missing_label_file(tmp_path):
    rng = np.random.default_rng(2)
    image, _ = _good(rng)
    root = _folder(tmp_path, {"a_good": _good(rng), "lonely": (image, None)})
    with pytest.raises(FileNotFoundError, match="lonely"):
        _read(root)
    assert _read(root, skip=True) == ["a_good"]


def test_missing_voc_image(tmp_path):
    rng = np.random.default_rng(3)
    helpers.write_voc_folder(str(tmp_path), {"val": ["a", "b"]}, rng)
    os.remove(os.path.join(str(tmp_path), "JPEGImages", "b.jpg"))
    with pytest.raises(FileNotFoundError, match="b.jpg"):
        _read(str(tmp_path))


def test_empty_splits(tmp_path):
    empty_list = tmp_path / "list"
    helpers.write(str(empty_list / "images" / "x.png"), _good(np.random.default_rng(4))[0])
    helpers.write(str(empty_list / "val.txt"), b"\n")
    with pytest.raises(ValueError, match="Empty split"):
        _read(str(empty_list))
    empty_shards = tmp_path / "shards"
    helpers.write(str(empty_shards / "val-00000-of-00001.tfrecord"), b"")
    with pytest.raises(ValueError, match="Empty split.*val-00000"):
        _read(str(empty_shards))
    with pytest.raises(FileNotFoundError, match="split 'test'"):
        _read(str(empty_shards), split="test")


@pytest.mark.slow
def test_grayscale_and_rgba_images_are_converted(tmp_path):
    rng = np.random.default_rng(5)
    gray = rng.integers(0, 256, size=(8, 10), dtype=np.uint8)
    rgba = rng.integers(0, 256, size=(8, 10, 4), dtype=np.uint8)
    label = helpers.encode(np.zeros((8, 10), np.uint8), "PNG", mode="L")
    root = _folder(
        tmp_path,
        {
            "gray": (helpers.encode(gray, "PNG", mode="L"), label),
            "rgba": (helpers.encode(rgba, "PNG", mode="RGBA"), label),
        },
    )
    ds = pipeline.build_dataset(
        DataConfig("synthetic", root, "val", crop_size=(8, 10), batch_size=2, is_training=False)
    )
    batch = next(iter(ds))
    assert batch["image"].shape == (2, 8, 10, 3)
    np.testing.assert_array_equal(batch["image"][0], np.stack([gray] * 3, -1))
    np.testing.assert_array_equal(batch["image"][1], rgba[..., :3])


def _shards(tmp_path, rng, names_per_shard, split="val"):
    """Official TFRecord shards of good 8x10 examples; returns their paths."""
    from deeplab.data import tfrecord

    paths = []
    for i, names in enumerate(names_per_shard):
        examples = []
        for name in names:
            image, label = helpers.random_pair(rng, 8, 10, 7)
            examples.append(
                tfrecord.image_seg_to_tfexample(
                    helpers.encode(image, "PNG"),
                    name,
                    8,
                    10,
                    helpers.encode(label, "PNG", mode="L"),
                    "png",
                )
            )
        path = tfrecord.shard_path(str(tmp_path), split, i, len(names_per_shard))
        with tf.io.TFRecordWriter(path) as writer:
            for example in examples:
                writer.write(example.SerializeToString())
        paths.append(path)
    return paths


@pytest.mark.slow  # a whole tf.data pipeline or checkpoint: the full suite's
def test_truncated_shard_is_named_with_its_offset_or_skipped_and_counted(tmp_path, capfd):
    rng = np.random.default_rng(5)
    first, second = _shards(tmp_path, rng, [["a0", "a1"], ["b0", "b1", "b2"]])
    sizes = [len(r.numpy()) + 16 for r in tf.data.TFRecordDataset(second)]
    with open(second, "r+b") as f:
        f.truncate(sizes[0] + sizes[1] + 10)  # b2 cut short
    with pytest.raises(tf.errors.InvalidArgumentError) as info:
        _read(str(tmp_path))
    message = str(info.value)
    assert f"TFRecord shard {second}: unreadable record at byte offset {sizes[0] + sizes[1]}" in (
        message
    ), message
    capfd.readouterr()
    assert _read(str(tmp_path), skip=True) == ["a0", "a1", "b0", "b1"]
    log = _log_until(capfd, "skipped so far: 1")
    assert f'skipping "bad example in TFRecord shard {second}: unreadable record' in log, log
    assert "skipped so far: 1" in log


@pytest.mark.slow  # a whole tf.data pipeline or checkpoint: the full suite's
def test_garbled_record_is_named_and_intact_shards_read_whole(tmp_path):
    rng = np.random.default_rng(6)
    (shard,) = _shards(tmp_path, rng, [["c0", "c1", "c2"]])
    size0 = len(next(iter(tf.data.TFRecordDataset(shard))).numpy()) + 16
    data = bytearray(open(shard, "rb").read())
    data[size0 + 30] ^= 0xFF  # inside c1's data: its CRC no longer matches
    open(shard, "wb").write(bytes(data))
    with pytest.raises(tf.errors.InvalidArgumentError, match=f"byte offset {size0} of "):
        _read(str(tmp_path))
    assert _read(str(tmp_path), skip=True) == ["c0"]


@pytest.mark.slow
def test_records_lost_after_a_break_are_counted_as_skipped(tmp_path, capfd):
    rng = np.random.default_rng(8)
    (shard,) = _shards(tmp_path, rng, [[f"d{i}" for i in range(6)]])
    size0 = len(next(iter(tf.data.TFRecordDataset(shard))).numpy()) + 16
    data = bytearray(open(shard, "rb").read())
    data[size0 + 30] ^= 0xFF  # d1's data garbled: d1..d5 are lost
    open(shard, "wb").write(bytes(data))
    with pytest.raises(tf.errors.InvalidArgumentError, match="5 record"):
        _read(str(tmp_path))
    capfd.readouterr()
    assert _read(str(tmp_path), skip=True) == ["d0"]
    assert "skipped so far: 5" in _log_until(capfd, "skipped so far: 5")


def test_labels_are_checked_against_the_models_class_count(tmp_path):
    rng = np.random.default_rng(7)
    image, label = helpers.random_pair(rng, 8, 10, 7)
    label[1, 1] = 10  # a class of the 21-class dataset, not of a 7-class model
    root = _folder(
        tmp_path, {"ten": (helpers.encode(image, "PNG"), helpers.encode(label, "PNG", mode="L"))}
    )

    def read(num_classes):
        ds = pipeline.build_dataset(
            DataConfig(
                "pascal_voc_seg",
                root,
                "val",
                crop_size=(12, 12),
                batch_size=1,
                is_training=False,
                num_classes=num_classes,
            )
        )
        return [b["image_name"][0].decode() for b in ds.as_numpy_iterator()]

    assert read(None) == ["ten"]
    with pytest.raises(tf.errors.InvalidArgumentError) as info:
        read(7)
    assert "ten.png" in str(info.value)
    assert "label value 10 outside 0..6 and not the ignore label 255" in str(info.value)
