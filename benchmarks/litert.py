"""Inference latency of the exported LiteRT models (ai-edge-litert, XNNPACK) against the
TensorFlow path and the dense matmul, measured interleaved in one process.

    python -m benchmarks.litert '{"variant": "mobilenet_v2", "output_stride": 16, "int8": true}'

One model (random weights, well-conditioned BatchNorms as in benchmarks.inference) at a fixed
input size (513x513) is exported the way `export.py --tflite` does (float32, and with
`int8` full-integer calibrated on synthetic-set images). Then `rounds` times, back to back: the
float32 matmul (TensorFlow, oneDNN), the TensorFlow path (`deeplab.optimize` folded model,
the benchmarks' "after"), the float32 LiteRT model and the int8 one. Medians of each, their
ratios, and each path's fraction of the in-process matmul, so that load from other work on the
machine affects all of them alike. Each timed call follows `settle_calls` untimed calls of the
same path (as when a model serves one image after another): the thread pools of the other
paths, whose workers spin for a while after a call, have gone quiet by then. A LiteRT call
covers the whole exported graph (the model, the resize of the logits to the input size,
softmax and argmax); the TensorFlow path times the model with its logits upsampled to the
input size. `litert_float32_predictions` is the predictions-only float32 model
(`export.py --tflite --notflite_probabilities`: the argmax of the resized logits, the official
frozen graph's only output), without the image-size softmax.

`argmax_agreement` is each float32 LiteRT model's against the Keras model; the int8 model's
agreement with float32 on random weights says nothing (see benchmarks.litert_accuracy).
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from typing import Dict

from benchmarks import load_average, timed_call
from benchmarks.memory import emit


def synthetic_calibration(size, count: int, seed: int = 0):
    """A callable giving `count` synthetic scenes of the input size (float32 [1, H, W, 3])."""
    import numpy as np

    from deeplab.data import synthetic
    from deeplab.export import litert

    def images():
        for i in range(count):
            image, _ = synthetic.generate_example(
                seed, "train", i, min_size=min(size), max_size=min(size)
            )
            yield litert.fit_image(image, size)[0][np.newaxis].astype(np.float32)

    return images


def run(
    variant: str = "mobilenet_v2",
    output_stride: int = 16,
    crop: int = 513,
    threads: int = 2,
    int8: bool = True,
    tensorflow: bool = True,
    rounds: int = 5,
    settle_calls: int = 1,
    matmul_n: int = 2048,
    num_calibration_images: int = 16,
    num_classes: int = 21,
) -> Dict[str, object]:
    import numpy as np
    import tensorflow as tf

    # The same thread count for every path (TensorFlow's matmul and model too).
    tf.config.threading.set_intra_op_parallelism_threads(int(threads))
    from benchmarks.inference import model_madds, model_options
    from deeplab.export import inference_rewrites as optimize
    from deeplab.export import litert
    from deeplab.export import saved_model as export_lib
    from deeplab.modeling import inference
    from deeplab.modeling.batch_norm_statistics import randomize_batch_norms
    from deeplab.modeling.model import build_deeplab_from_options

    options = model_options(variant, output_stride, num_classes=num_classes)
    reference = build_deeplab_from_options(options, input_size=(crop, crop))
    randomize_batch_norms(reference)
    madds = model_madds(reference)
    size = (crop, crop)
    # The export path: the inference model (logits not upsampled inside) with the same weights.
    served = build_deeplab_from_options(inference.inference_options(options))
    served.set_weights(reference.get_weights())
    stride = inference.logits_output_stride(options)
    start = time.perf_counter()
    float_model = export_lib.tflite_from_model(
        served, num_classes, size, logits_output_stride=stride
    )
    convert_s = {"float32": time.perf_counter() - start}
    predictions_model = export_lib.tflite_from_model(
        served, num_classes, size, logits_output_stride=stride, probabilities=False
    )
    paths = {
        "litert_float32": litert.interpreter(float_model, num_threads=threads),
        "litert_float32_predictions": litert.interpreter(predictions_model, num_threads=threads),
    }
    if int8:
        start = time.perf_counter()
        int8_model = export_lib.tflite_from_model(
            served,
            num_classes,
            size,
            quantize="int8",
            representative_images=synthetic_calibration(size, num_calibration_images),
            logits_output_stride=stride,
        )
        convert_s["int8"] = time.perf_counter() - start
        paths["litert_int8"] = litert.interpreter(int8_model, num_threads=threads)
    image = np.random.default_rng(0).integers(0, 256, (1, crop, crop, 3), np.uint8)
    calls = {}
    for name, interpreter in paths.items():
        runner = interpreter.get_signature_runner(litert.SIGNATURE_KEY)
        calls[name] = lambda runner=runner: runner(image=image)
    if tensorflow:
        folded = optimize.optimize_for_inference(reference)
        predict = optimize.inference_function(folded, (1, crop, crop, 3))
        tf_image = tf.constant(image, tf.float32)
        calls["tensorflow"] = lambda: predict(tf_image).numpy()
    a = tf.random.normal([matmul_n, matmul_n])
    b = tf.random.normal([matmul_n, matmul_n])
    matmul = tf.function(lambda x, y: tf.reduce_sum(tf.matmul(x, y)[:1, :1]))
    calls = {"matmul": lambda: matmul(a, b).numpy(), **calls}
    for fn in calls.values():  # warm-up: tracing, XNNPACK weight packing, oneDNN primitives
        fn()
        fn()
    load_before = load_average()
    walls = {name: [] for name in calls}
    cpus = {name: [] for name in calls}
    for _ in range(rounds):
        for name, fn in calls.items():
            # Untimed calls first: each interpreter and TensorFlow has its own thread pool, whose
            # workers spin for a while after a call and would slow the next path's call.
            for _ in range(settle_calls):
                fn()
            wall, cpu = timed_call(fn)
            walls[name].append(wall)
            cpus[name].append(cpu)
    med = {name: statistics.median(v) for name, v in walls.items()}
    cpu_med = {name: statistics.median(v) for name, v in cpus.items()}
    matmul_flops = 2.0 * matmul_n**3
    model_flops = 2.0 * madds
    result: Dict[str, object] = {
        "variant": variant,
        "output_stride": output_stride,
        "crop": crop,
        "batch": 1,
        "threads": threads,
        "madds": madds,
        "rounds": rounds,
        "settle_calls": settle_calls,
        "load_before": load_before,
        "load_after": load_average(),
        "convert_s": convert_s,
        "matmul_gflops_in_process": matmul_flops / med["matmul"] / 1e9,
        "paths": {},
    }
    for name in calls:
        if name == "matmul":
            continue
        result["paths"][name] = {
            "wall_s_median": med[name],
            "wall_s_min": min(walls[name]),
            "cpu_s_median": cpu_med[name],
            "gflops": model_flops / med[name] / 1e9,
            "gflops_per_cpu_s": model_flops / cpu_med[name] / 1e9,
            "fraction_of_in_process_matmul": (model_flops / med[name])
            / (matmul_flops / med["matmul"]),
            "fraction_of_in_process_matmul_per_cpu_s": (model_flops / cpu_med[name])
            / (matmul_flops / cpu_med["matmul"]),
        }
    for name, interpreter in paths.items():
        result["paths"][name]["delegation"] = litert.delegation(interpreter)
    if int8:
        result["int8_speedup_vs_float32"] = med["litert_float32"] / med["litert_int8"]
        result["int8_speedup_vs_float32_cpu"] = cpu_med["litert_float32"] / cpu_med["litert_int8"]
    if tensorflow:
        result["litert_speedup_vs_tensorflow"] = med["tensorflow"] / med["litert_float32"]
        expected = reference(tf_image, training=False).numpy().argmax(-1)
        for name in ("litert_float32", "litert_float32_predictions"):
            got = calls[name]()[litert.PREDICTIONS]
            result["paths"][name]["argmax_agreement"] = float(np.mean(expected == got))
    return result


if __name__ == "__main__":
    emit(run(**(json.loads(sys.argv[1]) if len(sys.argv) > 1 else {})))
