"""Training / evaluation preprocessing, following the official input_preprocess.py.

Order (training): cast -> optional resize to range -> random scale (image
bilinear, label nearest, align_corners) -> pad bottom-right to the crop size
(mean pixel / ignore label) -> random crop -> random left-right flip.
Evaluation: optional resize to range -> pad bottom-right only. An image larger
than the crop is kept whole (padded, never cropped); see pad_to_valid_size.

Randomness: every random draw is a stateless op fed by a [2] int seed, so a
pipeline can give each element its own seed and stay deterministic under
parallel map. Without a seed one is drawn from the global generator.
"""

import tensorflow as tf

PROB_OF_FLIP = 0.5
# Mean pixel of the [-1, 1] input scaling used by Xception / MobileNetV2.
MEAN_PIXEL = (127.5, 127.5, 127.5)
# ImageNet mean, used by the official resnet_v1_{50,101} variants only.
_IMAGENET_MEAN_RGB = (123.15, 115.90, 103.06)


def mean_pixel(model_variant=None):
    """Returns the padding value of a model variant (127.5, or the ImageNet mean
    for resnet_v1_50 / resnet_v1_101, whose inputs are mean-subtracted).

    The official code also returned the ImageNet mean for model_variant=None (a
    backwards-compatibility default it warned about); we pad with 127.5 there,
    the value every model of this project expects.
    """
    if model_variant in ("resnet_v1_50", "resnet_v1_101"):
        return _IMAGENET_MEAN_RGB
    return MEAN_PIXEL


def _image_pad_value(model_variant):
    """Scalar pad value when all channels agree (fast path), else [1, 1, 3]."""
    values = mean_pixel(model_variant)
    if len(set(values)) == 1:
        return values[0]
    return tf.reshape(tf.constant(values, tf.float32), [1, 1, 3])


def _new_seed(seed):
    if seed is None:
        return tf.random.uniform([2], maxval=2**31 - 1, dtype=tf.int32)
    return tf.convert_to_tensor(seed)


def _resize(tensor, size, bilinear, align_corners):
    """Resizes [H, W, C] with the TF1 kernels (align_corners semantics, which
    tf.image.resize lacks). Bilinear returns float32; nearest keeps the dtype."""
    batch = tensor[tf.newaxis]
    if bilinear:
        out = tf.raw_ops.ResizeBilinear(images=batch, size=size, align_corners=align_corners)
    else:
        out = tf.raw_ops.ResizeNearestNeighbor(images=batch, size=size, align_corners=align_corners)
    return out[0]


def get_random_scale(min_scale_factor, max_scale_factor, step_size, seed=None):
    """Draws a random scale factor.

    step_size == 0: uniform in [min, max). Otherwise one of the
    int((max - min) / step_size + 1) evenly spaced values of [min, max], each
    equally likely. min == max returns min.

    Raises:
      ValueError: min_scale_factor < 0 or min_scale_factor > max_scale_factor.
    """
    if min_scale_factor < 0 or min_scale_factor > max_scale_factor:
        raise ValueError(
            f"Unexpected value of min_scale_factor: {min_scale_factor!r} (max {max_scale_factor!r})."
        )
    if min_scale_factor == max_scale_factor:
        return tf.constant(min_scale_factor, tf.float32)
    seed = _new_seed(seed)
    if step_size == 0:
        return tf.random.stateless_uniform(
            [1], seed, minval=min_scale_factor, maxval=max_scale_factor
        )
    num_steps = int((max_scale_factor - min_scale_factor) / step_size + 1)
    scales = tf.linspace(float(min_scale_factor), float(max_scale_factor), num_steps)
    index = tf.random.stateless_uniform([], seed, maxval=num_steps, dtype=tf.int32)
    return tf.cast(scales[index], tf.float32)


def randomly_scale_image_and_label(image, label=None, scale=1.0):
    """Scales image (bilinear) and label (nearest), align_corners=True.

    The new size is int(size * scale) (truncation), as in the official code.
    """
    if isinstance(scale, (int, float)) and scale == 1.0:
        return image, label
    shape = tf.shape(image)
    new_size = tf.cast(tf.cast(shape[:2], tf.float32) * tf.reshape(scale, [-1])[0], tf.int32)
    image = _resize(image, new_size, bilinear=True, align_corners=True)
    if label is not None:
        label = _resize(label, new_size, bilinear=False, align_corners=True)
    return image, label


def resize_to_range(
    image,
    label=None,
    min_size=None,
    max_size=None,
    factor=None,
    align_corners=True,
    keep_aspect_ratio=True,
):
    """Resizes so the short side is min_size unless the long side would pass
    max_size (then the long side is max_size); with ``factor`` both sides are
    rounded up to a multiple of factor plus one (max_size first lowered to such
    a value). ``keep_aspect_ratio=False`` then makes both sides the longer one
    (a square, as the official flag). Image bilinear, label nearest. Returns
    [image, label].
    """
    min_size = tf.cast(min_size, tf.float32)
    if max_size is not None:
        max_size = tf.cast(max_size, tf.float32)
        if factor is not None:
            max_size = max_size + (factor - (max_size - 1) % factor) % factor - factor
    shape = tf.shape(image)
    height = tf.cast(shape[0], tf.float32)
    width = tf.cast(shape[1], tf.float32)
    scale_large = min_size / tf.minimum(height, width)
    large_size = tf.cast(tf.math.ceil(tf.stack([height, width]) * scale_large), tf.int32)
    new_size = large_size
    if max_size is not None:
        scale_small = max_size / tf.maximum(height, width)
        small_size = tf.cast(tf.math.ceil(tf.stack([height, width]) * scale_small), tf.int32)
        new_size = tf.where(
            tf.cast(tf.reduce_max(large_size), tf.float32) > max_size, small_size, large_size
        )
    if factor is not None:
        new_size += (factor - (new_size - 1) % factor) % factor
    if not keep_aspect_ratio:
        new_size = tf.fill([2], tf.reduce_max(new_size))
    image = _resize(image, new_size, bilinear=True, align_corners=align_corners)
    if label is not None:
        label = _resize(label, new_size, bilinear=False, align_corners=align_corners)
    return [image, label]


def pad_to_bounding_box(image, offset_height, offset_width, target_height, target_width, pad_value):
    """Pads a [H, W, C] tensor to the target size with an arbitrary pad value.

    Raises (at run time) InvalidArgumentError when the target is smaller than
    the image plus offsets.
    """
    image = tf.convert_to_tensor(image)
    shape = tf.shape(image)
    after_h = target_height - offset_height - shape[0]
    after_w = target_width - offset_width - shape[1]
    check = tf.debugging.assert_greater_equal(
        tf.minimum(after_h, after_w),
        0,
        message="target size not possible with the given target offsets",
    )
    with tf.control_dependencies([check]):
        paddings = tf.stack([[offset_height, after_h], [offset_width, after_w], [0, 0]])
    pad_value = tf.cast(pad_value, image.dtype)
    # Subtract-pad-add keeps a per-channel pad value exact for any dtype.
    if pad_value.shape.rank and pad_value.shape.num_elements() != 1:
        padded = tf.pad(image - pad_value, paddings) + pad_value
    else:
        padded = tf.pad(image, paddings, constant_values=tf.reshape(pad_value, []))
    return padded


def random_crop(image_list, crop_height, crop_width, seed=None):
    """Crops every tensor of image_list at the same random offset.

    Raises (at run time) InvalidArgumentError when sizes differ or the crop is
    larger than the tensors.
    """
    if not image_list:
        raise ValueError("Empty image_list.")
    seed = _new_seed(seed)
    shape = tf.shape(image_list[0])
    checks = [
        tf.debugging.assert_greater_equal(
            shape[:2], [crop_height, crop_width], message="Crop size greater than the image size."
        )
    ]
    for other in image_list[1:]:
        checks.append(
            tf.debugging.assert_equal(
                tf.shape(other)[:2],
                shape[:2],
                message="Tensors to crop together differ in height/width.",
            )
        )
    seed_h, seed_w = tf.unstack(tf.random.split(seed, 2))
    with tf.control_dependencies(checks):
        offset_h = tf.random.stateless_uniform(
            [], seed_h, maxval=shape[0] - crop_height + 1, dtype=tf.int32
        )
        offset_w = tf.random.stateless_uniform(
            [], seed_w, maxval=shape[1] - crop_width + 1, dtype=tf.int32
        )
    cropped = []
    for tensor in image_list:
        part = tf.slice(tensor, [offset_h, offset_w, 0], [crop_height, crop_width, -1])
        part.set_shape([crop_height, crop_width, tensor.shape[-1]])
        cropped.append(part)
    return cropped


def flip_dim(tensor_list, prob=0.5, dim=1, seed=None):
    """Flips all tensors along ``dim`` together with probability ``prob``.

    Returns the (possibly) flipped tensors followed by the boolean decision.
    """
    seed = _new_seed(seed)
    is_flipped = tf.random.stateless_uniform([], seed) <= prob
    outputs = []
    for tensor in tensor_list:
        if dim < 0 or dim >= tensor.shape.rank:
            raise ValueError("dim must represent a valid dimension.")
        outputs.append(
            tf.cond(is_flipped, lambda t=tensor: tf.reverse(t, [dim]), lambda t=tensor: t)
        )
    return outputs + [is_flipped]


def preprocess_image_and_label(
    image,
    label,
    crop_height,
    crop_width,
    min_resize_value=None,
    max_resize_value=None,
    resize_factor=None,
    min_scale_factor=1.0,
    max_scale_factor=1.0,
    scale_factor_step_size=0,
    ignore_label=255,
    is_training=True,
    model_variant=None,
    seed=None,
    keep_aspect_ratio=True,
):
    """Preprocesses an image and its label as the official input_preprocess.py.

    Args:
      image: [H, W, 3] image (any numeric dtype, values 0..255).
      label: [H, W, 1] integer label, or None (evaluation only).
      crop_height, crop_width: output size in training; minimum padded size in
        evaluation.
      min_resize_value, max_resize_value, resize_factor: optional resize to range.
      min_scale_factor, max_scale_factor, scale_factor_step_size: random scale.
      ignore_label: label value written into padding.
      is_training: augment (scale, crop, flip) when True; pad only when False.
      model_variant: selects the padding mean pixel (see mean_pixel).
      seed: optional [2] int seed for the stateless random draws.
      keep_aspect_ratio: False resizes to a square (see resize_to_range).

    Returns:
      (original_image, processed_image float32, label int32). In evaluation the
      processed size is max(input size, crop size) per side.

    Raises:
      ValueError: label is None while training.
    """
    if is_training and label is None:
        raise ValueError("During training, label must be provided.")
    original_image = image
    processed_image = tf.cast(image, tf.float32)
    if label is not None:
        label = tf.cast(label, tf.int32)
    if min_resize_value or max_resize_value:
        processed_image, label = resize_to_range(
            processed_image,
            label,
            min_size=min_resize_value,
            max_size=max_resize_value,
            factor=resize_factor,
            align_corners=True,
            keep_aspect_ratio=keep_aspect_ratio,
        )
        original_image = tf.identity(processed_image)
    if is_training:
        seed = _new_seed(seed)
        seed_scale, seed_crop, seed_flip = tf.unstack(tf.random.split(seed, 3))
        scale = get_random_scale(
            min_scale_factor, max_scale_factor, scale_factor_step_size, seed=seed_scale
        )
        if not (min_scale_factor == max_scale_factor == 1.0):
            processed_image, label = randomly_scale_image_and_label(processed_image, label, scale)
        processed_image.set_shape([None, None, 3])

    shape = tf.shape(processed_image)
    target_height = tf.maximum(shape[0], crop_height)
    target_width = tf.maximum(shape[1], crop_width)
    pad_pixel = _image_pad_value(model_variant)
    processed_image = pad_to_bounding_box(
        processed_image, 0, 0, target_height, target_width, pad_pixel
    )
    if label is not None:
        label = pad_to_bounding_box(label, 0, 0, target_height, target_width, ignore_label)

    if is_training:
        processed_image, label = random_crop(
            [processed_image, label], crop_height, crop_width, seed=seed_crop
        )
        processed_image, label, _ = flip_dim(
            [processed_image, label], PROB_OF_FLIP, dim=1, seed=seed_flip
        )
        processed_image.set_shape([crop_height, crop_width, 3])
        label.set_shape([crop_height, crop_width, 1])
    return original_image, processed_image, label


def valid_eval_size(size, crop_size, multiple=16):
    """Smallest size >= max(size, crop_size) of the form crop_size + k*multiple.

    With crop sizes of the form n*output_stride + 1 (e.g. 513) the result keeps
    that form, so an oversize image stays a valid network input.
    """
    extra = tf.maximum(size - crop_size, 0)
    return crop_size + (extra + multiple - 1) // multiple * multiple


def pad_to_valid_size(
    image, label, crop_height, crop_width, ignore_label, multiple=16, model_variant=None
):
    """Pads an evaluation image/label bottom-right to valid_eval_size per side."""
    shape = tf.shape(image)
    height = valid_eval_size(shape[0], crop_height, multiple)
    width = valid_eval_size(shape[1], crop_width, multiple)
    pad_pixel = _image_pad_value(model_variant)
    image = pad_to_bounding_box(image, 0, 0, height, width, pad_pixel)
    if label is not None:
        label = pad_to_bounding_box(label, 0, 0, height, width, ignore_label)
    return image, label
