"""MirroredStrategy over two local replicas (two logical CPU devices), with and without XLA.

One training step with the global batch split over two replicas must give the same weights
as one step on one device with the whole batch: the loss is normalised by the global count of
labelled pixels and the gradients are summed across replicas. The check runs in a subprocess
because logical devices must be configured before TensorFlow starts. The model has no
BatchNorm: its statistics are per replica by design, as in the official multi-clone code.
"""

import json
import subprocess
import sys

import pytest

from tests import helpers

# Training in a subprocess with two logical devices.
# One worker runs this module (its module fixtures are built once).
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("mirrored")]


SCRIPT = r"""
import json, sys
import numpy as np
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras
from deeplab.training import LearningRateConfig, Trainer
from tests.helpers import fixed_batches, make_config

logdir = sys.argv[1]


def model_without_batch_norm(options):
    reg = keras.regularizers.L2(options.weight_decay / 2)
    images = keras.Input((None, None, 3))
    x = keras.layers.Rescaling(2 / 255, -1.0)(images)
    x = keras.layers.Conv2D(8, 3, padding="same", kernel_regularizer=reg,
                            name="features.conv1")(x)
    x = keras.layers.ReLU()(x)
    logits = keras.layers.Conv2D(options.num_classes, 1, kernel_regularizer=reg,
                                 name="logits.semantic")(x)
    return keras.Model(images, logits)


out = {}
for mode, jit in (("graph", False), ("xla", True)):
    weights, results = {}, {}
    for name, strategy in (("one_device", tf.distribute.OneDeviceStrategy("/cpu:0")),
                           ("mirrored", tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]))):
        config = make_config(f"{logdir}/{mode}/{name}", steps=3, save_interval_steps=1000,
                             learning_rate=LearningRateConfig(base_learning_rate=0.5,
                                                              training_number_of_steps=3),
                             jit_compile=jit and name == "mirrored")
        trainer = Trainer(config, strategy=strategy, dataset_fn=fixed_batches(num_images=4),
                          model_fn=model_without_batch_norm)
        results[name] = {"replicas": trainer.num_replicas, **trainer.run()}
        weights[name] = [w.numpy() for w in trainer.model.weights]
    diff = max(float(np.max(np.abs(a - b))) for a, b in zip(weights["one_device"],
                                                               weights["mirrored"]))
    scale = max(float(np.max(np.abs(a))) for a in weights["one_device"])
    out[mode] = {"max_abs_diff": diff, "max_abs_weight": scale, **results}
print("RESULT " + json.dumps(out))
"""


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """{"graph" | "xla": the comparison}: both modes in one subprocess."""
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path_factory.mktemp("mirrored"))],
        cwd=helpers.REPO,
        env=helpers.cli_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    lines = [lyr for lyr in proc.stdout.splitlines() if lyr.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(lines[-1][len("RESULT ") :])


@pytest.mark.parametrize("mode", ["graph", "xla"])
def test_two_replicas_match_one_device_with_the_whole_batch(results, mode):
    result = results[mode]
    assert result["one_device"]["replicas"] == 1
    assert result["mirrored"]["replicas"] == 2
    assert result["mirrored"]["step"] == result["one_device"]["step"] == 3
    # The weights moved (a large learning rate), and moved the same way on both.
    assert result["max_abs_weight"] > 0
    assert result["max_abs_diff"] < 1e-4 * max(1.0, result["max_abs_weight"]), result
    assert result["mirrored"]["total_loss"] == pytest.approx(
        result["one_device"]["total_loss"], rel=1e-4
    )
