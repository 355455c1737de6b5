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

Written in `keras.ops` for every backend; on TensorFlow the size matching and the top-k keep
TensorFlow's dynamic-shape ops (`tf.cond`, `tf.math.top_k` with a tensor k).
"""

from __future__ import annotations

from typing import Optional, Sequence, Union

from keras import ops

from deeplab.modeling.layers import on_tensorflow, resize_bilinear, resize_labels

LabelWeights = Union[None, float, Sequence[float]]


def label_weight_mask(labels, ignore_label: int, num_classes: int, label_weights=None):
    """Per-pixel weights: 0 at `ignore_label`, else 1 / the class weight.

    `labels` is an integer tensor of any shape. `label_weights` is None or a float (every
    class the same weight) or a sequence of `num_classes` floats (weight of class i).
    """
    not_ignored = ops.cast(ops.not_equal(labels, ignore_label), "float32")
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
    safe_labels = ops.where(labels == ignore_label, ops.zeros_like(labels), labels)
    safe_labels = ops.clip(safe_labels, 0, num_classes - 1)
    return not_ignored * ops.take(ops.convert_to_tensor(weights, "float32"), safe_labels)


def top_k_fraction(step, top_k_percent_pixels: float, hard_example_mining_step: int):
    """The fraction of pixels kept at `step` (official linear ramp from 1.0)."""
    p = ops.convert_to_tensor(float(top_k_percent_pixels), "float32")
    if hard_example_mining_step == 0:
        return p
    ratio = ops.minimum(1.0, ops.cast(step, "float32") / float(hard_example_mining_step))
    return ratio * p + (1.0 - ratio)


def _match_sizes(logits, labels, upsample_logits: bool):
    if len(labels.shape) == 3:
        labels = ops.expand_dims(labels, -1)
    if logits.shape[1:3] == labels.shape[1:3] and None not in logits.shape[1:3]:
        return logits, labels
    if not on_tensorflow():  # traced shapes are static: resize when they differ
        if upsample_logits:
            return resize_bilinear(logits, labels.shape[1:3]), labels
        return logits, resize_labels(labels, logits.shape[1:3])
    import tensorflow as tf

    logits_hw = tf.shape(logits)[1:3]
    labels_hw = tf.shape(labels)[1:3]
    same = tf.reduce_all(tf.equal(logits_hw, labels_hw))
    if upsample_logits:
        logits = tf.cond(
            same, lambda: tf.cast(logits, tf.float32), lambda: resize_bilinear(logits, labels_hw)
        )
    else:
        labels = tf.cond(same, lambda: labels, lambda: resize_labels(labels, logits_hw))
    return logits, labels


def pixel_losses(
    logits,
    labels,
    *,
    num_classes: int,
    ignore_label: int,
    label_weights: LabelWeights = None,
    upsample_logits: bool = True,
):
    """Weighted per-pixel cross-entropy (flat, float32) and the non-ignored mask (flat)."""
    logits, labels = _match_sizes(logits, labels, upsample_logits)
    labels = ops.reshape(ops.cast(labels, "int32"), [-1])
    logits = ops.reshape(ops.cast(logits, "float32"), [-1, num_classes])
    weights = label_weight_mask(labels, ignore_label, num_classes, label_weights)
    keep = ops.cast(ops.not_equal(labels, ignore_label), "float32")
    # One-hot of an out-of-range label (the ignore label) is all zeros: loss 0, weight 0.
    onehot = ops.one_hot(labels, num_classes, dtype="float32")
    losses = ops.categorical_crossentropy(ops.stop_gradient(onehot), logits, from_logits=True)
    return losses * weights, keep


def _sum_of_top_k(values, k):
    """(sum of the k largest values, how many of them are non-zero) of a flat tensor; k may be
    a tensor. TensorFlow's top_k takes a dynamic k; elsewhere the values are sorted and the
    first k kept (the same sum). Among equal values both keep the lower indices, as top_k does
    (a stable ascending sort of the negated values; a flipped ascending sort would keep the
    higher ones): which pixels' gradients count must not depend on the backend, and the pixel
    losses of a young model tie by the thousand."""
    if on_tensorflow():
        import tensorflow as tf

        top, _ = tf.math.top_k(values, k=k, sorted=True)
    else:
        ordered = -ops.sort(-values)
        top = ops.where(ops.arange(ops.shape(values)[0]) < k, ordered, ops.zeros_like(ordered))
    return ops.sum(top), ops.sum(ops.cast(ops.not_equal(top, 0.0), "float32"))


def cross_entropy_sum_and_count(
    logits,
    labels,
    *,
    top_k_percent_pixels: float = 1.0,
    hard_example_mining_step: int = 0,
    step=0,
    **pixel_options,
):
    """(sum of counted weighted pixel losses, number of counted pixels), both float32.

    `pixel_options`: `num_classes`, `ignore_label`, `label_weights`, `upsample_logits`, as in
    `pixel_losses`.

    The official loss is `sum / count` (0 when count is 0); see `softmax_cross_entropy`.
    `top_k_percent_pixels` in (0, 1] and `hard_example_mining_step` >= 0 (validated in
    `deeplab.training.TrainConfig`).
    """
    weighted, keep = pixel_losses(logits, labels, **pixel_options)
    if top_k_percent_pixels == 1.0:
        return ops.sum(weighted), ops.sum(keep)
    num_pixels = ops.cast(ops.size(weighted), "float32")
    fraction = top_k_fraction(step, top_k_percent_pixels, hard_example_mining_step)
    k = ops.cast(fraction * num_pixels, "int32")  # truncation, as tf.to_int32
    total, count = _sum_of_top_k(weighted, k)
    return total, ops.stop_gradient(count)


def normalize(total, count):
    """The official `_div_maybe_zero`: total / max(count, 1e-5), and 0 when count is 0."""
    return ops.cast(count > 0, "float32") * (total / ops.maximum(1e-5, count))


def softmax_cross_entropy(logits, labels, **kwargs):
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
