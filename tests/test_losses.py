"""The training loss against hand-computed numbers (official train_utils semantics)."""

import math

import numpy as np
import pytest
import tensorflow as tf

from deeplab.training import losses

IGNORE = 255


def _ce(logits_row, label):
    z = np.asarray(logits_row, np.float64)
    return float(np.log(np.exp(z).sum()) - z[label])


# Two images of 1x2 pixels, 3 classes.
LOGITS = np.array(
    [[[[2.0, 0.0, 0.0], [0.0, 1.0, 0.0]]], [[[0.0, 0.0, 3.0], [1.0, 1.0, 1.0]]]], np.float32
)
LABELS = np.array([[[[0], [2]]], [[[2], [IGNORE]]]], np.int32)
PIXEL_CE = [_ce([2, 0, 0], 0), _ce([0, 1, 0], 2), _ce([0, 0, 3], 2)]


def _loss(**kwargs):
    defaults = dict(num_classes=3, ignore_label=IGNORE)
    defaults.update(kwargs)
    return float(losses.softmax_cross_entropy(tf.constant(LOGITS), tf.constant(LABELS), **defaults))


def test_mean_over_non_ignored_pixels():
    assert _loss() == pytest.approx(sum(PIXEL_CE) / 3, rel=1e-6)


def test_class_weights_weigh_the_sum_but_not_the_count():
    # Official: weighted sum divided by the number of non-ignored pixels.
    got = _loss(label_weights=[0.5, 1.0, 2.0])
    want = (0.5 * PIXEL_CE[0] + 2.0 * PIXEL_CE[1] + 2.0 * PIXEL_CE[2]) / 3
    assert got == pytest.approx(want, rel=1e-6)
    assert _loss(label_weights=2.0) == pytest.approx(2 * sum(PIXEL_CE) / 3, rel=1e-6)


def test_wrong_number_of_class_weights_is_an_error():
    with pytest.raises(ValueError, match="label_weights"):
        _loss(label_weights=[1.0, 2.0])


def test_all_ignored_gives_zero():
    labels = tf.fill([1, 2, 2, 1], IGNORE)
    loss = losses.softmax_cross_entropy(
        tf.zeros([1, 2, 2, 3]), labels, num_classes=3, ignore_label=IGNORE
    )
    assert float(loss) == 0.0


def test_top_k_keeps_the_hardest_pixels():
    # 4 pixels (one ignored, loss 0); top 50% -> k = int(0.5 * 4) = 2: the two largest.
    got = _loss(top_k_percent_pixels=0.5)
    hardest = sorted(PIXEL_CE, reverse=True)[:2]
    assert got == pytest.approx(sum(hardest) / 2, rel=1e-6)


def test_top_k_ramp_over_hard_example_mining_step():
    # At step 5 of 10: fraction = 0.5 * 0.25 + 0.5 = 0.625 -> k = int(2.5) = 2.
    got = _loss(top_k_percent_pixels=0.25, hard_example_mining_step=10, step=5)
    hardest = sorted(PIXEL_CE, reverse=True)[:2]
    assert got == pytest.approx(sum(hardest) / 2, rel=1e-6)
    # At step 0 every pixel counts; the ignored one has loss 0 and is not counted.
    assert _loss(top_k_percent_pixels=0.25, hard_example_mining_step=10, step=0) == pytest.approx(
        sum(PIXEL_CE) / 3, rel=1e-6
    )
    # Past the ramp: k = int(0.25 * 4) = 1.
    assert _loss(top_k_percent_pixels=0.25, hard_example_mining_step=10, step=50) == pytest.approx(
        max(PIXEL_CE), rel=1e-6
    )
    assert float(losses.top_k_fraction(5, 0.25, 10)) == pytest.approx(0.625)


def test_upsample_logits_or_downsample_labels():
    logits = tf.constant(np.random.RandomState(0).randn(1, 2, 2, 3), tf.float32)
    labels = tf.constant(np.random.RandomState(1).randint(0, 3, (1, 3, 3, 1)), tf.int32)
    up = losses.softmax_cross_entropy(logits, labels, num_classes=3, ignore_label=IGNORE)
    want_logits = tf.compat.v1.image.resize_bilinear(logits, [3, 3], align_corners=True)
    assert float(up) == pytest.approx(
        float(
            losses.softmax_cross_entropy(want_logits, labels, num_classes=3, ignore_label=IGNORE)
        ),
        rel=1e-6,
    )
    down = losses.softmax_cross_entropy(
        logits, labels, num_classes=3, ignore_label=IGNORE, upsample_logits=False
    )
    # align_corners nearest from 3x3 to 2x2 picks rows/cols 0 and 2.
    small = labels.numpy()[:, ::2, ::2]
    want = np.mean(
        [_ce(logits.numpy()[0, i, j], small[0, i, j, 0]) for i in range(2) for j in range(2)]
    )
    assert float(down) == pytest.approx(want, rel=1e-5)


def test_sum_and_count_normalize_globally():
    total, count = losses.cross_entropy_sum_and_count(
        tf.constant(LOGITS), tf.constant(LABELS), num_classes=3, ignore_label=IGNORE
    )
    assert float(count) == 3.0
    assert float(total) == pytest.approx(sum(PIXEL_CE), rel=1e-6)
    assert float(losses.normalize(total, tf.constant(0.0))) == 0.0
    assert math.isclose(float(losses.normalize(total, count)), sum(PIXEL_CE) / 3, rel_tol=1e-6)


def test_parse_label_weights():
    assert losses.parse_label_weights(None, 3) is None
    assert losses.parse_label_weights(["2"], 3) == 2.0
    assert losses.parse_label_weights([1, 2, 3], 3) == [1.0, 2.0, 3.0]
    with pytest.raises(ValueError, match="one per class"):
        losses.parse_label_weights([1, 2], 3)
