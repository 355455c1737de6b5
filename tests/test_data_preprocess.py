"""Preprocessing follows the official input_preprocess.py."""

import collections

import numpy as np
import pytest
import tensorflow as tf

from deeplab.data import preprocess


def _coded_pair(height, width, num_classes=10):
    """Image whose red channel is 20 * label, green = column, blue = row."""
    rng = np.random.default_rng(0)
    label = rng.integers(0, num_classes, size=(height, width, 1))
    cols, rows = np.meshgrid(np.arange(width), np.arange(height))
    image = np.stack([label[..., 0] * 20, cols, rows], -1).astype(np.uint8)
    return tf.constant(image), tf.constant(label, tf.int32)


@pytest.mark.slow
def test_random_scale_discrete_steps_are_uniform():
    draws = [
        round(float(preprocess.get_random_scale(0.5, 2.0, 0.25, seed=[i, 7])), 4)
        for i in range(700)
    ]
    counts = collections.Counter(draws)
    assert set(counts) == {0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0}
    assert min(counts.values()) > 60  # ~100 each


def test_random_scale_continuous_and_fixed():
    draws = np.array(
        [float(preprocess.get_random_scale(0.5, 2.0, 0, seed=[i, 1])[0]) for i in range(200)]
    )
    assert draws.min() >= 0.5 and draws.max() < 2.0
    assert len(np.unique(draws)) > 150
    assert float(preprocess.get_random_scale(1.5, 1.5, 0.25)) == 1.5
    with pytest.raises(ValueError):
        preprocess.get_random_scale(2.0, 1.0, 0.25)


def test_scale_resizes_image_bilinear_and_label_nearest():
    image = tf.reshape(tf.range(16, dtype=tf.float32), [4, 4, 1])
    image = tf.concat([image] * 3, -1)
    label = tf.reshape(tf.range(16), [4, 4, 1])
    out_image, out_label = preprocess.randomly_scale_image_and_label(
        image, label, tf.constant(1.75)
    )
    assert out_image.shape == (7, 7, 3) and out_label.shape == (7, 7, 1)
    # align_corners: corners kept exactly; label values stay in the input set.
    assert float(out_image[-1, -1, 0]) == 15.0
    assert set(np.unique(out_label)) <= set(range(16))
    assert out_image.dtype == tf.float32 and out_label.dtype == tf.int32


@pytest.mark.parametrize(
    "size,min_size,max_size,factor,expected",
    [
        ((60, 40), 30, None, None, (45, 30)),
        ((60, 40), 30, 100, 8, (49, 33)),
        ((100, 200), 50, 90, None, (45, 90)),
        ((100, 200), 50, 97, 8, (49, 89)),
    ],
)
def test_resize_to_range(size, min_size, max_size, factor, expected):
    image = tf.zeros(size + (3,))
    label = tf.zeros(size + (1,), tf.int32)
    out_image, out_label = preprocess.resize_to_range(
        image, label, min_size=min_size, max_size=max_size, factor=factor
    )
    assert tuple(out_image.shape[:2]) == expected
    assert tuple(out_label.shape[:2]) == expected


def test_eval_pads_bottom_right_with_mean_and_ignore():
    image, label = _coded_pair(10, 12)
    original, out_image, out_label = preprocess.preprocess_image_and_label(
        image, label, 16, 20, ignore_label=255, is_training=False
    )
    assert out_image.shape == (16, 20, 3) and out_label.shape == (16, 20, 1)
    np.testing.assert_array_equal(out_image[:10, :12], tf.cast(image, tf.float32))
    np.testing.assert_array_equal(out_label[:10, :12], label)
    assert np.all(out_image[10:] == 127.5) and np.all(out_image[:, 12:] == 127.5)
    assert np.all(out_label[10:] == 255) and np.all(out_label[:, 12:] == 255)
    assert original is image


def test_eval_keeps_an_oversize_image_whole():
    image, label = _coded_pair(40, 30)
    _, out_image, out_label = preprocess.preprocess_image_and_label(
        image, label, 33, 33, is_training=False
    )
    assert out_image.shape == (40, 33, 3)
    padded_image, padded_label = preprocess.pad_to_valid_size(
        out_image, out_label, 33, 33, ignore_label=255, multiple=16
    )
    assert padded_image.shape == (49, 33, 3)  # 33 + 16: still 16k + 1
    np.testing.assert_array_equal(padded_label[:40, :30], label)
    assert np.all(padded_label[40:] == 255)


def test_training_crop_and_flip_keep_image_and_label_aligned():
    image, label = _coded_pair(30, 40)
    flips = set()
    for i in range(12):
        _, out_image, out_label = preprocess.preprocess_image_and_label(
            image, label, 21, 25, ignore_label=255, is_training=True, seed=[i, 3]
        )
        assert out_image.shape == (21, 25, 3) and out_label.shape == (21, 25, 1)
        np.testing.assert_array_equal(out_image[..., 0] / 20, out_label[..., 0])
        cols = out_image[0, :, 1].numpy()
        step = np.unique(np.diff(cols))
        assert len(step) == 1 and abs(step[0]) == 1  # a contiguous, whole crop
        flips.add(step[0] < 0)
    assert flips == {True, False}


def test_training_pads_small_images_before_cropping():
    image, label = _coded_pair(8, 8)
    _, out_image, out_label = preprocess.preprocess_image_and_label(
        image, label, 16, 16, ignore_label=255, is_training=True, seed=[0, 0]
    )
    valid = out_label[..., 0] != 255
    assert int(tf.reduce_sum(tf.cast(valid, tf.int32))) == 64
    assert np.all(out_image.numpy()[~valid.numpy()] == 127.5)


def test_training_scale_keeps_alignment():
    label = np.kron(np.arange(16).reshape(4, 4) % 10, np.ones((20, 20), int))[..., None]
    image = np.concatenate([label * 20] * 3, -1).astype(np.uint8)
    for i in range(5):
        _, out_image, out_label = preprocess.preprocess_image_and_label(
            tf.constant(image),
            tf.constant(label),
            65,
            65,
            min_scale_factor=0.5,
            max_scale_factor=2.0,
            scale_factor_step_size=0.25,
            is_training=True,
            seed=[i, 9],
        )
        valid = out_label[..., 0].numpy() != 255
        agree = np.abs(out_image[..., 0].numpy() / 20 - out_label[..., 0].numpy())
        assert np.mean(agree[valid] < 0.5) > 0.9


def test_same_seed_same_output():
    image, label = _coded_pair(30, 40)
    kwargs = dict(
        min_scale_factor=0.5,
        max_scale_factor=2.0,
        scale_factor_step_size=0.25,
        is_training=True,
        seed=[5, 5],
    )
    a = preprocess.preprocess_image_and_label(image, label, 17, 17, **kwargs)
    b = preprocess.preprocess_image_and_label(image, label, 17, 17, **kwargs)
    np.testing.assert_array_equal(a[1], b[1])
    np.testing.assert_array_equal(a[2], b[2])


def test_training_requires_label_and_mean_pixel():
    with pytest.raises(ValueError):
        preprocess.preprocess_image_and_label(tf.zeros([4, 4, 3]), None, 4, 4)
    assert preprocess.mean_pixel("xception_65") == (127.5, 127.5, 127.5)
    assert preprocess.mean_pixel(None) == (127.5, 127.5, 127.5)
    assert preprocess.mean_pixel("resnet_v1_50")[0] == pytest.approx(123.15)
