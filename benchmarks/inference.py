"""Inference latency of one image (default 513x513) and its achieved GFLOP/s.

    python -m benchmarks.inference '{"variant": "xception_65", "output_stride": 16,
                                     "precision": "float32", "optimized": true}'

precision: float32, bfloat16 or float16 (the whole network in that dtype; logits float32).
optimized: run `deeplab.optimize.optimize_for_inference` (BatchNorm folded into the convs,
ReLUs fused); false times the Keras model exactly as built ("before").
jit: XLA-compile the tf.function. Weights are random (the speed does not depend on them);
`max_abs_diff` / `argmax_agreement` compare with the unoptimized float32 model on the same
input. profile_dir: after timing, one more call under the TensorFlow profiler, traced there.
"""

from __future__ import annotations

import json
import sys
from typing import Dict, Optional, Tuple

from benchmarks import load_average, profile_calls, timed_runs
from benchmarks.memory import emit

MODEL_CONFIGS = {
    # The model-zoo configurations (train/eval flags of the official recipes).
    ("xception_65", 16): dict(atrous_rates=(6, 12, 18), decoder_output_stride=4),
    ("xception_65", 8): dict(atrous_rates=(12, 24, 36), decoder_output_stride=4),
    ("mobilenet_v2", 16): dict(atrous_rates=None, decoder_output_stride=None),
    ("mobilenet_v2", 8): dict(atrous_rates=None, decoder_output_stride=None),
}


def model_options(variant: str, output_stride: int, **overrides):
    from deeplab.modeling.options import ModelOptions

    config = dict(MODEL_CONFIGS.get((variant, output_stride), {}))
    config.update(overrides)
    return ModelOptions(model_variant=variant, output_stride=output_stride, **config)


def model_madds(model) -> int:
    """Mult-Adds of a model built with a static input size (deeplab.summary's count)."""
    from deeplab.modeling.summary import layer_madds

    return int(sum(layer_madds(layer) for layer in model.layers))


def run(
    variant: str = "xception_65",
    output_stride: int = 16,
    crop: int = 513,
    batch: int = 1,
    precision: str = "float32",
    optimized: bool = True,
    jit: bool = False,
    runs: int = 5,
    warmup: int = 2,
    compare: bool = True,
    threads: Optional[Tuple[int, int]] = None,
    profile_dir: Optional[str] = None,
) -> Dict[str, object]:
    import numpy as np
    import tensorflow as tf
    from tensorflow.python.util import _pywrap_util_port

    if threads:
        tf.config.threading.set_intra_op_parallelism_threads(int(threads[0]))
        tf.config.threading.set_inter_op_parallelism_threads(int(threads[1]))
    from deeplab.export import inference_rewrites as optimize
    from deeplab.modeling.batch_norm_statistics import randomize_batch_norms
    from deeplab.modeling.model import build_deeplab_from_options

    options = model_options(variant, output_stride)
    reference = build_deeplab_from_options(options, input_size=(crop, crop))
    madds = model_madds(reference)
    images = tf.random.stateless_uniform([batch, crop, crop, 3], (1, 2), 0.0, 255.0)
    if compare:
        randomize_batch_norms(reference)
    model = reference
    if optimized or precision != "float32":
        model = optimize.optimize_for_inference(
            reference,
            fold_batch_norm=optimized,
            fuse_activations=optimized,
            dtype=None if precision == "float32" else precision,
        )
    predict = optimize.inference_function(model, images.shape, jit_compile=jit)
    wall = __import__("time").perf_counter()
    logits = predict(images).numpy()
    first_s = __import__("time").perf_counter() - wall
    load_before = load_average()
    timing = timed_runs(lambda: predict(images).numpy(), runs, warmup)
    if profile_dir:
        profile_calls(lambda: predict(images).numpy(), profile_dir)
    result: Dict[str, object] = {
        "variant": variant,
        "output_stride": output_stride,
        "crop": crop,
        "batch": batch,
        "precision": precision,
        "optimized": optimized,
        "jit": jit,
        "onednn": bool(_pywrap_util_port.IsMklEnabled()),
        "device": "GPU" if tf.config.list_physical_devices("GPU") else "CPU",
        "madds": madds,
        "first_call_s": first_s,
        "load_before": load_before,
        "load_after": load_average(),
        **timing,
        "gflops": 2.0 * madds * batch / timing["wall_s_median"] / 1e9,
        "gflops_per_cpu_s": 2.0 * madds * batch / timing["cpu_s_median"] / 1e9,
    }
    if compare and model is not reference:
        expected = optimize.inference_function(reference, images.shape)(images).numpy()
        result["max_abs_diff"] = float(np.max(np.abs(expected - logits)))
        result["max_abs_logit"] = float(np.max(np.abs(expected)))
        result["argmax_agreement"] = float(np.mean(expected.argmax(-1) == logits.argmax(-1)))
    return result


if __name__ == "__main__":
    emit(run(**(json.loads(sys.argv[1]) if len(sys.argv) > 1 else {})))
