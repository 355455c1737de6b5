"""Single-scale, multi-scale and flipped prediction, and rebuilding a model for inference.

Multi-scale inference follows the official `predict_labels_multi_scale`:
for every scale s the image batch [N, H, W, 3] is resized (bilinear, align_corners=True) to
`scale_dimension(H, s) x scale_dimension(W, s)` (`int((H - 1) * s + 1)`), the model is run, the
logits are resized back to H x W (bilinear, align_corners=True), softmaxed, and the
probabilities are averaged over the scales and, with `add_flipped_images`, over the
left-right flipped inputs (whose logits are flipped back). The label is the argmax.

With a model built with `upsample_logits=False` and `logits_output_stride` given, the
resizing is bit-for-bit the official one: for scales below 1 the official graph first
resizes the logits to the scale-1 logits grid (`scale_dimension(H, 1 / stride)`) and then to
the image size; we do the same. With a model whose output is already at its input size
(`upsample_logits=True`, the default of `build_deeplab`), the output (at the scaled size) is
resized straight to H x W: identical at scale 1, and for other scales different from the
official graph by interpolation round-off only (two resizes instead of one).

Images of any size work: models rebuilt here use global image pooling (`crop_size=None`),
which equals the official model whenever the input has the crop size the model was
configured with (eval pads every image to `eval_crop_size`, so image pooling covers the
padded crop in both) and generalises to every other size, where the official graph's fixed
pooling window fails (official FAQ Q8). An explicit `image_pooling_crop_size` (the MobileNetV3
recipes: a 769x769 window with stride 4,5 at every eval size) is kept, as officially: inputs
must then be at least that size.

Difference from the official eval: with `eval_scales=(1.0,)` the official `eval.py` silently
ignores `add_flipped_images`; here the flipped image is always used when asked for.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Iterable, Optional, Sequence, Tuple

import tensorflow as tf

from deeplab.checkpoints.official import load_checkpoint, resolve_checkpoint_prefix
from deeplab.modeling.layers import resize_bilinear, resize_labels, scale_dimension
from deeplab.modeling.model import build_deeplab_from_options
from deeplab.modeling.options import ModelOptions


def logits_output_stride(options: ModelOptions) -> int:
    """Stride of the logits grid: the decoder's output stride, else the backbone's."""
    return int(options.decoder_output_stride or options.output_stride)


def _normalize_scales(eval_scales: Optional[Iterable[float]]) -> Tuple[float, ...]:
    scales = tuple(float(s) for s in (eval_scales or (1.0,)))
    if any(s <= 0 for s in scales):
        raise ValueError(f"eval_scales must be positive, got {list(scales)}")
    return scales


def semantic_logits(output):
    """The semantic logits of a model's output (a tensor, or a dict of named outputs)."""
    if isinstance(output, dict):
        return output.get("semantic", next(iter(output.values())))
    return output


def _logits_at_size(model, images, size, scale: float, stride: Optional[int], flip: bool):
    """Runs the model on `images` (already scaled) and returns float32 logits at `size`."""
    if flip:
        images = tf.reverse(images, axis=[2])
    logits = tf.cast(semantic_logits(model(images, training=False)), tf.float32)
    if stride and scale < 1.0:
        # Official multi_scale_logits: logits of a down-scaled image are first brought to the
        # scale-1 logits grid, then (predict_labels_multi_scale) to the image size.
        logits = resize_bilinear(logits, scale_dimension(size, 1.0 / stride))
    if flip:
        logits = tf.reverse(logits, axis=[2])
    if scale == 1.0 and None not in images.shape[1:3] and logits.shape[1:3] == images.shape[1:3]:
        # Already at the image size (a model that upsamples its logits, traced at a static
        # size): an align_corners resize to the same size is the identity, so skip the op.
        return logits
    return resize_bilinear(logits, size)


def _per_scale_logits(
    model,
    images,
    eval_scales: Sequence[float] = (1.0,),
    add_flipped_images: bool = False,
    logits_output_stride: Optional[int] = None,
):
    """Float32 logits [N, H, W, C] at the input size, one per scale (and flip).

    The arguments of every `predict_*` function: `model`, a DeepLab Keras model; `images`,
    float32 (or uint8) [N, H, W, 3], values 0..255; `eval_scales`; `add_flipped_images`;
    `logits_output_stride` (see the module docstring).
    """
    images = tf.convert_to_tensor(images)
    if images.dtype != tf.float32:
        images = tf.cast(images, tf.float32)
    size = tf.shape(images)[1:3]
    stride = logits_output_stride
    outputs = []
    for scale in _normalize_scales(eval_scales):
        scaled = images if scale == 1.0 else resize_bilinear(images, scale_dimension(size, scale))
        outputs.append(_logits_at_size(model, scaled, size, scale, stride, flip=False))
        if add_flipped_images:
            outputs.append(_logits_at_size(model, scaled, size, scale, stride, flip=True))
    return outputs


class ImagePyramidModel:
    """The official `multi_scale_logits` with an image pyramid, callable like the model.

    For each scale s of `image_pyramid` the images are resized (bilinear, align_corners) to
    `scale_dimension(H, s)`, the model (built with upsample_logits=False) gives its logits,
    which are resized to the grid `scale_dimension(H, max(1, max(pyramid)) / stride)`, and the
    logits of all scales are merged by `merge_method` ("max" or "avg").
    """

    def __init__(self, model, image_pyramid, merge_method: str, logits_output_stride: int):
        if merge_method not in ("max", "avg"):
            raise ValueError(f"merge_method must be 'max' or 'avg', got {merge_method!r}")
        self.model = model
        self.image_pyramid = _normalize_scales(image_pyramid)
        self.merge_method = merge_method
        self.logits_output_stride = int(logits_output_stride)

    def __call__(self, images, training=False):
        images = tf.cast(images, tf.float32)
        size = tf.shape(images)[1:3]
        grid = scale_dimension(size, max(1.0, max(self.image_pyramid)) / self.logits_output_stride)
        logits = []
        for scale in self.image_pyramid:
            scaled = (
                images if scale == 1.0 else resize_bilinear(images, scale_dimension(size, scale))
            )
            output = semantic_logits(self.model(scaled, training=training))
            logits.append(resize_bilinear(output, grid))
        if len(logits) == 1:
            return logits[0]
        stacked = tf.stack(logits, axis=4)
        if self.merge_method == "max":
            return tf.reduce_max(stacked, axis=4)
        return tf.reduce_mean(stacked, axis=4)


def _mean_probabilities(logits):
    probabilities = [tf.nn.softmax(x, axis=-1) for x in logits]
    if len(probabilities) == 1:
        return probabilities[0]
    return tf.add_n(probabilities) / float(len(probabilities))


def predict_probabilities(model, images, *args, **kwargs):
    """Class probabilities float32 [N, H, W, C] at the input size (mean over scales / flips).

    Arguments: `model, images, eval_scales=(1.0,), add_flipped_images=False,
    logits_output_stride=None` (see `_per_scale_logits`).
    """
    return _mean_probabilities(_per_scale_logits(model, images, *args, **kwargs))


def predict_logits(model, images, *args, **kwargs):
    """Logits float32 [N, H, W, C] at the input size; arguments as `predict_probabilities`.

    One scale, no flip: the model's logits resized to the input size. Otherwise the log of the
    averaged probabilities, so that softmax of the result is exactly the official averaged
    probability and its argmax the official multi-scale prediction.
    """
    logits = _per_scale_logits(model, images, *args, **kwargs)
    if len(logits) == 1:
        return logits[0]
    return tf.math.log(tf.maximum(_mean_probabilities(logits), 1e-30))


def predict_labels(model, images, *args, prediction_with_upsampled_logits: bool = True, **kwargs):
    """Predicted labels int32 [N, H, W] at the input size (argmax of the averaged probabilities);
    arguments as `predict_probabilities`.

    `prediction_with_upsampled_logits=False` (the official flag; one scale, no flip): argmax at
    the logits resolution, then nearest-neighbor upsampling of the labels (align_corners).
    """
    if prediction_with_upsampled_logits:
        probabilities = predict_probabilities(model, images, *args, **kwargs)
        return tf.argmax(probabilities, axis=-1, output_type=tf.int32)
    return _labels_at_logits_resolution(model, images, *args, **kwargs)


def _labels_at_logits_resolution(
    model, images, eval_scales=(1.0,), add_flipped_images=False, logits_output_stride=None
):
    del logits_output_stride  # the labels are upsampled whatever the logits' stride
    if _normalize_scales(eval_scales) != (1.0,) or add_flipped_images:
        raise ValueError(
            "prediction_with_upsampled_logits=False needs one scale (1.0) and no flipping"
        )
    images = tf.cast(images, tf.float32)
    logits = semantic_logits(model(images, training=False))
    labels = tf.argmax(logits, axis=-1, output_type=tf.int32)
    return resize_labels(labels, tf.shape(images)[1:3])


# ----------------------------------------------------------------------------------------------
# Rebuilding a model for inference from a checkpoint.


def merge_model_options(
    flag_options: ModelOptions, explicit_fields: Iterable[str], saved: Optional[dict]
) -> ModelOptions:
    """Options saved by training, overridden by the fields given explicitly on the command line.

    `flag_options` are the options built from flags (defaults included); `explicit_fields`
    names the ModelOptions fields whose flags were present on the command line. Without saved
    options the flag options are used as they are.
    """
    if not saved:
        return flag_options
    explicit = set(explicit_fields)
    merged = dict(saved)
    for field in dataclasses.fields(ModelOptions):
        if field.name in explicit or field.name not in merged:
            merged[field.name] = getattr(flag_options, field.name)
    return ModelOptions(**merged)


def inference_options(options: ModelOptions, image_pooling_crop_size=None) -> ModelOptions:
    """Options of the model used for inference: the training crop no longer sets the image
    pooling (global pooling), unless an image-pooling crop size is given here or is part of
    the options (`--image_pooling_crop_size`, which the MobileNetV3 recipes pool with at every
    size); logits not upsampled inside the model (the inference functions resize them exactly
    as the official graph does); no weight decay."""
    pooling = options.image_pooling_crop_size
    if image_pooling_crop_size:
        pooling = tuple(image_pooling_crop_size)
    return options.replace(
        crop_size=None, image_pooling_crop_size=pooling, upsample_logits=False, weight_decay=0.0
    )


def build_inference_model(
    options: ModelOptions, checkpoint_path: Optional[str] = None, **load_kwargs
):
    """Builds the model for `options` and loads `checkpoint_path` (ours or an official TF1
    checkpoint) with `deeplab.checkpoints.load_checkpoint`. Returns (model, load report or
    None)."""
    model = build_deeplab_from_options(options)
    report = None
    if checkpoint_path:
        report = load_checkpoint(model, checkpoint_path, **load_kwargs)
    return model, report


def checkpoint_num_classes(checkpoint_path: str) -> Optional[int]:
    """Class count of an official TF1 checkpoint (`logits/semantic/biases`, or the decoder's
    last biases when its decoder output is the logits), else None."""
    try:
        shapes = tf.train.load_checkpoint(
            resolve_checkpoint_prefix(checkpoint_path)
        ).get_variable_to_shape_map()
    except (ValueError, tf.errors.OpError):
        return None
    for name in (
        "logits/semantic/biases",
        "decoder/decoder_conv0/biases",  # decoder_output_is_logits, sum merge
        "decoder/decoder_conv0/decoder_conv0_2/biases",  # decoder_output_is_logits, concat
    ):
        if shapes.get(name):
            return int(shapes[name][0])
    return None


def default_output_dir(checkpoint_path: str, name: str) -> str:
    """`<checkpoint dir>/<name>`: the directory holding a prefix / archive, else the directory
    itself (also one training has not created yet, so nothing lands beside it)."""
    is_file = os.path.isfile(checkpoint_path) or os.path.isfile(checkpoint_path + ".index")
    folder = os.path.dirname(os.path.abspath(checkpoint_path)) if is_file else checkpoint_path
    return os.path.join(folder, name)
