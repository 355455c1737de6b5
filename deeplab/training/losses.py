"""Training loss of research/deeplab: softmax cross-entropy with an ignore label.

Semantics (official `train_utils.add_softmax_cross_entropy_loss_for_each_scale`):

* Pixels whose label is `ignore_label` get weight 0. Other pixels get weight 1, or the
  weight of their class when `label_weights` is a list (one weight per class).
* With `top_k_percent_pixels == 1.0` the loss is the sum of the weighted pixel losses
  divided by the number of non-ignored pixels (the count, not the sum of the weights).
* With `top_k_percent_pixels < 1.0` (hard pixel mining) only the `k` largest weighted pixel
  losses count, `k = int(p * num_pixels)` where `num_pixels` includes ignored pixels and
  `p` ramps linearly from 1.0 at step 0 to `top_k_percent_pixels` at
  `hard_example_mining_step` (immediately when that is 0); the sum of the kept losses is
  divided by how many of them are non-zero.
* A batch without any counted pixel has loss 0.
* With `upsample_logits` the logits are resized bilinearly (align corners) to the label
  size; otherwise the labels are resized to the logits' size by nearest neighbour (align
  corners).

The functions return the *sum* and the *count* separately as well, so that a distributed
trainer can normalise by the count of the whole global batch (see
`deeplab.training.trainer`).
"""

from __future__ import annotations

from typing import Optional, Sequence, Tuple, Union

import tensorflow as tf

from deeplab.modeling.layers import resize_bilinear, resize_labels

LabelWeights = Union[None, float, Sequence[float]]


def label_weight_mask(
    labels: tf.Tensor, ignore_label: int, num_classes: int, label_weights: LabelWeights = None
) -> tf.Tensor:
    """Per-pixel weights: 0 at `ignore_label`, else 1 / the class weight.

    `labels` is an integer tensor of any shape. `label_weights` is None or a float (every
    class the same weight) or a sequence of `num_classes` floats (weight of class i).
    """
    not_ignored = tf.cast(tf.not_equal(labels, ignore_label), tf.float32)
    if label_weights is None:
        return not_ignored
    if isinstance(label_weights, (int, float)):
        return not_ignored * float(label_weights)
    weights = [float(w) for w in label_weights]
    if len(weights) != num_classes:
        raise ValueError(
            f"label_weights has {len(weights)} entries but there are {num_classes} classes"
        )
    # Ignored pixels (whatever their label value) index a valid class, then get masked.
    safe_labels = tf.where(labels == ignore_label, tf.zeros_like(labels), labels)
    safe_labels = tf.clip_by_value(safe_labels, 0, num_classes - 1)
    return not_ignored * tf.gather(tf.constant(weights, tf.float32), safe_labels)


def top_k_fraction(step, top_k_percent_pixels: float, hard_example_mining_step: int) -> tf.Tensor:
    """The fraction of pixels kept at `step` (official linear ramp from 1.0)."""
    p = tf.constant(float(top_k_percent_pixels), tf.float32)
    if hard_example_mining_step == 0:
        return p
    ratio = tf.minimum(1.0, tf.cast(step, tf.float32) / float(hard_example_mining_step))
    return ratio * p + (1.0 - ratio)


def _match_sizes(logits, labels, upsample_logits: bool):
    if labels.shape.rank == 3:
        labels = labels[..., tf.newaxis]
    logits_hw = tf.shape(logits)[1:3]
    labels_hw = tf.shape(labels)[1:3]
    static_same = (
        logits.shape[1:3].is_fully_defined()
        and labels.shape[1:3].is_fully_defined()
        and logits.shape[1:3] == labels.shape[1:3]
    )
    if static_same:
        return logits, labels
    if upsample_logits:
        logits = tf.cond(
            tf.reduce_all(tf.equal(logits_hw, labels_hw)),
            lambda: tf.cast(logits, tf.float32),
            lambda: resize_bilinear(logits, labels_hw),
        )
    else:
        labels = tf.cond(
            tf.reduce_all(tf.equal(logits_hw, labels_hw)),
            lambda: labels,
            lambda: resize_labels(labels, logits_hw),
        )
    return logits, labels


def pixel_losses(
    logits: tf.Tensor,
    labels: tf.Tensor,
    *,
    num_classes: int,
    ignore_label: int,
    label_weights: LabelWeights = None,
    upsample_logits: bool = True,
) -> Tuple[tf.Tensor, tf.Tensor]:
    """Weighted per-pixel cross-entropy (flat, float32) and the non-ignored mask (flat)."""
    logits, labels = _match_sizes(logits, labels, upsample_logits)
    labels = tf.reshape(tf.cast(labels, tf.int32), [-1])
    logits = tf.reshape(tf.cast(logits, tf.float32), [-1, num_classes])
    weights = label_weight_mask(labels, ignore_label, num_classes, label_weights)
    keep = tf.cast(tf.not_equal(labels, ignore_label), tf.float32)
    # One-hot of an out-of-range label (the ignore label) is all zeros: loss 0, weight 0.
    onehot = tf.one_hot(labels, num_classes, dtype=tf.float32)
    losses = tf.nn.softmax_cross_entropy_with_logits(labels=tf.stop_gradient(onehot), logits=logits)
    return losses * weights, keep


def cross_entropy_sum_and_count(
    logits: tf.Tensor,
    labels: tf.Tensor,
    *,
    top_k_percent_pixels: float = 1.0,
    hard_example_mining_step: int = 0,
    step=0,
    **pixel_options,
) -> Tuple[tf.Tensor, tf.Tensor]:
    """(sum of counted weighted pixel losses, number of counted pixels), both float32.

    `pixel_options`: `num_classes`, `ignore_label`, `label_weights`, `upsample_logits`, as in
    `pixel_losses`.

    The official loss is `sum / count` (0 when count is 0); see `softmax_cross_entropy`.
    `top_k_percent_pixels` in (0, 1] and `hard_example_mining_step` >= 0 (validated in
    `deeplab.training.TrainConfig`).
    """
    weighted, keep = pixel_losses(logits, labels, **pixel_options)
    if top_k_percent_pixels == 1.0:
        return tf.reduce_sum(weighted), tf.reduce_sum(keep)
    num_pixels = tf.cast(tf.size(weighted), tf.float32)
    fraction = top_k_fraction(step, top_k_percent_pixels, hard_example_mining_step)
    k = tf.cast(fraction * num_pixels, tf.int32)  # truncation, as tf.to_int32
    top, _ = tf.math.top_k(weighted, k=k, sorted=True)
    count = tf.reduce_sum(tf.cast(tf.not_equal(top, 0.0), tf.float32))
    return tf.reduce_sum(top), tf.stop_gradient(count)


def normalize(total: tf.Tensor, count: tf.Tensor) -> tf.Tensor:
    """The official `_div_maybe_zero`: total / max(count, 1e-5), and 0 when count is 0."""
    return tf.cast(count > 0, tf.float32) * (total / tf.maximum(1e-5, count))


def softmax_cross_entropy(logits: tf.Tensor, labels: tf.Tensor, **kwargs) -> tf.Tensor:
    """The official single-device cross-entropy loss (a float32 scalar); keyword arguments
    as `cross_entropy_sum_and_count`."""
    return normalize(*cross_entropy_sum_and_count(logits, labels, **kwargs))


def parse_label_weights(values: Optional[Sequence], num_classes: int) -> LabelWeights:
    """Checks `label_weights` from a flag: None, one float, or one float per class."""
    if values is None or len(values) == 0:
        return None
    weights = [float(v) for v in values]
    if len(weights) == 1:
        return weights[0]
    if len(weights) != num_classes:
        raise ValueError(
            f"--label_weights has {len(weights)} values; it needs one per class "
            f"({num_classes}) or a single value"
        )
    if any(w < 0 for w in weights):
        raise ValueError(f"--label_weights={weights} must be non-negative")
    return weights
