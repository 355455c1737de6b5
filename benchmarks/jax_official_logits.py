"""The official logits on a JAX device (a GPU) from converted official checkpoints, at JAX's
default matmul/conv precision and at "highest".

    python -m benchmarks.jax_official_logits --prepare DIR   # here, with TensorFlow
    KERAS_BACKEND=jax python -m benchmarks.jax_official_logits DIR  # on the device, no TensorFlow

`--prepare` converts each official-format fixture of tests/fixtures (a TF1 checkpoint of the
official graph, its input and the official graph's logits before upsampling) with the library's
converter into `DIR/NAME.weights.h5` (+ options) and copies the input and the logits beside it.
The device run loads each with `load_keras_model` and reports, per fixture and precision, the
max abs difference to the official logits, the argmax agreement, and the forward time. On
NVIDIA GPUs XLA's default precision runs float32 convolutions and matmuls on TF32 tensor cores
(10-bit mantissa), so "default" measures what a user gets out of the box and "highest" the
float32 result. The JSON goes to stdout and, when $OUT is set, to $OUT/jax_official_logits.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(os.path.dirname(HERE), "tests", "fixtures")
# The layer whose output the official fixture's logits.npy holds (before upsampling; the
# MobileNetV3 recipe's decoder output is the logits: DECODER_LOGITS_LAYER).
RAW_LAYERS = {
    "mobilenet_v2_os8": "logits.semantic",
    "mobilenet_v3_large_seg": "semantic",
    "mobilenet_v3_small_seg": "semantic",
}


def prepare(folder: str) -> None:
    """Converts every official fixture into `folder` (needs TensorFlow)."""
    from deeplab.checkpoints.keras_weights import save_keras_weights
    from deeplab.checkpoints.official import load_official_checkpoint
    from deeplab.modeling.model import build_deeplab_from_options
    from deeplab.modeling.options import ModelOptions

    os.makedirs(folder, exist_ok=True)
    for name in RAW_LAYERS:
        fixture = os.path.join(FIXTURES, name)
        with open(os.path.join(fixture, "flags.json")) as f:
            options = ModelOptions(**json.load(f)["build_deeplab"])
        model = build_deeplab_from_options(options)
        load_official_checkpoint(model, os.path.join(fixture, "model.ckpt"))
        save_keras_weights(model, options, os.path.join(folder, f"{name}.weights.h5"))
        for array in ("input", "logits"):
            shutil.copy(os.path.join(fixture, f"{array}.npy"), f"{folder}/{name}.{array}.npy")


def _forward(model, layer: str):
    """The jitted forward pass of `model` up to `layer`, waited for."""
    import jax
    import keras

    from benchmarks.jax_training import jit_forward

    forward = jit_forward(keras.Model(model.input, model.get_layer(layer).output))
    return lambda images: jax.block_until_ready(forward(images))


def compare(folder: str, precisions=("default", "highest")) -> dict:
    """{name: {precision: {max_abs_diff, argmax_agreement, forward_ms}}} on this JAX device."""
    import jax

    from deeplab.checkpoints.keras_weights import load_keras_model

    results = {"device": str(jax.devices()[0]), "fixtures": {}}
    for name, layer in RAW_LAYERS.items():
        weights = os.path.join(folder, f"{name}.weights.h5")
        model = load_keras_model(weights)
        images = np.load(os.path.join(folder, f"{name}.input.npy")).astype(np.float32)
        official = np.load(os.path.join(folder, f"{name}.logits.npy")).astype(np.float64)
        cases = {"official_abs_max": float(np.abs(official).max())}
        for precision in precisions:
            with jax.default_matmul_precision(precision):
                forward = _forward(model, layer)
                ours = np.asarray(forward(images), np.float64)  # compiles
                start = time.perf_counter()
                for _ in range(10):
                    forward(images)
                seconds = (time.perf_counter() - start) / 10
            cases[precision] = {
                "shape_matches": ours.shape == official.shape,
                "max_abs_diff": float(np.abs(ours - official).max()),
                "argmax_agreement": float(np.mean(ours.argmax(-1) == official.argmax(-1))),
                "forward_ms": round(1000 * seconds, 2),
            }
        results["fixtures"][name] = cases
    return results


def main(argv=None) -> dict:
    """Prepares (with TensorFlow) or compares (on the JAX device)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder")
    parser.add_argument("--prepare", action="store_true", help="convert the fixtures (TF)")
    args = parser.parse_args(argv)
    if args.prepare:
        from deeplab.cli import logs

        logs.install()  # TensorFlow's start-up notices
        prepare(args.folder)
        return {}
    os.environ.setdefault("KERAS_BACKEND", "jax")
    from benchmarks.jax_training import report

    return report(compare(args.folder), "jax_official_logits.json")


if __name__ == "__main__":
    main()
