"""The other-backend side of test_backends.py, run in a subprocess under `KERAS_BACKEND`.

    KERAS_BACKEND=jax python -m tests.backend_parity CASES_DIR

Keras picks its backend when it is imported, so a second backend needs its own process; this
one does all the other-backend work of the test file in one start. `CASES_DIR/cases.json`
(written by test_backends.py under TensorFlow) lists models (build_deeplab kwargs, a
`.weights.h5`, an input and TensorFlow's logits), a training-mode forward pass, loss and metric
inputs, the official fixture folders, and the training-step cases (initial weights, a batch,
and the TensorFlow trainer's weights after its steps). The results (max abs differences, agreement, which
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


def _jit_call(model, training=False):
    """The model's pass with its current weights as one jitted function of the images: (outputs,
    updated non-trainable values), as numpy (one XLA program instead of one dispatch per op and
    shape: several times cheaper on CPU)."""
    import jax

    trainable = [v.value for v in model.trainable_variables]
    non_trainable = [v.value for v in model.non_trainable_variables]
    call = jax.jit(lambda t, n, x: model.stateless_call(t, n, x, training=training))
    return lambda images: jax.tree_util.tree_map(np.asarray, call(trainable, non_trainable, images))


def _jit_forward(model):
    """The model's inference pass as one jitted function of the images."""
    call = _jit_call(model)
    return lambda images: call(images)[0]


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
    outputs, updated = _jit_call(model, training=True)(images)
    expected = np.load(os.path.join(folder, case["expected"]))
    names = [v.path for v in model.non_trainable_variables]
    return {
        "outputs": _max_diff(outputs, expected["outputs"]),
        "moving_statistics": max(
            _max_diff(value, expected[name]) for name, value in zip(names, updated)
        ),
    }


def _top_k_gradient(data, options):
    """The gradient of the top-k loss to logits whose pixel losses tie."""
    import jax

    labels = data["ties_labels"]
    loss = lambda x: losses.softmax_cross_entropy(x, labels, **options)  # noqa: E731
    return jax.grad(loss)(data["ties_logits"])


def loss_and_metric(spec, folder):
    """Differences of the official loss (plain, top-k, label weights, resized logits), of the
    top-k loss's gradient over tied pixel losses, and of the mIoU metric to TensorFlow's
    values."""
    data = np.load(os.path.join(folder, spec["arrays"]))
    out = {}
    for name, options in spec["losses"].items():
        value = losses.softmax_cross_entropy(data["logits"], data["labels"], **options)
        out[f"loss_{name}"] = _max_diff(value, data[f"loss_{name}"])
    metric = MeanIoUWithIgnore(spec["num_classes"], ignore_label=255)
    metric.update_state(data["labels"], data["logits"])
    out["top_k_ties_gradient"] = _max_diff(
        _top_k_gradient(data, spec["top_k_ties"]), data["ties_gradient"]
    )
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


def _weights(model, path=None) -> dict:
    """{variable path: float64 value} of `model` (after loading `path` when given)."""
    if path is not None:
        model.load_weights(path)
    return {v.path: np.asarray(v.value, np.float64) for v in model.weights}


def _trainable_update_diffs(model, initial, ours, theirs) -> dict:
    """Max abs difference of the trainable weights, the largest update, and
    ||update_ours - update_theirs|| / ||update_theirs|| over all trainable weights."""
    names = [v.path for v in model.trainable_variables]
    ours_update = np.concatenate([(ours[n] - initial[n]).ravel() for n in names])
    theirs_update = np.concatenate([(theirs[n] - initial[n]).ravel() for n in names])
    return {
        "max_abs": float(np.max(np.abs(ours_update - theirs_update))),
        "max_update": float(np.max(np.abs(theirs_update))),
        "relative_l2": float(
            np.linalg.norm(ours_update - theirs_update) / np.linalg.norm(theirs_update)
        ),
    }


def _non_trainable_diffs(model, initial, ours, theirs) -> dict:
    """Of the float non-trainable weights (BatchNorm moving statistics): max abs difference,
    that relative to the largest value, and ||update_ours - update_theirs|| /
    ||update_theirs||."""
    names = [v.path for v in model.non_trainable_variables if "float" in str(v.dtype)]
    max_abs = max(_max_diff(ours[n], theirs[n]) for n in names)
    scale = max(float(np.max(np.abs(theirs[n]))) for n in names)
    ours_update = np.concatenate([(ours[n] - initial[n]).ravel() for n in names])
    theirs_update = np.concatenate([(theirs[n] - initial[n]).ravel() for n in names])
    theirs_norm = np.linalg.norm(theirs_update)
    return {
        "max_abs": max_abs,
        "max_relative": max_abs / scale,
        "update_relative_l2": float(
            np.linalg.norm(ours_update - theirs_update) / theirs_norm if theirs_norm else 0.0
        ),
    }


def _state_difference(trainer, state) -> float:
    """Largest difference between the trainer's state now and `state` (its `_weights` by name,
    `accumulators` and `step`)."""
    return max(
        [_max_diff(value, state[name]) for name, value in _weights(trainer.model).items()]
        + [_max_diff(a, b) for a, b in zip(trainer.accumulators, state["accumulators"])]
        + [abs(trainer.step - state["step"])]
    )


def _non_finite_step(trainer, batch) -> dict:
    """A step on an image with a NaN: NonFiniteLossError, and nothing of the state changed."""
    from deeplab.training.jax_trainer import NonFiniteLossError

    before = dict(
        _weights(trainer.model), step=trainer.step, accumulators=list(trainer.accumulators)
    )
    image = batch["image"].copy()
    image[0, 0, 0, 0] = np.nan
    try:
        trainer.train_steps([dict(batch, image=image)], 1)
        raised = False
    except NonFiniteLossError:
        raised = True
    return {"raised": raised, "changed": float(_state_difference(trainer, before))}


def _frozen_batch_norm_steps(spec, folder, config, initial, batch, expected) -> dict:
    """Two steps of the JAX trainer with BatchNorm frozen, the trainer's state saved after the
    first, the model and momentum reset to the initial ones and restored from the checkpoint
    before the second: differences to the TensorFlow trainer after each step (its weights
    loaded into `expected`)."""
    from deeplab.training.jax_trainer import JaxTrainer
    from tests import test_backends as cases

    trainer = JaxTrainer(config, model_fn=lambda options: cases.train_step_model(options, initial))
    model = trainer.model
    start = _weights(model)
    trainer.train_steps([batch], 1)
    after_one = _weights(model)
    saved = dict(after_one, step=trainer.step, accumulators=list(trainer.accumulators))
    trainer.save()
    model.load_weights(initial)
    trainer.accumulators = [np.zeros_like(a) for a in trainer.accumulators]
    trainer.step = 0
    trainer.restore_or_initialize()
    restored = _state_difference(trainer, saved)
    trainer.train_steps([batch], 1)
    after_two = _weights(model)
    out = {
        "non_finite": _non_finite_step(trainer, batch),
        "restored": float(restored),
        "data_parallel": trainer.distribution is not None,
        # One XLA program for the three steps (a second would mean the inputs changed layout).
        "compiles": trainer._step_fn._cache_size(),
    }
    for key, ours in (("frozen_1", after_one), ("frozen_2", after_two)):
        theirs = _weights(expected, os.path.join(folder, spec[key]))
        out[key] = _trainable_update_diffs(model, start, ours, theirs)
        out[key]["non_trainable"] = _non_trainable_diffs(model, start, ours, theirs)
    return out


def _fine_tuned_batch_norm_step(spec, folder, config, initial, batch, expected) -> dict:
    """One step of the JAX trainer with BatchNorm fine-tuned: differences to the TensorFlow
    trainer's step, and the TensorFlow step's own noise floor (its update from the perturbed
    images)."""
    from deeplab.training.jax_trainer import JaxTrainer
    from tests import test_backends as cases

    trainer = JaxTrainer(config, model_fn=lambda options: cases.train_step_model(options, initial))
    model = trainer.model
    start = _weights(model)
    trainer.train_steps([batch], 1)
    ours = _weights(model)
    theirs = _weights(expected, os.path.join(folder, spec["fine_tuned"]))
    out = _trainable_update_diffs(model, start, ours, theirs)
    out["non_trainable"] = _non_trainable_diffs(model, start, ours, theirs)
    out["noise"], out["non_trainable_noise"] = [], []
    for key in spec["perturbed"]:
        perturbed = _weights(expected, os.path.join(folder, spec[key]))
        out["noise"].append(_trainable_update_diffs(model, start, perturbed, theirs))
        out["non_trainable_noise"].append(_non_trainable_diffs(model, start, perturbed, theirs))
    return out


def train_step(spec, folder):
    """The JAX trainer's steps (on every JAX device) from the TensorFlow trainer's initial
    weights and batch, against the TensorFlow trainer's: BatchNorm frozen (two steps, a save
    and a restore between them) and fine-tuned (one step, with the noise floor)."""
    import jax

    from tests import test_backends as cases

    initial = os.path.join(folder, spec["initial"])
    batch = dict(np.load(os.path.join(folder, spec["batch"])))
    frozen = cases.train_step_config(os.path.join(folder, "jax_frozen"), False)
    fine_tuned = cases.train_step_config(os.path.join(folder, "jax_fine_tuned"), True)
    # The TensorFlow trainer's weights are read through one model (the same variables in both
    # cases: fine_tune_batch_norm changes the step, not the weights).
    expected = build_deeplab_from_options(frozen.model_options)
    return {
        "devices": len(jax.devices()),
        "frozen": _frozen_batch_norm_steps(spec, folder, frozen, initial, batch, expected),
        "fine_tuned": _fine_tuned_batch_norm_step(
            spec, folder, fine_tuned, initial, batch, expected
        ),
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
    timed("train_step", train_step, spec["train_step"], folder)
    with open(os.path.join(folder, "results.json"), "w") as f:
        json.dump(results, f, indent=1)


if __name__ == "__main__":
    main(sys.argv[1])
