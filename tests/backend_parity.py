"""The other-backend side of test_backends.py, run in a subprocess under `KERAS_BACKEND`.

    KERAS_BACKEND=jax python -m tests.backend_parity CASES_DIR

Keras picks its backend when it is imported, so a second backend needs its own process; this
one does all the other-backend work of the test file in one start. `CASES_DIR/cases.json`
(written by test_backends.py under TensorFlow) lists models (build_deeplab kwargs, a
`.weights.h5`, an input and TensorFlow's logits), a training-mode forward pass, loss and metric
inputs, and the official fixture folders. The results (max abs differences, agreement, which
modules were imported) go to `CASES_DIR/results.json`; the test file asserts on them.

Models are built, loaded from `.weights.h5` and run before anything reads a TF1 checkpoint, so
`tensorflow_imported_by_model_core` says whether the model core (building, loading Keras weights and
converted checkpoints, inference, a training-mode pass, the loss and the metric) imported TensorFlow.
"""

from __future__ import annotations

import json
import os
import sys
import time

import keras
import numpy as np

from deeplab import build_deeplab, build_deeplab_from_options
from deeplab.checkpoints.keras_weights import load_keras_model
from deeplab.evaluation.metrics import MeanIoUWithIgnore
from deeplab.training import losses


def _max_diff(a, b) -> float:
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


def _numpy_initial_values() -> None:
    """Keras's random initializers draw from numpy zeros here: every weight is loaded from a
    file right after building, and `jax.random` compiles one program per variable shape
    (most of the time of building a model, ~90 s of CPU for the model cases)."""
    import jax.numpy as jnp
    from keras.src.backend.jax import random as jax_random

    def zeros(shape, *args, dtype=None, **kwargs):
        return jnp.asarray(np.zeros(shape, dtype or "float32"))

    for name in ("uniform", "normal", "truncated_normal"):
        setattr(jax_random, name, zeros)


def _jit_forward(model):
    """The model's inference pass as one jitted function of the images (one XLA program instead
    of one dispatch per op: several times cheaper on CPU)."""
    import jax

    trainable = [v.value for v in model.trainable_variables]
    non_trainable = [v.value for v in model.non_trainable_variables]
    forward = jax.jit(lambda t, n, x: model.stateless_call(t, n, x, training=False)[0])
    return lambda images: jax.tree_util.tree_map(
        np.asarray, forward(trainable, non_trainable, images)
    )


def _model(case, folder):
    model = build_deeplab(**case["build_deeplab"])
    model.load_weights(os.path.join(folder, case["weights"]))
    return model


def compare_models(cases, folder):
    """{name: max abs logits difference to TensorFlow} of every model case."""
    diffs = {}
    for case in cases:
        model = _model(case, folder)
        images = np.load(os.path.join(folder, case["input"]))
        logits = _jit_forward(model)(images)
        diffs[case["name"]] = _max_diff(logits, np.load(os.path.join(folder, case["logits"])))
    return diffs


def training_forward(case, folder):
    """Differences of a training-mode pass (batch statistics) up to `case["output_layer"]` (the
    input of the dropout, whose random mask differs between backends) and of the updated moving
    statistics to TensorFlow's."""
    full = _model(case, folder)
    model = keras.Model(full.input, full.get_layer(case["output_layer"]).output)
    images = np.load(os.path.join(folder, case["input"]))
    trainable = [v.value for v in model.trainable_variables]
    non_trainable = [v.value for v in model.non_trainable_variables]
    outputs, updated = model.stateless_call(trainable, non_trainable, images, training=True)
    expected = np.load(os.path.join(folder, case["expected"]))
    names = [v.path for v in model.non_trainable_variables]
    return {
        "outputs": _max_diff(outputs, expected["outputs"]),
        "moving_statistics": max(
            _max_diff(value, expected[name]) for name, value in zip(names, updated)
        ),
    }


def loss_and_metric(spec, folder):
    """Differences of the official loss (plain, top-k, label weights, resized logits) and of
    the mIoU metric to TensorFlow's values."""
    data = np.load(os.path.join(folder, spec["arrays"]))
    out = {}
    for name, options in spec["losses"].items():
        value = losses.softmax_cross_entropy(data["logits"], data["labels"], **options)
        out[f"loss_{name}"] = _max_diff(value, data[f"loss_{name}"])
    metric = MeanIoUWithIgnore(spec["num_classes"], ignore_label=255)
    metric.update_state(data["labels"], data["logits"])
    out["miou"] = _max_diff(metric.result(), data["miou"])
    out["per_class_iou"] = _max_diff(
        np.nan_to_num(np.asarray(metric.per_class_iou()), nan=-1.0),
        np.nan_to_num(data["per_class_iou"], nan=-1.0),
    )
    return out


def converted_checkpoint(spec):
    """A `python -m deeplab.convert` output loaded with its options on this backend: max abs
    difference to the official logits of its checkpoint."""
    model = load_keras_model(spec["weights"])
    raw = keras.Model(model.input, model.get_layer(spec["raw_layer"]).output)
    images = np.load(spec["input"]).astype(np.float32)
    return _max_diff(_jit_forward(raw)(images), np.load(spec["logits"]))


def official_fixtures(fixtures):
    """Official TF1 checkpoints (read with TensorFlow) loaded into the model on this backend:
    (max abs difference, argmax agreement) to the official logits, per fixture and output."""
    from deeplab.checkpoints.official import load_official_checkpoint

    out = {}
    for fixture in fixtures:
        model = build_deeplab(**fixture["build_deeplab"])
        load_official_checkpoint(model, os.path.join(fixture["folder"], "model.ckpt"))
        images = np.load(os.path.join(fixture["folder"], "input.npy")).astype(np.float32)
        raw = keras.Model(model.input, model.get_layer(fixture["raw_layer"]).output)
        both = keras.Model(model.input, [raw.output, model.output])
        outputs = dict(zip(("raw", "upsampled"), _jit_forward(both)(images)))
        for key, (path, every) in fixture["expected"].items():
            ours = outputs[key][:, ::every, ::every, :]
            official = np.load(path)
            out[f"{fixture['name']}/{key}"] = {
                "shape_matches": list(ours.shape) == list(official.shape),
                "max_abs_diff": _max_diff(ours, official),
                "argmax_agreement": float(np.mean(ours.argmax(-1) == official.argmax(-1))),
            }
    return out


def train_step(spec, folder):
    """Two steps of the JAX trainer (a save and a restore between them) from the TensorFlow
    trainer's initial weights and batch: max differences of the weights to TensorFlow's."""
    import jax

    from deeplab.training.jax_trainer import JaxTrainer
    from tests import test_backends as cases

    initial = os.path.join(folder, spec["initial"])
    config = cases.train_step_config(os.path.join(folder, "jax_run"))
    batch = dict(np.load(os.path.join(folder, spec["batch"])))
    batches = [batch, batch]

    def model_fn(options):
        return cases.train_step_model(options, initial)

    trainer = JaxTrainer(config, batches=batches, model_fn=model_fn)
    start = [np.asarray(v.value) for v in trainer.model.trainable_variables]
    trainer.train_steps(batches, 1)
    trainer.save()
    restored = JaxTrainer(config, model_fn=model_fn)
    restored.restore_or_initialize()
    restored_diff = max(
        [_max_diff(a.value, b.value) for a, b in zip(restored.model.weights, trainer.model.weights)]
        + [_max_diff(a, b) for a, b in zip(restored.accumulators, trainer.accumulators)]
        + [abs(restored.step - trainer.step)]
    )
    trainer.train_steps(batches, 1)
    expected = build_deeplab_from_options(config.model_options)
    expected.load_weights(os.path.join(folder, spec["tf_weights"]))
    trainable = zip(trainer.model.trainable_variables, expected.trainable_variables, start)
    diffs = [(_max_diff(a.value, b.value), _max_diff(b.value, s)) for a, b, s in trainable]
    non_trainable = zip(trainer.model.non_trainable_variables, expected.non_trainable_variables)
    return {
        "devices": len(jax.devices()),
        "data_parallel": trainer.distribution is not None,
        "trainable": max(d for d, _ in diffs),
        "max_update": max(u for _, u in diffs),
        "non_trainable": max(
            _max_diff(a.value, b.value) for a, b in non_trainable if "float" in str(a.dtype)
        ),
        "restored": float(restored_diff),
    }


def main(folder: str) -> None:
    with open(os.path.join(folder, "cases.json")) as f:
        spec = json.load(f)
    results = {"backend": keras.backend.backend(), "cpu_seconds": {}}
    _numpy_initial_values()

    def timed(key, fn, *args):
        start = time.process_time()
        results[key] = fn(*args)
        results["cpu_seconds"][key] = round(time.process_time() - start, 1)

    timed("models", compare_models, spec["models"], folder)
    timed("training_forward", training_forward, spec["training_forward"], folder)
    timed("loss_and_metric", loss_and_metric, spec["loss_and_metric"], folder)
    timed("converted_checkpoint", converted_checkpoint, spec["converted_checkpoint"])
    results["tensorflow_imported_by_model_core"] = "tensorflow" in sys.modules
    timed("official_fixtures", official_fixtures, spec["official_fixtures"])
    if "train_step" in spec:
        timed("train_step", train_step, spec["train_step"], folder)
    with open(os.path.join(folder, "results.json"), "w") as f:
        json.dump(results, f, indent=1)


if __name__ == "__main__":
    main(sys.argv[1])
