"""A/B: the filter gradient of every 1x1 conv as one matmul instead of Conv2DBackpropFilter.

    python -m benchmarks.pointwise_filter_grad '{"crop": 321, "rounds": 4}'

Builds xception_65 OS 16 once and traces two gradient functions of the official loss on it:
A as the model is, B with each 1x1 stride-1 conv's filter gradient computed as
reshape(x)^T @ reshape(dy) (a `tf.custom_gradient`; forward and input gradient unchanged). The
two are timed interleaved (ABBA...) in one process, by wall and process CPU time, so a busy
machine slows both alike. Prints the gradients' largest relative difference (dropout masks made
equal) and the A/B time ratios. The rewrite is not part of the library: on the 2-core machine it
saved about 5% of CPU time per step at crop 321 (README, Benchmarks).
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from typing import Dict


def run(crop: int = 321, batch: int = 4, rounds: int = 4) -> Dict[str, object]:
    import keras
    import tensorflow as tf

    from benchmarks.inference import model_options
    from deeplab.model import build_deeplab_from_options

    rewrite = {"on": False}

    @tf.custom_gradient
    def pointwise(x, kernel):
        def grad(dy):
            dx = tf.nn.conv2d_transpose(dy, kernel, tf.shape(x), 1, "SAME")
            cin, cout = kernel.shape[2], kernel.shape[3]
            dk = tf.matmul(tf.reshape(x, [-1, cin]), tf.reshape(dy, [-1, cout]), transpose_a=True)
            return dx, tf.reshape(dk, kernel.shape)

        return tf.nn.conv2d(x, kernel, 1, "SAME"), grad

    original = keras.layers.Conv2D.convolution_op

    def convolution_op(layer, inputs, kernel):
        one_by_one = tuple(layer.kernel_size) == (1, 1) and tuple(layer.strides) == (1, 1)
        if rewrite["on"] and one_by_one and tuple(layer.dilation_rate) == (1, 1):
            return pointwise(inputs, kernel)
        return original(layer, inputs, kernel)

    keras.layers.Conv2D.convolution_op = convolution_op
    try:
        options = model_options(
            "xception_65", 16, num_classes=21, crop_size=(crop, crop), fine_tune_batch_norm=True
        )
        model = build_deeplab_from_options(options, input_size=(crop, crop))
        images = tf.random.stateless_uniform([batch, crop, crop, 3], (3, 4), 0.0, 255.0)
        labels = tf.random.stateless_uniform([batch, crop, crop], (5, 6), 0, 21, dtype=tf.int32)
        state = [v.numpy() for v in model.non_trainable_variables]  # dropout seed, BN stats

        def gradients():
            for variable, value in zip(model.non_trainable_variables, state):
                variable.assign(value)
            with tf.GradientTape() as tape:
                logits = model(images, training=True)
                ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
                loss = tf.reduce_mean(ce) + tf.add_n(model.losses)
            return tape.gradient(loss, model.trainable_variables)

        functions = {}
        for name, on in (("A", False), ("B", True)):
            rewrite["on"] = on
            functions[name] = tf.function(gradients)
            functions[name].get_concrete_function()  # traced with the switch as set
        rewrite["on"] = False
        grads_a, grads_b = functions["A"](), functions["B"]()
        worst = max(
            float(tf.reduce_max(tf.abs(a - b)) / (tf.reduce_max(tf.abs(a)) + 1e-30))
            for a, b in zip(grads_a, grads_b)
        )
        times = {"A": [], "B": []}
        for r in range(rounds):
            for name in ("A", "B") if r % 2 == 0 else ("B", "A"):
                wall, cpu = time.perf_counter(), time.process_time()
                functions[name]()[0].numpy()
                times[name].append((time.process_time() - cpu, time.perf_counter() - wall))
    finally:
        keras.layers.Conv2D.convolution_op = original
    cpu = {k: statistics.median(t[0] for t in v) for k, v in times.items()}
    wall = {k: statistics.median(t[1] for t in v) for k, v in times.items()}
    return {
        "crop": crop,
        "batch": batch,
        "rounds": rounds,
        "max_relative_gradient_difference": worst,
        "cpu_s_median": cpu,
        "wall_s_median": wall,
        "speedup_cpu": cpu["A"] / cpu["B"],
        "speedup_wall": wall["A"] / wall["B"],
        "times": times,
    }


if __name__ == "__main__":
    print(json.dumps(run(**(json.loads(sys.argv[1]) if len(sys.argv) > 1 else {})), indent=1))
