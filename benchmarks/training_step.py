"""Training throughput (images/s) of a plain tf.function training step.

    python -m benchmarks.training_step '{"crop": 321, "batch": 4}'

The step is the official recipe's: xception_65 (OS 16 by default) with BatchNorm fine-tuned,
softmax cross-entropy ignoring label 255 plus the L2 weight decay in `model.losses`, and
train.py's momentum update (0.9, `deeplab.training.optimizers.build_optimizer`). It does not
use train.py's input pipeline, summaries or checkpoints, so it measures the model and update
alone. A step is counted as 3x the forward Mult-Adds (forward, and two matmuls per layer
backward).
precision: float32, mixed_bfloat16 or mixed_float16 (loss scaling for float16).
pointwise_matmul: the 1x1 convs as MatMuls, as the trainer runs them by default
(`deeplab.training.pointwise_matmul`); False keeps the Conv2D ops.
profile_dir: after timing, one more step under the TensorFlow profiler, traced there.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Dict, Optional

from benchmarks import load_average, profile_calls, timed_runs
from benchmarks.memory import emit

IGNORE_LABEL = 255


def run(
    variant: str = "xception_65",
    output_stride: int = 16,
    crop: int = 513,
    batch: int = 4,
    precision: str = "float32",
    jit: bool = False,
    pointwise_matmul: bool = True,
    steps: int = 3,
    warmup: int = 1,
    num_classes: int = 21,
    profile_dir: Optional[str] = None,
) -> Dict[str, object]:
    import keras
    import tensorflow as tf
    from tensorflow.python.util import _pywrap_util_port

    from benchmarks.inference import model_madds, model_options
    from deeplab.modeling.model import build_deeplab_from_options
    from deeplab.training.optimizers import build_optimizer
    from deeplab.training.pointwise_matmul import pointwise_convs_as_matmul

    if precision != "float32":
        keras.mixed_precision.set_global_policy(precision)
    options = model_options(
        variant,
        output_stride,
        num_classes=num_classes,
        crop_size=(crop, crop),
        fine_tune_batch_norm=True,
    )
    model = build_deeplab_from_options(options, input_size=(crop, crop))
    madds = model_madds(model)
    optimizer = build_optimizer(
        "momentum", 1e-4, momentum=0.9, loss_scale=precision == "mixed_float16"
    )
    image_spec = tf.TensorSpec([batch, crop, crop, 3], tf.float32)
    label_spec = tf.TensorSpec([batch, crop, crop, 1], tf.int32)

    @tf.function(input_signature=[image_spec, label_spec], jit_compile=jit)
    def train_step(images, labels):
        with tf.GradientTape() as tape:
            with pointwise_convs_as_matmul(pointwise_matmul):
                logits = tf.cast(model(images, training=True), tf.float32)
            labels_flat = tf.reshape(labels, [-1])
            valid = tf.cast(tf.not_equal(labels_flat, IGNORE_LABEL), tf.float32)
            safe = tf.where(labels_flat == IGNORE_LABEL, 0, labels_flat)
            pixel_loss = tf.nn.sparse_softmax_cross_entropy_with_logits(
                labels=safe, logits=tf.reshape(logits, [-1, num_classes])
            )
            loss = tf.reduce_sum(pixel_loss * valid) / tf.maximum(tf.reduce_sum(valid), 1.0)
            total = loss + tf.add_n(model.losses)
            scaled = optimizer.scale_loss(total) if hasattr(optimizer, "scale_loss") else total
        grads = tape.gradient(scaled, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return total

    images = tf.random.stateless_uniform([batch, crop, crop, 3], (3, 4), 0.0, 255.0)
    labels = tf.random.stateless_uniform(
        [batch, crop, crop, 1], (5, 6), 0, num_classes, dtype=tf.int32
    )
    labels = tf.where(
        tf.random.stateless_uniform(labels.shape, (7, 8)) < 0.05, IGNORE_LABEL, labels
    )
    wall = time.perf_counter()
    loss = float(train_step(images, labels))
    first_s = time.perf_counter() - wall
    load_before = load_average()
    timing = timed_runs(lambda: float(train_step(images, labels)), steps, warmup)
    if profile_dir:
        profile_calls(lambda: float(train_step(images, labels)), profile_dir)
    flops = 3 * 2.0 * madds * batch
    return {
        "variant": variant,
        "output_stride": output_stride,
        "crop": crop,
        "batch": batch,
        "precision": precision,
        "jit": jit,
        "pointwise_matmul": pointwise_matmul,
        "onednn": bool(_pywrap_util_port.IsMklEnabled()),
        "device": "GPU" if tf.config.list_physical_devices("GPU") else "CPU",
        "madds": madds,
        "first_call_s": first_s,
        "first_loss": loss,
        "load_before": load_before,
        "load_after": load_average(),
        **timing,
        "images_per_s": batch / timing["wall_s_median"],
        "images_per_cpu_s": batch / timing["cpu_s_median"],
        "gflops": flops / timing["wall_s_median"] / 1e9,
        "gflops_per_cpu_s": flops / timing["cpu_s_median"] / 1e9,
    }


if __name__ == "__main__":
    emit(run(**(json.loads(sys.argv[1]) if len(sys.argv) > 1 else {})))
