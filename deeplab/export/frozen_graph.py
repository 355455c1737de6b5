"""The official export format: a frozen inference graph (`frozen_inference_graph.pb`).

A binary GraphDef with every variable folded into a constant, as the official
`export_model.py` writes it and the official demo notebook loads it with `tf.compat.v1`
(`GraphDef.FromString` + `tf.import_graph_def` + `Session.run`):
- input `ImageTensor:0`: uint8 [1, H, W, 3], any H and W;
- outputs `SemanticPredictions:0`: int32 [1, H, W] and `SemanticProbabilities:0`: float32
  [1, H, W, C], at the input size.

Inference is `deeplab.inference.predict_probabilities` (multi-scale and flipped inputs fixed
at export time), on the model with global image pooling (any input size works; the official
graph pads the image to its crop size instead). With `min_resize_value` the image is first
resized as the official preprocessing does (`resize_to_range`) and the predictions are resized
back to the input size (labels nearest, probabilities bilinear; align_corners=True).
"""

from __future__ import annotations

import os
from typing import Optional

import tensorflow as tf
from tensorflow.python.framework.convert_to_constants import (
    convert_variables_to_constants_v2,
)

from deeplab.modeling import inference
from deeplab.modeling.layers import resize_bilinear, resize_labels

INPUT_NAME = "ImageTensor"
OUTPUT_NAME = "SemanticPredictions"
PROBABILITIES_NAME = "SemanticProbabilities"


def inference_function(
    model,
    settings: Optional[inference.InferenceSettings] = None,
    *,
    min_resize_value: Optional[int] = None,
    max_resize_value: Optional[int] = None,
    resize_factor: Optional[int] = None,
    keep_aspect_ratio: bool = True,
):
    """The concrete function of the frozen graph (variables not yet folded), predicting with
    the inference `settings` (all of them: also the official `image_pyramid`, `merge_method`
    and `prediction_with_upsampled_logits`; see `deeplab.modeling.inference`)."""
    from deeplab.data import preprocess

    settings = settings or inference.InferenceSettings()
    predictor = settings.predictor(model)

    def serve(image):
        size = tf.shape(image)[1:3]
        images = tf.cast(image, tf.float32)
        if min_resize_value or max_resize_value:
            resized, _ = preprocess.resize_to_range(
                images[0],
                None,
                min_resize_value,
                max_resize_value,
                resize_factor,
                keep_aspect_ratio=keep_aspect_ratio,
            )
            images = resized[tf.newaxis]
        if settings.prediction_with_upsampled_logits:
            probabilities = settings.predict_probabilities(model, images)
            predictions = tf.argmax(probabilities, axis=-1, output_type=tf.int32)
        else:  # the official predict_labels: softmax, then bilinear upsampling
            predictions = settings.predict_labels(model, images)
            probabilities = resize_bilinear(
                tf.nn.softmax(predictor(images, training=False), axis=-1), tf.shape(images)[1:3]
            )
        if min_resize_value or max_resize_value:
            predictions = resize_labels(predictions, size)
            probabilities = resize_bilinear(probabilities, size)
        return {
            OUTPUT_NAME: tf.identity(predictions, name=OUTPUT_NAME),
            PROBABILITIES_NAME: tf.identity(probabilities, name=PROBABILITIES_NAME),
        }

    return tf.function(serve).get_concrete_function(
        tf.TensorSpec([1, None, None, 3], tf.uint8, name=INPUT_NAME)
    )


def write_frozen_graph(
    model,
    export_path: str,
    settings: Optional[inference.InferenceSettings] = None,
    *,
    save_inference_graph: bool = False,
    **kwargs,
) -> tf.compat.v1.GraphDef:
    """Writes the frozen inference graph of `model` to `export_path` (a `.pb` file); with
    `save_inference_graph` also the graph before freezing as `inference_graph.pbtxt` next to
    it (the official flag). `settings` and `kwargs` (the resize flags) go to
    `inference_function`. Returns the GraphDef."""
    concrete = inference_function(model, settings, **kwargs)
    graph_def = convert_variables_to_constants_v2(concrete).graph.as_graph_def()
    folder = os.path.dirname(os.path.abspath(export_path))
    tf.io.gfile.makedirs(folder)
    with tf.io.gfile.GFile(export_path, "wb") as f:
        f.write(graph_def.SerializeToString())
    if save_inference_graph:
        tf.io.write_graph(concrete.graph.as_graph_def(), folder, "inference_graph.pbtxt")
    return graph_def


def run_frozen_graph(path: str, image):
    """Runs a frozen inference graph as the official demo does (tf.compat.v1 graph and
    Session) on one uint8 image [H, W, 3]; returns the predictions int32 [H, W]."""
    import numpy as np

    graph = tf.Graph()
    with graph.as_default():
        graph_def = tf.compat.v1.GraphDef()
        with tf.io.gfile.GFile(path, "rb") as f:
            graph_def.ParseFromString(f.read())
        tf.import_graph_def(graph_def, name="")
    with tf.compat.v1.Session(graph=graph) as session:
        predictions = session.run(
            f"{OUTPUT_NAME}:0", feed_dict={f"{INPUT_NAME}:0": [np.asarray(image, np.uint8)]}
        )
    return predictions[0]
