"""GPU figures without TensorFlow: xception_65 OS 16 training at crop 513 on the JAX backend in
float32 and mixed_bfloat16, and 513x513 inference; images/s, the process's peak device memory,
and the fraction of the same run's dense matmul speed.

    KERAS_BACKEND=jax python -m benchmarks.jax_training          # a machine with JAX, one GPU
    KERAS_BACKEND=jax python -m benchmarks.jax_training --smoke  # anywhere: tiny crop, CPU

Needs keras (and JAX), not TensorFlow. On a GPU machine that has JAX but not Keras, bring the
wheels of keras, namex and optree (Python 3.12, see README "Keras backends"), install them with
`pip install --no-index --no-deps --target /tmp/site *.whl` and put /tmp/site and this checkout
on PYTHONPATH.

The step is the official recipe's on synthetic batches held on the device: softmax
cross-entropy ignoring label 255 (`deeplab.training.losses`) plus the conv weights' L2 (the
model's regularisation losses), gradients by `jax.value_and_grad` of `model.stateless_call`,
the official momentum rule `accum = m * accum + g; w -= lr * accum`, all in one `jax.jit`.
A batch that runs out of memory is halved. A step is counted as 3x the forward Mult-Adds.
The JSON goes to stdout and, when $OUT is set, to $OUT/jax_training.json.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import time
from typing import Dict, List

os.environ.setdefault("KERAS_BACKEND", "jax")

NUM_CLASSES = 21
MOMENTUM = 0.9
LEARNING_RATE = 1e-4


def _timed(fn, steps: int) -> float:
    """Median seconds of `steps` calls of `fn` (one untimed call first: compilation)."""
    import jax

    jax.block_until_ready(fn())
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _peak_gib():
    """The device's peak memory in use so far in this process (GiB): JAX's allocator keeps one
    peak per process, so a later case reports max(its own peak, the earlier cases')."""
    import jax

    stats = jax.devices()[0].memory_stats() or {}
    peak = stats.get("peak_bytes_in_use")
    return None if peak is None else round(peak / 2**30, 2)


def matmul_gflops(dtype: str, n: int) -> float:
    """Dense [n, n] @ [n, n] speed of the device in `dtype` (GFLOP/s)."""
    import jax
    import jax.numpy as jnp

    # Random operands: constant ones or zeros can run faster than real data on a GPU.
    a = jax.random.normal(jax.random.PRNGKey(0), (n, n), jnp.float32).astype(dtype)
    f = jax.jit(lambda x: x @ x)
    return 2.0 * n**3 / _timed(lambda: f(a), 5) / 1e9


def _model(variant: str, precision: str, crop: int):
    import keras

    from benchmarks.inference import model_madds, model_options
    from deeplab.modeling.model import build_deeplab_from_options

    keras.mixed_precision.set_global_policy(precision)
    options = model_options(variant, 16, num_classes=NUM_CLASSES, fine_tune_batch_norm=True)
    model = build_deeplab_from_options(options, input_size=(crop, crop))
    return model, model_madds(model)


def train_step_fn(model):
    """The jitted official training step: (trainable, non_trainable, accumulators, images,
    labels) -> (loss, trainable, non_trainable, accumulators)."""
    import jax

    from deeplab.training import losses

    def loss_fn(trainable, non_trainable, images, labels):
        logits, non_trainable, model_losses = model.stateless_call(
            trainable, non_trainable, images, training=True, return_losses=True
        )
        loss = losses.softmax_cross_entropy(
            logits, labels, num_classes=NUM_CLASSES, ignore_label=255
        )
        return loss + sum(model_losses), non_trainable

    @jax.jit
    def step(trainable, non_trainable, accumulators, images, labels):
        (loss, non_trainable), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            trainable, non_trainable, images, labels
        )
        accumulators = [MOMENTUM * a + g for a, g in zip(accumulators, grads)]
        trainable = [w - LEARNING_RATE * a for w, a in zip(trainable, accumulators)]
        return loss, trainable, non_trainable, accumulators

    return step


def training_case(model, madds: float, crop: int, batch: int, steps: int) -> Dict:
    """Times the training step of `model` (Mult-Adds `madds` per image), halving the batch on
    out-of-memory; the model's own variables are left as they are."""
    import jax
    import jax.numpy as jnp

    step = train_step_fn(model)
    while True:
        try:
            key = jax.random.PRNGKey(0)
            images = jax.random.uniform(key, (batch, crop, crop, 3), maxval=255.0)
            labels = jax.random.randint(key, (batch, crop, crop), 0, NUM_CLASSES)
            state = [
                [v.value for v in model.trainable_variables],
                [v.value for v in model.non_trainable_variables],
                [jnp.zeros_like(v.value) for v in model.trainable_variables],
            ]
            losses_seen: List[float] = []

            def run():
                loss, *state[:] = step(*state, images, labels)
                losses_seen.append(float(loss))
                return loss

            seconds = _timed(run, steps)
            break
        except jax.errors.JaxRuntimeError as err:
            if "RESOURCE_EXHAUSTED" not in str(err) or batch == 1:
                raise
            batch //= 2
    return {
        "batch": batch,
        "crop": crop,
        "images_per_s": batch / seconds,
        "step_s": seconds,
        "gflops": 3 * 2.0 * madds * batch / seconds / 1e9,
        "process_peak_gib": _peak_gib(),
        "loss_first": losses_seen[0],
        "loss_last": losses_seen[-1],
        "finite": all(math.isfinite(v) for v in losses_seen),
    }


def jit_forward(model):
    """The inference pass of `model` (its current weights) as one jitted function of the
    images."""
    import jax

    trainable = [v.value for v in model.trainable_variables]
    non_trainable = [v.value for v in model.non_trainable_variables]
    forward = jax.jit(lambda t, n, x: model.stateless_call(t, n, x, training=False)[0])
    return lambda images: forward(trainable, non_trainable, images)


def inference_case(model, madds: float, crop: int, batch: int, steps: int) -> Dict:
    """Times the jitted forward pass of `model` at `crop`."""
    import jax

    forward = jit_forward(model)
    images = jax.random.uniform(jax.random.PRNGKey(0), (batch, crop, crop, 3), maxval=255.0)
    seconds = _timed(lambda: forward(images), steps)
    return {
        "batch": batch,
        "images_per_s": batch / seconds,
        "gflops": 2.0 * madds * batch / seconds / 1e9,
        "process_peak_gib": _peak_gib(),
    }


def main(argv=None) -> Dict:
    """Runs every case; returns (and prints) the results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny crop, one step, CPU is fine")
    parser.add_argument("--variant", default="xception_65")
    parser.add_argument("--batch", type=int, default=16, help="training batch (halved on OOM)")
    args = parser.parse_args(argv)
    import jax
    import keras

    if keras.backend.backend() != "jax":
        raise SystemExit("benchmarks.jax_training needs KERAS_BACKEND=jax")
    crop, steps, n = (33, 1, 256) if args.smoke else (513, 5, 8192)
    batch = 2 if args.smoke else args.batch
    results = {
        "device": str(jax.devices()[0]),
        "matmul_gflops": {d: matmul_gflops(d, n) for d in ("float32", "bfloat16")},
        "training": {},
        "inference": {},
    }
    for precision in ("float32", "mixed_bfloat16"):
        matmul = results["matmul_gflops"]["float32" if precision == "float32" else "bfloat16"]
        model, madds = _model(args.variant, precision, crop)  # one model for both cases
        case = training_case(model, madds, crop, batch, steps)
        case["fraction_of_matmul"] = case["gflops"] / matmul
        results["training"][precision] = case
        case = inference_case(model, madds, crop, 1, steps)
        case["fraction_of_matmul"] = case["gflops"] / matmul
        results["inference"][precision] = case
    return report(results, "jax_training.json")


def report(results: Dict, filename: str) -> Dict:
    """Prints `results` as JSON and writes it to $OUT/`filename` when $OUT (the device
    machine's output folder) is set."""
    text = json.dumps(results, indent=1)
    print(text)
    if os.environ.get("OUT"):
        with open(os.path.join(os.environ["OUT"], filename), "w") as f:
            f.write(text)
    return results


if __name__ == "__main__":
    main()
