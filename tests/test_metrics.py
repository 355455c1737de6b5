"""Confusion-matrix metrics against the official tf.metrics.mean_iou and plain numpy."""

import math

import numpy as np
import pytest
import tensorflow as tf

from deeplab.evaluation import metrics

NUM_CLASSES = 5
IGNORE = 255


def _random_batch(seed, shape=(2, 13, 17)):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, NUM_CLASSES, size=shape + (1,))
    labels[rng.random(labels.shape) < 0.2] = IGNORE
    predictions = rng.integers(0, NUM_CLASSES, size=shape)
    return labels.astype(np.int32), predictions.astype(np.int32)


def _official_mean_iou(labels, predictions, num_classes, ignore_label):
    """The official eval.py recipe in a TF1 graph: weights 0 at the ignore label, labels there
    set to 0, tf.metrics.mean_iou."""
    graph = tf.Graph()
    with graph.as_default():
        lab = tf.reshape(tf.constant(labels), [-1])
        pred = tf.reshape(tf.constant(predictions), [-1])
        weights = tf.cast(tf.not_equal(lab, ignore_label), tf.float32)
        lab = tf.where(tf.equal(lab, ignore_label), tf.zeros_like(lab), lab)
        value, update = tf.compat.v1.metrics.mean_iou(lab, pred, num_classes, weights=weights)
        with tf.compat.v1.Session() as sess:
            sess.run(tf.compat.v1.local_variables_initializer())
            sess.run(update)
            return float(sess.run(value))


def test_confusion_matrix_matches_numpy_and_drops_ignored_and_out_of_range_labels():
    labels, predictions = _random_batch(0)
    labels[0, 0, :3, 0] = 7  # >= num_classes: not counted either
    cm = metrics.batch_confusion_matrix(labels, predictions, NUM_CLASSES, IGNORE).numpy()
    lab = labels.reshape(-1)
    pred = predictions.reshape(-1)
    keep = lab < NUM_CLASSES
    expected = np.zeros((NUM_CLASSES, NUM_CLASSES), np.int64)
    np.add.at(expected, (lab[keep], pred[keep]), 1)
    np.testing.assert_array_equal(cm, expected)
    assert cm.dtype == np.int64
    assert cm.sum() == keep.sum()


def test_miou_equals_official_tf_metrics_mean_iou():
    labels, predictions = _random_batch(1)
    cm = metrics.batch_confusion_matrix(labels, predictions, NUM_CLASSES, IGNORE)
    ours = metrics.iou_from_confusion_matrix(cm)["miou"]
    assert ours == pytest.approx(
        _official_mean_iou(labels, predictions, NUM_CLASSES, IGNORE), abs=1e-6
    )


def test_absent_class_is_nan_and_left_out_of_the_mean_like_the_official_metric():
    labels, predictions = _random_batch(2)
    labels[labels == 3] = 0
    predictions[predictions == 3] = 1  # class 3 in neither labels nor predictions
    cm = metrics.batch_confusion_matrix(labels, predictions, NUM_CLASSES, IGNORE)
    result = metrics.iou_from_confusion_matrix(cm)
    assert math.isnan(result["per_class_iou"][3])
    present = [v for v in result["per_class_iou"] if not math.isnan(v)]
    assert result["miou"] == pytest.approx(np.mean(present))
    assert result["miou"] == pytest.approx(
        _official_mean_iou(labels, predictions, NUM_CLASSES, IGNORE), abs=1e-6
    )
    assert result["num_classes_present"] == NUM_CLASSES - 1


def test_iou_and_pixel_accuracy_by_hand():
    cm = np.array([[3, 1], [2, 4]])
    result = metrics.iou_from_confusion_matrix(cm)
    assert result["per_class_iou"] == pytest.approx([3 / 6, 4 / 7])
    assert result["pixel_accuracy"] == pytest.approx(7 / 10)
    assert result["per_class_accuracy"] == pytest.approx([3 / 4, 4 / 6])
    empty = metrics.iou_from_confusion_matrix(np.zeros((3, 3)))
    assert math.isnan(empty["miou"]) and math.isnan(empty["pixel_accuracy"])


def test_batch_confusion_matrices_add_up_to_the_whole():
    total = np.zeros((NUM_CLASSES, NUM_CLASSES), np.int64)
    all_labels, all_predictions = [], []
    for seed in range(3):
        labels, predictions = _random_batch(10 + seed)
        total += metrics.batch_confusion_matrix(labels, predictions, NUM_CLASSES, IGNORE).numpy()
        all_labels.append(labels)
        all_predictions.append(predictions)
    once = metrics.batch_confusion_matrix(
        np.concatenate(all_labels), np.concatenate(all_predictions), NUM_CLASSES, IGNORE
    )
    np.testing.assert_array_equal(total, once.numpy())


def test_keras_metric_with_logits_at_lower_resolution():
    labels, predictions = _random_batch(4, shape=(2, 9, 9))
    metric = metrics.MeanIoUWithIgnore(NUM_CLASSES, IGNORE)
    assert float(metric.result()) == 0.0
    # Full-resolution one-hot logits and integer predictions give the same confusion matrix.
    metric.update_state(labels, tf.one_hot(predictions, NUM_CLASSES))
    expected = metrics.iou_from_confusion_matrix(
        metrics.batch_confusion_matrix(labels, predictions, NUM_CLASSES, IGNORE)
    )
    assert float(metric.result()) == pytest.approx(expected["miou"], abs=1e-6)
    assert float(metric.pixel_accuracy()) == pytest.approx(expected["pixel_accuracy"], abs=1e-6)
    np.testing.assert_allclose(metric.per_class_iou().numpy(), expected["per_class_iou"], atol=1e-6)
    metric.reset_state()
    # Logits on a 5x5 grid (stride 2 of 9x9, align-corners) are resized to the labels first.
    small = tf.one_hot(predictions[:, ::2, ::2], NUM_CLASSES) * 10.0
    metric.update_state(labels, small)
    assert float(tf.reduce_sum(metric.total_cm)) == float(np.sum(labels < NUM_CLASSES))
    assert metric.get_config()["num_classes"] == NUM_CLASSES


def test_table_names_classes_and_marks_absent_ones():
    cm = np.array([[5, 0, 0], [1, 3, 0], [0, 0, 0]])
    table = metrics.format_iou_table(
        metrics.iou_from_confusion_matrix(cm), ["background", "cat", "dog"]
    )
    lines = table.splitlines()
    assert any("cat" in line and "75.00" in line for line in lines)
    assert any("dog" in line and "n/a" in line for line in lines)
    assert any(line.strip().startswith("mIoU") for line in lines)
