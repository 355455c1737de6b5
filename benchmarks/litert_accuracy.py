"""int8 vs float32 LiteRT models of a trained run on a validation split: argmax agreement and
mIoU of each, from the same export path a user takes.

    python -m benchmarks.litert_accuracy '{"run_dir": "runs/demo", "dataset_dir": "data/synthetic"}'

Defaults: the README demo (MobileNetV2 on the synthetic set; its val images are at most 224
pixels a side, so a 225x225 input holds every one unresized). Both models are written by
`deeplab.export_lib.tflite_from_model`, int8 calibrated on `num_calibration_images` training
images; every val image is fitted to the input with `deeplab.litert.fit_image`, and only the
pixels of the image count. Also reports the float32 LiteRT model's agreement with the Keras
model (TensorFlow) on the same inputs.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Dict, Sequence

from benchmarks.memory import emit


def run(
    run_dir: str = "runs/demo",
    dataset: str = "synthetic",
    dataset_dir: str = "data/synthetic",
    split: str = "val",
    input_size: Sequence[int] = (225, 225),
    num_calibration_images: int = 300,
    max_images: int = 0,
) -> Dict[str, object]:
    import numpy as np
    import tensorflow as tf

    from deeplab.checkpoints import run_options
    from deeplab.data import descriptors, pipeline
    from deeplab.data.config import DataConfig
    from deeplab.evaluation import metrics
    from deeplab.export import litert
    from deeplab.export import saved_model as export_lib
    from deeplab.modeling import inference
    from deeplab.modeling.options import ModelOptions

    if not os.path.isdir(run_dir) or not os.path.isdir(dataset_dir):
        raise FileNotFoundError(
            f"needs a trained run ({run_dir}) and its dataset ({dataset_dir}): run the README "
            "quickstart first"
        )
    fields, _ = run_options.saved_run_info(run_dir)
    options = inference.inference_options(ModelOptions(**fields))
    model, _ = inference.build_inference_model(options, run_dir)
    info = descriptors.get_dataset_info(dataset)
    num_classes = options.num_classes
    size = tuple(int(s) for s in input_size)
    stride = inference.logits_output_stride(options)
    start = time.perf_counter()
    float_model = export_lib.tflite_from_model(
        model, num_classes, size, logits_output_stride=stride
    )
    float_s = time.perf_counter() - start
    start = time.perf_counter()
    calibration = litert.calibration_images(dataset, dataset_dir, size, num_calibration_images)
    int8_model = export_lib.tflite_from_model(
        model,
        num_classes,
        size,
        quantize="int8",
        representative_images=calibration,
        logits_output_stride=stride,
    )
    int8_s = time.perf_counter() - start
    runners = {"float32": litert.interpreter(float_model), "int8": litert.interpreter(int8_model)}
    keras_fn = tf.function(
        lambda x: tf.argmax(
            inference.predict_probabilities(model, x, logits_output_stride=stride), axis=-1
        )
    )
    data = pipeline.build_dataset(
        DataConfig(dataset, dataset_dir, split, crop_size=size, batch_size=1, is_training=False)
    )
    confusion = {name: np.zeros((num_classes, num_classes), np.int64) for name in runners}
    agree = {"int8_vs_float32": 0, "float32_vs_keras": 0}
    pixels = images = 0
    for example in data:
        if max_images and images >= max_images:
            break
        height, width = int(example["height"][0]), int(example["width"][0])
        image = example["image"][0, :height, :width].numpy().round().astype(np.uint8)
        label = example["label"][0, :height, :width, 0].numpy()
        fitted, (h, w) = litert.fit_image(image, size)
        if (h, w) != (height, width):
            raise ValueError(f"val image {height}x{width} does not fit the input {size}")
        predictions = {
            name: litert.run(runner, fitted)[litert.PREDICTIONS][0, :h, :w]
            for name, runner in runners.items()
        }
        keras = keras_fn(tf.constant(fitted[np.newaxis], tf.float32)).numpy()[0, :h, :w]
        agree["int8_vs_float32"] += int(np.sum(predictions["int8"] == predictions["float32"]))
        agree["float32_vs_keras"] += int(np.sum(predictions["float32"] == keras))
        pixels += h * w
        images += 1
        valid = label != info.ignore_label
        for name, prediction in predictions.items():
            confusion[name] += np.bincount(
                label[valid].astype(np.int64) * num_classes + prediction[valid],
                minlength=num_classes * num_classes,
            ).reshape(num_classes, num_classes)
    miou = {name: metrics.iou_from_confusion_matrix(cm)["miou"] for name, cm in confusion.items()}
    return {
        "run_dir": run_dir,
        "variant": options.model_variant,
        "input_size": list(size),
        "split": split,
        "images": images,
        "num_calibration_images": num_calibration_images,
        "argmax_agreement_int8_vs_float32": agree["int8_vs_float32"] / pixels,
        "argmax_agreement_float32_vs_keras": agree["float32_vs_keras"] / pixels,
        "miou_float32": miou["float32"],
        "miou_int8": miou["int8"],
        "miou_drop_points": 100.0 * (miou["float32"] - miou["int8"]),
        "float32_convert_s": float_s,
        "int8_convert_s": int8_s,
        "float32_mb": len(float_model) / 1e6,
        "int8_mb": len(int8_model) / 1e6,
    }


if __name__ == "__main__":
    emit(run(**(json.loads(sys.argv[1]) if len(sys.argv) > 1 else {})))
