"""SavedModel and TFLite export of a DeepLab model for serving.

The SavedModel has two signatures:
- `serving_default`: `images` uint8 RGB [N, H, W, 3] (any N, H, W; RGBA [N, H, W, 4] loses its
  alpha channel, gray [N, H, W, 1] is copied to RGB; another channel count or rank fails with
  a message saying so) -> `semantic_predictions` int32 [N, H, W] and
  `semantic_probabilities` float32 [N, H, W, C];
- `serve_encoded`: `encoded_images` string [N] (JPEG / PNG / BMP / GIF bytes; the images of a
  batch may differ in size; RGBA and gray images are converted to RGB; an image of more than
  MAX_ENCODED_PIXELS = 4096 x 4096 pixels is refused, by its header, before decoding) -> the
  same outputs, each image's results in the top-left corner of a batch padded to the largest
  image (predictions -1 and probabilities 0 in the padding), plus `image_sizes` int32 [N, 2]
  (height, width of every image).

Outputs are at the input size. Inference is `deeplab.inference.predict_probabilities`
(optionally multi-scale and flipped, fixed at export time). The model inside uses global image
pooling (no fixed crop), which equals the official graph for inputs of the crop size it was
trained / evaluated at and also works for every other size (the official export failed on
images larger than its crop size, FAQ Q8). Loading the SavedModel needs TensorFlow only.

LiteRT / TFLite (`export_tflite`): the model has a fixed input size (static shapes) and the
signature `serving_default`: `image` uint8 [1, H, W, 3] -> the same two outputs at [1, H, W];
fit an image to that size with `deeplab.litert.fit_image` (or export one per size). It runs
with ai-edge-litert's interpreter (`deeplab.litert.run`); `quantize="int8"` writes a
full-integer model (see deeplab/litert.py).
"""

from __future__ import annotations

import json
import os
from typing import Callable, Dict, Iterable, Optional, Sequence

import tensorflow as tf

from deeplab.export import litert, staging
from deeplab.modeling import inference
from deeplab.modeling.layers import resize_bilinear

# The most pixels (height x width) of an image that `serve_encoded` decodes; its header is read
# first, so a small file of a huge image is refused before it takes memory.
MAX_ENCODED_PIXELS = 4096 * 4096
SERVING_DEFAULT = "serving_default"
SERVE_ENCODED = "serve_encoded"
METADATA_FILENAME = "deeplab_export.json"


def check_rank_4(images):
    """`images` once checked to be rank 4 at run time (an InvalidArgumentError otherwise; a
    signature does not check the rank of what it is given, and some kernels abort the process
    on a rank-3 image). The rank is counted on a masked shape, so that graph optimisations
    cannot fold the check away using the signature's declared rank."""
    shape = tf.shape(images)
    rank = tf.size(tf.boolean_mask(shape, shape >= 0))
    check = tf.debugging.Assert(
        tf.equal(rank, 4), ["images must be uint8 [N, H, W, C] (rank 4), got shape", shape]
    )
    with tf.control_dependencies([check]):
        return tf.identity(images)


def encoded_image_size(encoded):
    """(height, width) int64 of a JPEG, PNG, GIF or BMP read from its header, without decoding
    the pixels; (0, 0) for another format (decoding then reports it)."""
    head = tf.io.decode_raw(
        tf.strings.substr(tf.strings.join([encoded, tf.constant(b"\0" * 32)]), 0, 32), tf.uint8
    )
    head = tf.cast(head, tf.int64)

    def big_endian_32(i):
        return head[i] * 2**24 + head[i + 1] * 2**16 + head[i + 2] * 2**8 + head[i + 3]

    def little_endian(i, count):
        return sum(head[i + k] * 256**k for k in range(count))

    def signed_32(value):
        return tf.abs(tf.where(value >= 2**31, value - 2**32, value))

    def starts_with(magic):
        return tf.equal(tf.strings.substr(encoded, 0, len(magic)), magic)

    def jpeg():
        return tf.cast(tf.io.extract_jpeg_shape(encoded, output_type=tf.int32)[:2], tf.int64)

    return tf.case(
        [
            (starts_with(b"\x89PNG"), lambda: tf.stack([big_endian_32(20), big_endian_32(16)])),
            (starts_with(b"GIF8"), lambda: tf.stack([little_endian(8, 2), little_endian(6, 2)])),
            (
                starts_with(b"BM"),
                lambda: tf.stack([signed_32(little_endian(22, 4)), little_endian(18, 4)]),
            ),
            (starts_with(b"\xff\xd8"), jpeg),
        ],
        default=lambda: tf.zeros([2], tf.int64),
    )


def _decode_checked(encoded, index):
    """The uint8 RGB image of one encoded image, refused (InvalidArgumentError) before decoding
    when its header says it has more than MAX_ENCODED_PIXELS pixels."""
    size = encoded_image_size(encoded)
    check = tf.debugging.Assert(
        size[0] * size[1] <= MAX_ENCODED_PIXELS,
        [
            "encoded_images[",
            index,
            "] is too large to segment:",
            size[0],
            "x",
            size[1],
            f"pixels; the limit is {MAX_ENCODED_PIXELS} pixels (height x width): "
            "downscale it first",
        ],
    )
    with tf.control_dependencies([check]):
        image = tf.io.decode_image(encoded, channels=3, dtype=tf.uint8, expand_animations=False)
    image.set_shape([None, None, 3])
    return image


def to_rgb(images):
    """uint8 [N, H, W, 3] RGB from [N, H, W, C]: 3 channels as they are, 4 (RGBA) without the
    alpha channel (as decoding with channels=3 does), 1 (gray) copied to three; any other
    channel count fails with an InvalidArgumentError saying what is accepted."""
    channels = images.shape[-1]
    if channels == 3:
        return images
    count = tf.shape(images)[-1]
    accepted = tf.reduce_any(tf.equal(count, [1, 3, 4]))
    check = tf.debugging.Assert(
        accepted,
        ["images must have 3 (RGB), 4 (RGBA) or 1 (gray) channels, got", count],
    )
    with tf.control_dependencies([check]):
        rgb = tf.cond(
            tf.equal(count, 1),
            lambda: tf.tile(images[..., :1], [1, 1, 1, 3]),
            lambda: images[..., :3],
        )
    rgb.set_shape(images.shape[:-1].concatenate([3]))
    return rgb


class DeepLabServingModule:
    """A DeepLab Keras model with serving functions.

    `predict(images)` and `predict_encoded(encoded_images)` are `tf.function`s with dynamic input
    signatures; `predict_fixed_size(height, width)` gives a static-shape concrete function (TFLite);
    `saveable()` is the object `tf.saved_model.save` writes.
    """

    def __init__(
        self,
        model,
        num_classes: int,
        *,
        eval_scales: Sequence[float] = (1.0,),
        add_flipped_images: bool = False,
        logits_output_stride: Optional[int] = None,
    ):
        self.model = model
        self.num_classes = int(num_classes)
        self.eval_scales = tuple(float(s) for s in eval_scales) or (1.0,)
        self.add_flipped_images = bool(add_flipped_images)
        self.logits_output_stride = logits_output_stride
        self.predict = tf.function(
            self._predict,
            input_signature=[tf.TensorSpec([None, None, None, None], tf.uint8, name="images")],
        )
        self.predict_encoded = tf.function(
            self._predict_encoded,
            input_signature=[tf.TensorSpec([None], tf.string, name="encoded_images")],
        )

    def saveable(self, encoded_signature: bool = True) -> tf.Module:
        """The SavedModel root: the serving functions and the model's variables in a list.

        The root tracks the TensorFlow variables the traced functions read, not the Keras model
        or Keras variables (as Keras' ExportArchive does): otherwise loaders that restore by the
        graph's variable ops (TF Serving, `saved_model_cli run`, the C++ API) fail with "Could not
        find variable" (keras-team/keras#19274).
        """
        root = tf.Module(name="deeplab_serving")
        # The TensorFlow variables the traced functions read (Keras variables wrap them).
        variables, seen = [], set()
        functions = [self.predict] + ([self.predict_encoded] if encoded_signature else [])
        for function in functions:
            for variable in function.get_concrete_function().variables:
                if id(variable) not in seen:
                    seen.add(id(variable))
                    variables.append(variable)
        root.model_variables = variables
        root.predict = self.predict
        if encoded_signature:
            root.predict_encoded = self.predict_encoded
        return root

    def _outputs(self, images):
        probabilities = inference.predict_probabilities(
            self.model,
            tf.cast(images, tf.float32),
            self.eval_scales,
            self.add_flipped_images,
            self.logits_output_stride,
        )
        probabilities = tf.ensure_shape(probabilities, [None, None, None, self.num_classes])
        return {
            "semantic_predictions": tf.argmax(probabilities, axis=-1, output_type=tf.int32),
            "semantic_probabilities": probabilities,
        }

    def _predict(self, images):
        return self._outputs(to_rgb(check_rank_4(images)))

    def _predict_quantized(self, images):
        """The outputs with the probabilities' softmax taken on the logits grid, then resized to
        the image size (resize and softmax swapped; the predictions are unchanged: the argmax
        of the resized logits). For full-integer models, where a softmax at the image size
        costs a third of the network (an int8 softmax has no XNNPACK kernel). Single scale,
        no flip; otherwise the same as `_predict`."""
        if self.eval_scales != (1.0,) or self.add_flipped_images:
            return self._outputs(images)
        images = tf.cast(images, tf.float32)
        size = tf.shape(images)[1:3]
        logits = tf.cast(self.model(images, training=False), tf.float32)
        resized = resize_bilinear(logits, size)
        probabilities = resize_bilinear(tf.nn.softmax(logits, axis=-1), size)
        return {
            "semantic_predictions": tf.argmax(resized, axis=-1, output_type=tf.int32),
            "semantic_probabilities": tf.ensure_shape(
                probabilities, [None, None, None, self.num_classes]
            ),
        }

    def _predict_encoded(self, encoded_images):
        count = tf.shape(encoded_images)[0]
        predictions = tf.TensorArray(
            tf.int32, size=count, infer_shape=False, element_shape=tf.TensorShape([None, None])
        )
        probabilities = tf.TensorArray(
            tf.float32,
            size=count,
            infer_shape=False,
            element_shape=tf.TensorShape([None, None, self.num_classes]),
        )
        sizes = tf.TensorArray(tf.int32, size=count, element_shape=tf.TensorShape([2]))
        for i in tf.range(count):
            image = _decode_checked(encoded_images[i], i)
            out = self._outputs(image[tf.newaxis])
            predictions = predictions.write(i, out["semantic_predictions"][0])
            probabilities = probabilities.write(i, out["semantic_probabilities"][0])
            sizes = sizes.write(i, tf.shape(image)[:2])
        sizes = sizes.stack()
        max_size = tf.reduce_max(tf.concat([sizes, tf.zeros([1, 2], tf.int32)], axis=0), axis=0)
        padded_predictions = tf.TensorArray(
            tf.int32, size=count, element_shape=tf.TensorShape([None, None])
        )
        padded_probabilities = tf.TensorArray(
            tf.float32, size=count, element_shape=tf.TensorShape([None, None, self.num_classes])
        )
        for i in tf.range(count):
            pad = [[0, max_size[0] - sizes[i][0]], [0, max_size[1] - sizes[i][1]]]
            padded_predictions = padded_predictions.write(
                i, tf.pad(predictions.read(i), pad, constant_values=-1)
            )
            padded_probabilities = padded_probabilities.write(
                i, tf.pad(probabilities.read(i), pad + [[0, 0]])
            )
        empty = tf.equal(count, 0)
        out_predictions = tf.cond(
            empty, lambda: tf.zeros([0, 0, 0], tf.int32), padded_predictions.stack
        )
        out_probabilities = tf.cond(
            empty,
            lambda: tf.zeros([0, 0, 0, self.num_classes], tf.float32),
            padded_probabilities.stack,
        )
        return {
            "semantic_predictions": out_predictions,
            "semantic_probabilities": out_probabilities,
            "image_sizes": tf.reshape(sizes, [-1, 2]),
        }

    def _predict_labels(self, images):
        """`semantic_predictions` alone, as the official frozen graph's only output: those of
        `_predict_quantized` (single scale, no flip: the argmax of the resized logits, with no
        softmax at the image size; the converter drops the unused probabilities branch)."""
        outputs = self._predict_quantized(to_rgb(images))
        return {"semantic_predictions": outputs["semantic_predictions"]}

    def predict_fixed_size(
        self,
        height: int,
        width: int,
        batch_size: int = 1,
        dtype=tf.uint8,
        quantized=False,
        probabilities: bool = True,
    ):
        """A concrete function for a static input shape [batch_size, height, width, 3] named
        `image` (LiteRT); `dtype` float32 takes pixel values 0..255 as floats. `quantized`:
        the outputs of `_predict_quantized` (for a full-integer model). `probabilities=False`:
        `semantic_predictions` only (`_predict_labels`)."""
        if not probabilities:
            function = tf.function(self._predict_labels)
        else:
            function = tf.function(self._predict_quantized if quantized else self._predict)
        return function.get_concrete_function(
            tf.TensorSpec([batch_size, int(height), int(width), 3], dtype, name=litert.INPUT_NAME)
        )


def export_saved_model(
    model,
    export_path: str,
    num_classes: int,
    *,
    eval_scales: Sequence[float] = (1.0,),
    add_flipped_images: bool = False,
    logits_output_stride: Optional[int] = None,
    metadata: Optional[Dict[str, object]] = None,
    encoded_signature: bool = True,
    also: Optional[Callable[[str, "DeepLabServingModule"], None]] = None,
) -> DeepLabServingModule:
    """Writes a SavedModel with the `serving_default` and `serve_encoded` signatures.

    `encoded_signature=False` leaves out `serve_encoded` (faster to export).
    `metadata` (e.g. model options, class names) is stored as
    `<export_path>/assets.extra/deeplab_export.json` next to the export settings and the list
    of the export's files. `also(folder, module)` writes more files into the export (e.g. a
    LiteRT model) before it is complete.
    The export is atomic (`deeplab.export.staging`): written beside `export_path`, then
    swapped in, replacing a previous export whole; a failure leaves the previous one.
    Returns the serving module (its `predict` is what the SavedModel serves).
    """
    module = DeepLabServingModule(
        model,
        num_classes,
        eval_scales=eval_scales,
        add_flipped_images=add_flipped_images,
        logits_output_stride=logits_output_stride,
    )
    signatures = {SERVING_DEFAULT: module.predict.get_concrete_function()}
    if encoded_signature:
        signatures[SERVE_ENCODED] = module.predict_encoded.get_concrete_function()
    info = {
        "signatures": {
            SERVING_DEFAULT: {
                "inputs": {"images": "uint8 [N, H, W, 3] RGB (or 4: RGBA, 1: gray)"},
                "outputs": {
                    "semantic_predictions": "int32 [N, H, W]",
                    "semantic_probabilities": "float32 [N, H, W, C]",
                },
            },
            SERVE_ENCODED: {
                "inputs": {"encoded_images": "string [N]"},
                "outputs": {
                    "semantic_predictions": "int32 [N, Hmax, Wmax]",
                    "semantic_probabilities": "float32 [N, Hmax, Wmax, C]",
                    "image_sizes": "int32 [N, 2]",
                },
            },
        },
        "num_classes": int(num_classes),
        "inference_scales": list(module.eval_scales),
        "add_flipped_images": module.add_flipped_images,
    }
    if not encoded_signature:
        del info["signatures"][SERVE_ENCODED]
    info.update(metadata or {})
    with staging.staged_folder(export_path) as folder:
        tf.saved_model.save(module.saveable(encoded_signature), folder, signatures=signatures)
        if also is not None:
            also(folder, module)
        _write_metadata(folder, info)
    return module


def _write_metadata(folder: str, info: Dict[str, object]) -> None:
    """Writes `assets.extra/deeplab_export.json`: `info` and `files`, every file of the export
    (relative paths, this one included)."""
    relative = os.path.join("assets.extra", METADATA_FILENAME)
    os.makedirs(os.path.join(folder, "assets.extra"), exist_ok=True)
    files = sorted(set(staging.export_files(folder)) | {relative})
    with open(os.path.join(folder, relative), "w") as f:
        json.dump(dict(info, files=files), f, indent=1, default=str)
        f.write("\n")


def export_tflite(
    module: DeepLabServingModule,
    tflite_path: str,
    input_size: Sequence[int],
    *,
    quantize: Optional[str] = None,
    representative_images: Optional[Callable[[], Iterable]] = None,
    allow_select_tf_ops: bool = False,
    probabilities: bool = True,
) -> bytes:
    """Writes the serving function at a fixed input size [1, H, W, 3] as a LiteRT model with the
    `serving_default` signature (`image` -> `semantic_predictions`, `semantic_probabilities`;
    `probabilities=False`: the predictions alone, as the official frozen graph, and faster);
    `quantize="int8"`: full-integer, calibrated on `representative_images()` (see
    `deeplab.litert.convert`). Returns the bytes written to `tflite_path`."""
    content = _tflite_content(
        module,
        input_size,
        quantize=quantize,
        representative_images=representative_images,
        allow_select_tf_ops=allow_select_tf_ops,
        probabilities=probabilities,
    )
    staging.write_file(tflite_path, content)
    return content


def tflite_from_model(
    model,
    num_classes: int,
    input_size: Sequence[int],
    *,
    quantize: Optional[str] = None,
    representative_images: Optional[Callable[[], Iterable]] = None,
    logits_output_stride: Optional[int] = None,
    probabilities: bool = True,
) -> bytes:
    """The LiteRT model (bytes) of a DeepLab Keras model at a fixed input size, as
    `export_tflite` writes it; `quantize="int8"` with `representative_images` for int8;
    `probabilities=False` for the predictions alone."""
    module = DeepLabServingModule(model, num_classes, logits_output_stride=logits_output_stride)
    return _tflite_content(
        module,
        input_size,
        quantize=quantize,
        representative_images=representative_images,
        probabilities=probabilities,
    )


def _tflite_content(
    module: DeepLabServingModule,
    input_size: Sequence[int],
    *,
    quantize: Optional[str],
    representative_images: Optional[Callable[[], Iterable]],
    allow_select_tf_ops: bool = False,
    probabilities: bool,
) -> bytes:
    """The LiteRT model (bytes) of the module's serving function at a fixed input size."""
    height, width = (int(s) for s in input_size)
    concrete = module.predict_fixed_size(
        height,
        width,
        dtype=litert.input_dtype(quantize),
        quantized=bool(quantize),
        probabilities=probabilities,
    )
    return litert.convert(
        concrete,
        quantize=quantize,
        representative_images=representative_images,
        allow_select_tf_ops=allow_select_tf_ops,
    )
