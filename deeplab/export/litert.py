"""LiteRT (TFLite) models of DeepLab: conversion, the named signature, full-integer (int8)
quantization, fitting an image to the fixed input size, and running with ai-edge-litert.

A model from `convert` has one signature, `serving_default`: input `image` uint8
[1, H, W, 3] (pixel values 0..255) -> `semantic_predictions` int32 [1, H, W] and
`semantic_probabilities` [1, H, W, C] (float32; in an int8 model int8 with scale 1/256 and
zero point -128, and the softmax taken on the logits grid before the resize to the input size).
A predictions-only model (`export.py --notflite_probabilities`) has `semantic_predictions`
alone, like the official frozen graph, and skips the softmax and resize of the probabilities.
Every op is a TFLite builtin, so ai-edge-litert's interpreter runs the whole graph through its
default XNNPACK delegate (no Flex ops).

Full-integer quantization (`quantize="int8"`): int8 weights (per channel) and activations,
calibrated on representative images; the input stays the raw uint8 pixels (scale 1, zero
point 0) and no float tensor is left in the graph (`float_tensors` checks it).
"""

from __future__ import annotations

import os
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

SIGNATURE_KEY = "serving_default"
INPUT_NAME = "image"
PREDICTIONS = "semantic_predictions"
PROBABILITIES = "semantic_probabilities"
QUANTIZE_CHOICES = ("int8",)
# The official padding value (mean pixel 127.5) as the nearest uint8.
PAD_VALUE = 128


def _check_quantize(quantize: Optional[str]) -> None:
    if quantize not in (None,) + QUANTIZE_CHOICES:
        raise ValueError(
            f"quantize must be one of {list(QUANTIZE_CHOICES)} or None, got {quantize!r}"
        )


def input_dtype(quantize: Optional[str] = None):
    """The dtype of the traced function's image input: uint8, or float32 (values 0..255) for a
    quantized model, whose converter makes that input uint8 with scale 1."""
    import tensorflow as tf

    _check_quantize(quantize)
    return tf.float32 if quantize else tf.uint8


def _pinned_range(images: Iterable[np.ndarray]):
    """Calibration samples [1, H, W, 3] float32, with one pixel of the first set to 0 and one to
    255 so the calibrated input range is exactly 0..255 (uint8 input scale 1, zero point 0)."""
    for i, image in enumerate(images):
        image = np.array(image, np.float32, copy=True)
        if image.ndim == 3:
            image = image[np.newaxis]
        if i == 0:
            image[0, 0, 0, 0], image[0, 0, 0, 1] = 0.0, 255.0
        yield [image]


def convert(
    concrete_function,
    *,
    quantize: Optional[str] = None,
    representative_images: Optional[Callable[[], Iterable[np.ndarray]]] = None,
    allow_select_tf_ops: bool = False,
) -> bytes:
    """Converts a traced serving function (one image input; the predictions, and the
    probabilities unless predictions-only) to a LiteRT model with the named signature (see the
    module docstring); returns its bytes.

    `quantize="int8"`: full-integer model calibrated on `representative_images()`, a callable
    returning an iterable of float32 or uint8 images [1, H, W, 3] (a few hundred training images);
    the function's input must then be float32 (see `input_dtype`). Raises ValueError when
    calibration images are missing or the graph cannot be fully integer-quantized.
    `allow_select_tf_ops`: fall back to TF (Flex) ops if a builtin is missing (float only; the
    model then needs the Flex delegate, which ai-edge-litert lacks).
    """
    import tensorflow as tf

    _check_quantize(quantize)
    if quantize and representative_images is None:
        raise ValueError(
            f"quantize={quantize!r} needs calibration images (representative_images), e.g. a "
            "few hundred images of the training set"
        )

    def run(select_ops: bool) -> bytes:
        # Without a trackable object the converter freezes the variables into constants (with
        # one it keeps resource variables and takes minutes for a large model).
        converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete_function])
        if quantize:
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.representative_dataset = lambda: _pinned_range(representative_images())
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            converter.inference_input_type = tf.uint8
            converter.inference_output_type = tf.int8
        else:
            ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
            if select_ops:
                ops.append(tf.lite.OpsSet.SELECT_TF_OPS)
            converter.target_spec.supported_ops = ops
        return converter.convert()

    try:
        content = run(False)
    except Exception as err:  # noqa: BLE001 (the converter raises several error types)
        if quantize:
            raise ValueError(
                f"{quantize} conversion failed (calibration, or an op that cannot be fully "
                f"integer-quantized): {err}"
            ) from err
        if not allow_select_tf_ops:
            raise ValueError(f"the model needs ops that are not TFLite builtins: {err}") from err
        content = run(True)
    content = add_signature(content)
    if quantize:
        floats = float_tensors(content)
        if floats:
            raise ValueError(
                "the model cannot be fully integer-quantized: float tensors remain: "
                + ", ".join(floats[:5])
            )
        details = interpreter(content).get_input_details()[0]
        if details["dtype"] != np.uint8 or tuple(details["quantization"]) != (1.0, 0):
            raise ValueError(
                f"the quantized model's input is {details['dtype'].__name__} with scale / zero "
                f"point {details['quantization']}, not raw uint8 pixels (scale 1, zero point 0)"
            )
    return content


def _schema():
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    return schema, flatbuffer_utils


def add_signature(content: bytes) -> bytes:
    """Gives a converted serving model (one uint8/float image input, an int32 predictions output
    and, unless predictions-only, a probabilities output) the signature `serving_default`:
    `image` -> `semantic_predictions`[, `semantic_probabilities`], and names its input and
    output tensors the same."""
    schema, flatbuffer_utils = _schema()
    model = flatbuffer_utils.read_model_from_bytearray(bytearray(content))
    (subgraph,) = model.subgraphs
    (image,) = subgraph.inputs
    outputs = {}
    for index in subgraph.outputs:
        tensor_type = subgraph.tensors[index].type
        name = PREDICTIONS if tensor_type == schema.TensorType.INT32 else PROBABILITIES
        outputs[name] = index
    names = [name for name in (PREDICTIONS, PROBABILITIES) if name in outputs]
    if len(outputs) != len(subgraph.outputs) or PREDICTIONS not in outputs:
        raise ValueError("expected one int32 predictions and at most one probabilities output")

    def tensor_map(name: str, index: int):
        entry = schema.TensorMapT()
        entry.name, entry.tensorIndex = name.encode(), int(index)
        subgraph.tensors[index].name = name.encode()
        return entry

    signature = schema.SignatureDefT()
    signature.signatureKey = SIGNATURE_KEY.encode()
    signature.subgraphIndex = 0
    signature.inputs = [tensor_map(INPUT_NAME, image)]
    signature.outputs = [tensor_map(name, outputs[name]) for name in names]
    model.signatureDefs = [signature]
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def float_tensors(content: bytes) -> List[str]:
    """Names of the float tensors of a model that feed or leave an op (a full-integer model has
    none)."""
    schema, flatbuffer_utils = _schema()
    model = flatbuffer_utils.read_model_from_bytearray(bytearray(content))
    floats = (schema.TensorType.FLOAT32, schema.TensorType.FLOAT16)
    names = []
    for subgraph in model.subgraphs:
        used = set(subgraph.inputs) | set(subgraph.outputs)
        for op in subgraph.operators:
            used.update(int(i) for i in op.inputs if i >= 0)
            used.update(int(i) for i in op.outputs)
        for index in sorted(used):
            tensor = subgraph.tensors[index]
            if tensor.type in floats:
                names.append(tensor.name.decode())
    return names


def interpreter(model, num_threads: Optional[int] = None):
    """An ai-edge-litert Interpreter (XNNPACK delegate on) for a model path or bytes, with
    tensors allocated. num_threads None: the interpreter's default."""
    from ai_edge_litert.interpreter import Interpreter

    if isinstance(model, (bytes, bytearray)):
        result = Interpreter(model_content=bytes(model), num_threads=num_threads)
    else:
        result = Interpreter(model_path=os.fspath(model), num_threads=num_threads)
    result.allocate_tensors()
    return result


def run(model, image) -> Dict[str, np.ndarray]:
    """Runs a model from `convert` (a path, bytes or an `interpreter(...)`) on one uint8 image
    [H, W, 3] or [1, H, W, 3] of its input size; returns its outputs by name, probabilities
    (absent from a predictions-only model) dequantized to float32."""
    runner_source = model if hasattr(model, "get_signature_runner") else interpreter(model)
    runner = runner_source.get_signature_runner(SIGNATURE_KEY)
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise ValueError(f"the LiteRT model takes uint8 images, got {image.dtype}")
    if image.ndim == 3:
        image = image[np.newaxis]
    expected = tuple(runner.get_input_details()[INPUT_NAME]["shape"])
    if image.shape != expected:
        raise ValueError(
            f"the LiteRT model takes images of shape {expected}, got {image.shape}; fit the image "
            "to that size (deeplab.litert.fit_image) or export for that size"
        )
    outputs = runner(**{INPUT_NAME: image})
    if PROBABILITIES not in outputs:
        return {PREDICTIONS: outputs[PREDICTIONS]}
    details = runner.get_output_details()[PROBABILITIES]
    probabilities = outputs[PROBABILITIES]
    if probabilities.dtype != np.float32:
        scale, zero_point = details["quantization"]
        probabilities = (probabilities.astype(np.float32) - zero_point) * scale
    return {PREDICTIONS: outputs[PREDICTIONS], PROBABILITIES: probabilities}


def fit_image(
    image, size: Sequence[int], pad_value: int = PAD_VALUE
) -> Tuple[np.ndarray, Tuple[int, int]]:
    """Fits a uint8 image [h, w, 3] into a fixed model input [H, W, 3]: an image larger than
    the input is first shrunk (bilinear, aspect ratio kept), then padded bottom-right with the
    mean pixel. Returns the input and the (height, width) of the image inside it; the model's
    predictions for the image are `predictions[:height, :width]`."""
    from PIL import Image

    image = np.asarray(image, np.uint8)
    height, width = (int(s) for s in size)
    scale = min(1.0, height / image.shape[0], width / image.shape[1])
    if scale < 1.0:
        new_size = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
        image = np.asarray(Image.fromarray(image).resize(new_size, Image.BILINEAR))
    fitted = np.full((height, width, 3), pad_value, np.uint8)
    fitted[: image.shape[0], : image.shape[1]] = image
    return fitted, (image.shape[0], image.shape[1])


def calibration_images(
    dataset: str,
    dataset_dir: str,
    size: Sequence[int],
    count: int,
    *,
    split: str = "train",
    seed: int = 0,
) -> Callable[[], Iterable[np.ndarray]]:
    """`count` images of a dataset split for calibration, as float32 [1, H, W, 3] of the model's
    input size: random crops at scale 1 (padded with the mean pixel), shuffled, as the training
    pipeline makes them. Returns a callable (the converter may iterate more than once)."""
    from deeplab.data import pipeline
    from deeplab.data.config import DataConfig

    if count < 1:
        raise ValueError(f"the calibration image count must be positive, got {count}")

    def images():
        data = pipeline.build_dataset(
            DataConfig(
                dataset,
                dataset_dir,
                split,
                crop_size=tuple(int(s) for s in size),
                batch_size=1,
                is_training=True,
                seed=seed,
                deterministic=True,
            )
        )
        for example in data.take(count):
            yield example["image"].numpy()

    return images


def delegation(model_interpreter) -> Dict[str, object]:
    """How much of a model a delegate (XNNPACK) runs: the op count, the delegated op count and
    the ops left to the interpreter's own kernels. The delegated ops are those that the
    delegate's outputs are computed from, back to its inputs."""
    details = model_interpreter._get_ops_details()
    ops = {op["index"]: op for op in details if op["op_name"] != "DELEGATE"}
    delegates = [op for op in details if op["op_name"] == "DELEGATE"]
    producer = {int(t): index for index, op in ops.items() for t in op["outputs"]}
    inside = set()
    for delegate in delegates:
        boundary = {int(t) for t in delegate["inputs"]}
        stack = [producer[int(t)] for t in delegate["outputs"] if int(t) in producer]
        while stack:
            index = stack.pop()
            if index in inside:
                continue
            inside.add(index)
            for t in ops[index]["inputs"]:
                if int(t) not in boundary and int(t) in producer:
                    stack.append(producer[int(t)])
    return {
        "ops": len(ops),
        "delegated_ops": len(inside),
        "not_delegated": sorted(op["op_name"] for index, op in ops.items() if index not in inside),
    }
