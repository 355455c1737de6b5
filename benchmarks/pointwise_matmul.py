"""A/B: training gradients with the 1x1 convs as Conv2D ops, and as MatMuls (the library's
`deeplab.training.pointwise_matmul`, on by default in the trainer).

    python -m benchmarks.pointwise_matmul '{"crop": 321, "rounds": 6}'

Builds xception_65 OS 16 once and traces the gradient of the official loss (cross-entropy plus
the L2 terms) twice: A with every undilated 1x1 conv as Conv2D (gradients Conv2DBackpropInput /
Conv2DBackpropFilter), B under `pointwise_convs_as_matmul` (forward and both gradients as
MatMuls). The two are timed interleaved (ABBA...) in one process, by wall and process CPU
time, so a busy machine slows both alike. Also prints the largest gradient difference
relative to the largest gradient (BatchNorm state reset before each call); a freshly
initialised network with batch statistics amplifies float32 rounding, so a comparison at that
level needs the rounding-noise reference the test uses (tests/test_pointwise_matmul.py).
"""

from __future__ import annotations

import json
import statistics
import sys
from typing import Dict

from benchmarks import timed_call


def run(crop: int = 321, batch: int = 4, rounds: int = 6) -> Dict[str, object]:
    import tensorflow as tf

    from benchmarks.inference import model_options
    from deeplab.modeling.model import build_deeplab_from_options
    from deeplab.training.pointwise_matmul import loss_and_gradients

    options = model_options(
        "xception_65", 16, num_classes=21, crop_size=(crop, crop), fine_tune_batch_norm=True
    )
    model = build_deeplab_from_options(options, input_size=(crop, crop))
    images = tf.random.stateless_uniform([batch, crop, crop, 3], (3, 4), 0.0, 255.0)
    labels = tf.random.stateless_uniform([batch, crop, crop], (5, 6), 0, 21, dtype=tf.int32)
    state = [v.numpy() for v in model.non_trainable_variables]  # BN statistics
    functions = {
        name: tf.function(lambda m=matmul: loss_and_gradients(model, images, labels, state, m)[1])
        for name, matmul in (("A", False), ("B", True))
    }
    grads = {name: [g.numpy() for g in fn()] for name, fn in functions.items()}  # also traces
    scale = max(float(abs(g).max()) for g in grads["A"])
    difference = max(float(abs(a - b).max()) for a, b in zip(grads["A"], grads["B"])) / scale
    times = {"A": [], "B": []}
    for r in range(rounds):
        for name in ("A", "B") if r % 2 == 0 else ("B", "A"):
            # All gradients are outputs, so none of them is pruned from the graph.
            wall, cpu = timed_call(
                lambda: tf.nest.map_structure(lambda t: t.numpy(), functions[name]())
            )
            times[name].append((cpu, wall))
    cpu = {k: statistics.median(t[0] for t in v) for k, v in times.items()}
    wall = {k: statistics.median(t[1] for t in v) for k, v in times.items()}
    return {
        "crop": crop,
        "batch": batch,
        "rounds": rounds,
        "max_gradient_difference_relative_to_largest": difference,
        "cpu_s_median": cpu,
        "wall_s_median": wall,
        "speedup_cpu": cpu["A"] / cpu["B"],
        "speedup_wall": wall["A"] / wall["B"],
        "times": times,
    }


if __name__ == "__main__":
    print(json.dumps(run(**(json.loads(sys.argv[1]) if len(sys.argv) > 1 else {})), indent=1))
