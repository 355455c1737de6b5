"""The model core on JAX: the official fixtures, the same logits as TensorFlow for every model-zoo
variant with the same weights, the loss and the metric, no TensorFlow import, and the JAX
trainer's update equal to the TensorFlow trainer's.

The TensorFlow side (this process) writes models (random weights, BatchNorm statistics set so
that activations stay in range) as `.weights.h5` with their inputs and TensorFlow's outputs;
one JAX subprocess (`tests/backend_parity.py`) computes the same on JAX and writes the
differences, which the tests below check. Skipped when JAX is not installed.
"""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from deeplab import build_deeplab, build_deeplab_from_options
from deeplab.data.config import DataConfig
from deeplab.evaluation.metrics import MeanIoUWithIgnore
from deeplab.modeling.model import DECODER_LOGITS_LAYER
from deeplab.modeling.options import ModelOptions
from deeplab.training import LearningRateConfig, TrainConfig, Trainer, losses
from tests import helpers
from tests.test_mobilenet_v3 import RECIPE

pytest.importorskip("jax")
# Eight models built on both backends, the training steps of both trainers and a JAX process
# start: a few minutes. One worker runs this module (its module fixtures are built once).
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("backends")]

HERE = os.path.dirname(os.path.abspath(__file__))
CROP = 65
NUM_CLASSES = 5
# Same logits on TensorFlow and JAX with the same weights (float32).
PARITY_ATOL = 1e-4
TRAINING_ATOL = 1e-3
# The training-mode pass is compared up to the dropout's input (its mask is backend-random).
TRAINING_OUTPUT_LAYER = "concat_projection.Relu"


def _mobilenet_v3_recipe(variant):
    """The official Cityscapes recipe (squeeze-excite image pooling, sum-merge decoder as the
    logits), with a pooling window that fits the small crop."""
    return dict(
        RECIPE,
        model_variant=variant,
        image_pooling_crop_size=(CROP, CROP),
        decoder_filters=NUM_CLASSES,
    )


# Every model variant, with the heads and options of the model zoo.
MODEL_CASES = {
    "xception_41": dict(model_variant="xception_41"),
    "xception_65_os8_pooling_window": dict(
        model_variant="xception_65",
        output_stride=8,
        atrous_rates=(12, 24, 36),
        crop_size=(CROP, CROP),
        multi_grid=(1, 2, 4),
    ),
    "xception_71_dpc": dict(
        model_variant="xception_71",
        crop_size=(CROP, CROP),
        dense_prediction_cell_json="deeplab/core/dense_prediction_cell_branch5_top1_cityscapes.json",
    ),
    "mobilenet_v2_os8": dict(
        model_variant="mobilenet_v2", output_stride=8, atrous_rates=None, decoder_output_stride=None
    ),
    "mobilenet_v3_large_seg": _mobilenet_v3_recipe("mobilenet_v3_large_seg"),
    "mobilenet_v3_small_seg": _mobilenet_v3_recipe("mobilenet_v3_small_seg"),
    "resnet_v1_50_beta": dict(model_variant="resnet_v1_50_beta", multi_grid=(1, 2, 4)),
    "resnet_v1_101_beta_os8": dict(
        model_variant="resnet_v1_101_beta", output_stride=8, atrous_rates=(12, 24, 36)
    ),
}
# The JAX trainer's steps against the TensorFlow trainer's (same weights, same batch), with every
# official option of the step: label weights, the top-k path, L2 on the conv weights, the
# last-layer gradient multiplier (and the x2 bias multiplier of the logits), the poly rate and
# the TF1 momentum carried over.
TRAIN_STEP_OPTIONS = dict(
    model_variant="mobilenet_v2",
    num_classes=NUM_CLASSES,
    output_stride=16,
    depth_multiplier=0.5,
    crop_size=(CROP, CROP),
    fine_tune_batch_norm=True,
    # Image pooling normalises a 1x1 feature by the variance of a few images: TensorFlow's fused
    # batch norm and the JAX one differ there by rounding that the steps amplify.
    add_image_level_feature=False,
)
TRAIN_STEP_LEARNING_RATE = dict(base_learning_rate=0.02, training_number_of_steps=2)
TRAIN_STEP_BATCH = 2
TRAIN_STEP_CONFIG = dict(
    momentum=0.9,
    last_layer_gradient_multiplier=3.0,
    # The top-k path with every pixel kept at both steps (the fraction 1 - 0.5 / 1e8 is 1.0 in
    # float32): at 87.5% the pixel losses of this young model (nearly constant logits: a few
    # dozen distinct values up to rounding) tie at the cut by the thousand, and which of the
    # near-tied pixels count flips on float32 rounding (2e-5 of the update after two steps).
    # Which pixels top-k keeps, its ramp and its gradient over exact ties are compared in
    # test_loss_and_metric_match_tensorflow_on_jax.
    top_k_percent_pixels=0.5,
    hard_example_mining_step=10**8,
    label_weights=(1.0, 2.0, 0.5, 1.0, 3.0),
    save_interval_steps=1,
    log_steps=1,
)
# BatchNorm frozen: trainable weights of the JAX step within this fraction of the largest update
# of the TensorFlow step (measured: 2.6e-7 after one and after two steps; with top-k at 87.5% in
# the second step, 1.1e-6 to 1.9e-5 after two, and 1e-5 when top-k broke exact ties differently
# on JAX; a wrong multiplier or momentum rule differs by 1e-2 or more).
FROZEN_STEP_RTOL = 1e-5
# BatchNorm fine-tuned: the float32 noise floor of the step is the median relative L2 change of
# the TensorFlow update when the images are multiplied by (1 + each of these) (measured: 1.3% to
# 2.1%, 1.0% to 1.5% with another batch, 0.3% to 2.9% from other random initial weights: one
# perturbation alone is not a stable floor). The JAX update may differ from TensorFlow's by at
# most FINE_TUNED_NOISE_FACTOR times that floor and by at most the cap (measured: 1.0% to 1.4%, 0.7x to 0.8x the floor; 0.7%
# to 2.6% from other initial weights).
TRAIN_STEP_PERTURBATIONS = (1e-6, -1e-6, 2e-6, -2e-6)
FINE_TUNED_NOISE_FACTOR = 3.0
FINE_TUNED_RELATIVE_L2_CAP = 0.08
# The moving statistics' update ((1 - decay) x (batch statistic - moving one)): relative L2
# difference cap (measured: 6e-6, the noise floor 7e-6 to 9e-6; the biased batch variance instead
# of the unbiased one would differ by 2%).
MOVING_STATISTICS_UPDATE_CAP = 1e-4


def train_step_config(logdir, fine_tune_batch_norm=True):
    """The TrainConfig of the training-step equality cases (same on both backends)."""
    options = ModelOptions(**dict(TRAIN_STEP_OPTIONS, fine_tune_batch_norm=fine_tune_batch_norm))
    data = DataConfig(
        "synthetic", None, "train", crop_size=(CROP, CROP), batch_size=TRAIN_STEP_BATCH,
        is_training=True, num_classes=options.num_classes,
    )  # fmt: skip
    return TrainConfig(
        train_logdir=logdir,
        model_options=options,
        data=data,
        learning_rate=LearningRateConfig(**TRAIN_STEP_LEARNING_RATE),
        **TRAIN_STEP_CONFIG,
    )


LOSS_OPTIONS = {
    "plain": dict(num_classes=NUM_CLASSES, ignore_label=255),
    "top_k": dict(
        num_classes=NUM_CLASSES,
        ignore_label=255,
        top_k_percent_pixels=0.25,
        hard_example_mining_step=100,
        step=40,
    ),
    "label_weights": dict(
        num_classes=NUM_CLASSES, ignore_label=255, label_weights=[1.0, 2.0, 0.5, 1.0, 3.0]
    ),
    "labels_resized_to_logits": dict(
        num_classes=NUM_CLASSES, ignore_label=255, upsample_logits=False
    ),
}


def _set_statistics(model, images, rng):
    """gamma and beta away from their initial values, then BatchNorm moving statistics of the
    images' own activations (one training-mode pass at momentum 0), so that activations stay in
    range through deep residual stacks."""
    batch_norms = [layer for layer in model.layers if hasattr(layer, "moving_variance")]
    momenta = [layer.momentum for layer in batch_norms]
    for layer in batch_norms:
        layer.gamma.assign(rng.uniform(0.5, 1.5, layer.gamma.shape).astype(np.float32))
        layer.beta.assign(rng.normal(0.0, 0.1, layer.beta.shape).astype(np.float32))
        layer.momentum = 0.0
    model(images, training=True)
    for layer, momentum in zip(batch_norms, momenta):
        layer.momentum = momentum
        # A floor of 1: normalising small-variance channels (the 1x1 image-pooling feature of
        # one image has variance 0) would amplify float32 rounding layer after layer, and the
        # deep ResNets would then differ by rounding alone.
        layer.moving_variance.assign(np.maximum(layer.moving_variance.numpy(), 1.0))
    _scale_logits(model, images)


def _scale_logits(model, images, target=10.0):
    """Scales the layers that produce the logits (the logits conv, or the decoder's biased convs
    when the decoder output is the logits) so that the largest logit is `target`."""
    scale = target / np.abs(model(images, training=False).numpy()).max()
    for layer in model.layers:
        biased_conv = getattr(layer, "use_bias", False) and hasattr(layer, "kernel")
        if layer.name == "logits.semantic" or (biased_conv and layer.name.startswith("decoder")):
            layer.kernel.assign(layer.kernel.numpy() * scale)
            layer.bias.assign(layer.bias.numpy() * scale)


def _model_case(folder, name, kwargs, rng, batch=1):
    model = build_deeplab(num_classes=NUM_CLASSES, **kwargs)
    # Images of different brightness, so that the batch statistics of pooled features vary.
    brightness = np.linspace(1.0, 0.4, batch)[:, None, None, None]
    images = (rng.uniform(0, 255, (batch, CROP, CROP, 3)) * brightness).astype(np.float32)
    _set_statistics(model, images, rng)
    np.save(os.path.join(folder, f"{name}.input.npy"), images)
    model.save_weights(os.path.join(folder, f"{name}.weights.h5"))
    case = {
        "name": name,
        "build_deeplab": dict(kwargs, num_classes=NUM_CLASSES),
        "weights": f"{name}.weights.h5",
        "input": f"{name}.input.npy",
    }
    return model, images, case


# Top-k mining over tied pixel losses (logits the same at every pixel, as a young model's nearly
# are): which of the tied pixels count, and so the gradient, must be the same on both backends.
TOP_K_TIES = dict(
    num_classes=NUM_CLASSES, ignore_label=255, top_k_percent_pixels=0.5, upsample_logits=False
)


def _top_k_ties_case(rng):
    """Logits with ties, labels, and TensorFlow's gradient of the top-k loss to the logits."""
    import tensorflow as tf

    logits = np.tile(rng.normal(0, 1, NUM_CLASSES), (2, 9, 9, 1)).astype(np.float32)
    labels = rng.integers(0, NUM_CLASSES, (2, 9, 9)).astype(np.int32)
    x = tf.constant(logits)
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = losses.softmax_cross_entropy(x, labels, **TOP_K_TIES)
    return {"ties_logits": logits, "ties_labels": labels, "ties_gradient": tape.gradient(loss, x)}


def _loss_and_metric_case(folder, rng):
    logits = rng.normal(0, 2, (2, 17, 17, NUM_CLASSES)).astype(np.float32)
    labels = rng.integers(0, NUM_CLASSES, (2, 33, 33)).astype(np.int32)
    labels[:, :3] = 255
    arrays = {"logits": logits, "labels": labels}
    for name, options in LOSS_OPTIONS.items():
        arrays[f"loss_{name}"] = losses.softmax_cross_entropy(logits, labels, **options).numpy()
    metric = MeanIoUWithIgnore(NUM_CLASSES, ignore_label=255)
    metric.update_state(labels, logits)
    arrays["miou"] = metric.result().numpy()
    arrays["per_class_iou"] = metric.per_class_iou().numpy()
    arrays.update(_top_k_ties_case(rng))
    np.savez(os.path.join(folder, "loss_and_metric.npz"), **arrays)
    return {
        "arrays": "loss_and_metric.npz",
        "losses": LOSS_OPTIONS,
        "num_classes": NUM_CLASSES,
        "top_k_ties": TOP_K_TIES,
    }


def train_step_model(options, weights):
    """The step's model with `weights` and no dropout (its mask is backend-random)."""
    model = build_deeplab_from_options(options)
    model.load_weights(weights)
    for layer in model.layers:
        if isinstance(layer, keras.layers.Dropout):
            layer.rate = 0.0
    return model


def _tensorflow_steps(config, initial, runs, outputs):
    """The TensorFlow trainer's weights (written to `outputs[i]`) after the steps of `runs[i]`
    (a list of batches), each run from the `initial` weights with the momentum and the step at
    0: one trainer and one trace of its step for all runs."""
    import tensorflow as tf

    first = runs[0][0]
    trainer = Trainer(
        config,
        dataset_fn=lambda ctx: tf.data.Dataset.from_tensors(first).repeat(),
        model_fn=lambda opts: train_step_model(opts, initial),
    )
    start = [v.numpy() for v in trainer.model.weights]
    try:
        for run, output in zip(runs, outputs):
            for variable, value in zip(trainer.model.weights, start):
                variable.assign(value)
            for variable in trainer.optimizer.variables:  # momentum accumulators, iterations
                variable.assign(tf.zeros_like(variable))
            trainer.global_step.assign(0)
            for batch in run:
                trainer._train_step({k: tf.constant(v) for k, v in batch.items()})
            trainer.model.save_weights(output)
    finally:
        trainer.lock.release()


def _train_step_case(folder, rng):
    """The TensorFlow trainer's steps from saved weights on one saved batch: with BatchNorm
    frozen, one and two steps; with BatchNorm fine-tuned, one step, and one step from the
    images times (1 + each of TRAIN_STEP_PERTURBATIONS) (the float32 noise floor)."""
    options = ModelOptions(**TRAIN_STEP_OPTIONS)
    initial = os.path.join(folder, "train_step.initial.weights.h5")
    keras.utils.set_random_seed(0)  # the same initial weights in every run
    build_deeplab_from_options(options).save_weights(initial)
    batch_size = TRAIN_STEP_BATCH
    images = rng.uniform(0, 255, (batch_size, CROP, CROP, 3)).astype(np.float32)
    labels = rng.integers(0, NUM_CLASSES, (batch_size, CROP, CROP, 1)).astype(np.int32)
    labels[:, :5] = 255
    np.savez(os.path.join(folder, "train_step.batch.npz"), image=images, label=labels)
    batch = {"image": images, "label": labels}
    spec = {"initial": os.path.basename(initial), "batch": "train_step.batch.npz"}
    fine_tuned = {"fine_tuned": [batch]}
    for i, eps in enumerate(TRAIN_STEP_PERTURBATIONS):
        perturbed = (images * np.float32(1 + eps)).astype(np.float32)
        fine_tuned[f"fine_tuned_perturbed_{i}"] = [dict(batch, image=perturbed)]
    spec["perturbed"] = [f"fine_tuned_perturbed_{i}" for i in range(len(TRAIN_STEP_PERTURBATIONS))]
    cases = {
        "frozen": (False, {"frozen_1": [batch], "frozen_2": [batch, batch]}),
        "fine_tuned": (True, fine_tuned),
    }
    for name, (fine_tune, runs) in cases.items():
        config = train_step_config(os.path.join(folder, f"tf_{name}"), fine_tune)
        outputs = {key: f"train_step.tf_{key}.weights.h5" for key in runs}
        paths = [os.path.join(folder, outputs[key]) for key in runs]
        _tensorflow_steps(config, initial, list(runs.values()), paths)
        spec.update(outputs)
    return spec


def _official_fixtures():
    fixtures = []
    for name, raw_layer in [
        ("mobilenet_v2_os8", "logits.semantic"),
        ("mobilenet_v3_large_seg", DECODER_LOGITS_LAYER),
        ("mobilenet_v3_small_seg", DECODER_LOGITS_LAYER),
    ]:
        folder, flags = helpers.official_fixture(name)
        expected = {"raw": [os.path.join(folder, "logits.npy"), 1]}
        every4 = os.path.join(folder, "logits_upsampled_every4.npy")
        full = os.path.join(helpers.SHARED_REFERENCE, "fixtures", name, "logits_upsampled.npy")
        if os.path.exists(every4):
            expected["upsampled"] = [every4, 4]
        elif os.path.exists(full):
            expected["upsampled"] = [full, 1]
        fixtures.append(
            {
                "name": name,
                "folder": folder,
                "build_deeplab": flags["build_deeplab"],
                "raw_layer": raw_layer,
                "expected": expected,
            }
        )
    return fixtures


def _convert(checkpoint, output, *model_flags):
    return subprocess.run(
        [sys.executable, "-m", "deeplab.convert", f"--checkpoint_path={checkpoint}"]
        + [f"--output_path={output}", *model_flags],
        cwd=os.path.dirname(HERE),
        env=dict(os.environ, PYTHONPATH=os.path.dirname(HERE)),
        capture_output=True,
        text=True,
        timeout=300,
    )


def _converted_checkpoint(folder):
    """The official mobilenet_v2 checkpoint converted by `python -m deeplab.convert`."""
    fixture, _ = helpers.official_fixture("mobilenet_v2_os8")
    output = os.path.join(folder, "converted", "mobilenet_v2.weights.h5")
    model_flags = ("--model_variant=mobilenet_v2", "--output_stride=8")
    run = _convert(os.path.join(fixture, "model.ckpt"), output, *model_flags)
    assert run.returncode == 0, run.stderr[-3000:]
    return {
        "weights": output,
        "raw_layer": "logits.semantic",
        "input": os.path.join(fixture, "input.npy"),
        "logits": os.path.join(fixture, "logits.npy"),
    }


def write_cases(folder):
    """The TensorFlow side: models, inputs and outputs, and `cases.json` listing them."""
    rng = np.random.default_rng(0)
    models = []
    for name, kwargs in MODEL_CASES.items():
        model, images, case = _model_case(folder, name, kwargs, rng)
        case["logits"] = f"{name}.logits.npy"
        np.save(os.path.join(folder, case["logits"]), model(images, training=False).numpy())
        models.append(case)
    model, images, training = _model_case(
        folder, "training", MODEL_CASES["mobilenet_v2_os8"], rng, batch=2
    )
    training["output_layer"] = TRAINING_OUTPUT_LAYER
    model = keras.Model(model.input, model.get_layer(TRAINING_OUTPUT_LAYER).output)
    outputs = model(images, training=True).numpy()
    expected = {v.path: v.numpy() for v in model.non_trainable_variables}
    np.savez(os.path.join(folder, "training.expected.npz"), outputs=outputs, **expected)
    training["expected"] = "training.expected.npz"
    spec = {
        "models": models,
        "training_forward": training,
        "loss_and_metric": _loss_and_metric_case(folder, rng),
        "official_fixtures": _official_fixtures(),
        "converted_checkpoint": _converted_checkpoint(folder),
        "train_step": _train_step_case(folder, rng),
    }
    with open(os.path.join(folder, "cases.json"), "w") as f:
        json.dump(spec, f)


@pytest.fixture(scope="module")
def jax_results(tmp_path_factory):
    """Writes the TensorFlow side, runs the JAX side once, returns its results."""
    folder = str(tmp_path_factory.mktemp("backends"))
    write_cases(folder)
    # Two CPU devices: the JAX trainer's step runs under keras.distribution.DataParallel.
    env = dict(
        os.environ,
        KERAS_BACKEND="jax",
        PYTHONPATH=os.path.dirname(HERE),
        XLA_FLAGS="--xla_force_host_platform_device_count=2 --xla_backend_optimization_level=0",
    )
    run = subprocess.run(
        [sys.executable, "-m", "tests.backend_parity", folder],
        env=env,
        cwd=os.path.dirname(HERE),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-4000:]
    with open(os.path.join(folder, "results.json")) as f:
        return json.load(f)


def test_runs_on_jax(jax_results):
    assert jax_results["backend"] == "jax"


@pytest.mark.parametrize("name", list(MODEL_CASES))
def test_every_variant_gives_tensorflows_logits_on_jax(jax_results, name):
    assert jax_results["models"][name] <= PARITY_ATOL


def test_training_mode_batch_norm_matches_tensorflow_on_jax(jax_results):
    """Batch statistics, and the moving statistics updated with the unbiased variance. The
    outputs get TRAINING_ATOL: TensorFlow's fused batch norm computes the batch variance its own
    way, and normalising the image-pooling feature by the variance of two images amplifies the
    difference (3e-4 measured)."""
    assert jax_results["training_forward"]["outputs"] <= TRAINING_ATOL
    assert jax_results["training_forward"]["moving_statistics"] <= 1e-5


def test_loss_and_metric_match_tensorflow_on_jax(jax_results):
    for name, diff in jax_results["loss_and_metric"].items():
        assert diff <= 1e-5, name


def test_model_core_imports_no_tensorflow_on_jax(jax_results):
    assert jax_results["tensorflow_imported_by_model_core"] is False


def test_official_fixtures_reproduced_on_jax(jax_results):
    """The official logits (pre-upsampling, and upsampled where the fixture has them) under
    JAX, to the tolerance of the TensorFlow tests."""
    results = jax_results["official_fixtures"]
    assert len(results) >= 5
    for key, result in results.items():
        assert result["shape_matches"], key
        assert result["max_abs_diff"] <= 1e-3, key
        assert result["argmax_agreement"] >= 0.999, key


def test_converted_official_checkpoint_gives_the_official_logits_on_jax(jax_results):
    assert jax_results["converted_checkpoint"] <= 1e-3


def test_jax_trainer_gives_the_tensorflow_trainers_update_with_frozen_batch_norm(jax_results):
    """Two steps of deeplab.training.jax_trainer (on two devices, DataParallel) from the same
    weights on the same batch as the TensorFlow trainer, BatchNorm frozen: loss with label
    weights and the top-k path (every pixel kept, see TRAIN_STEP_CONFIG), L2, bias and last-layer
    gradient multipliers, poly rate, TF1 momentum. The JAX trainer is saved after the first
    step, reset to the initial weights and momentum, and restored before the second, so the
    second step also checks that the momentum survives a checkpoint. Every trainable weight
    within float32 noise of the update; the moving statistics untouched on both."""
    result = jax_results["train_step"]
    assert result["devices"] == 2 and result["frozen"]["data_parallel"]
    assert result["frozen"]["restored"] == 0.0, result
    assert result["frozen"]["compiles"] == 1, result
    # A NaN in the batch: the step raises and applies nothing (weights, momentum, step).
    assert result["frozen"]["non_finite"] == {"raised": True, "changed": 0.0}, result
    for key in ("frozen_1", "frozen_2"):
        step = result["frozen"][key]
        assert step["max_update"] > 1e-2, step
        assert step["max_abs"] <= FROZEN_STEP_RTOL * step["max_update"], (key, step)
        assert step["non_trainable"]["max_abs"] == 0.0, (key, step)


def test_jax_trainer_gives_the_tensorflow_trainers_update_with_batch_norm_fine_tuned(
    jax_results,
):
    """One step of both trainers with BatchNorm fine-tuned (batch statistics in the forward
    pass, moving statistics updated). Not a semantic difference but conditioning: on a batch of
    2 images at crop 65 (5x5 features at output stride 16), normalising by the statistics of
    so few values amplifies float32 rounding, so that the TensorFlow update itself moves by
    0.3% to 2.9% (relative L2 over every trainable weight; up to 7e-4 max abs on an update of
    0.037) when the images are multiplied by 1 +- 1e-6 or 2e-6, and the JAX update differs from
    TensorFlow's by as much (0.7% to 2.6%). With BatchNorm frozen the same step agrees to 4e-7
    of the update (test above). So the test measures that noise floor in the same run (median over
    TRAIN_STEP_PERTURBATIONS) and asks the JAX difference to stay within a few times it and
    under an absolute cap, which a semantic error in the BatchNorm path (batch statistics,
    their gradient) would exceed. The moving statistics' update agrees to 1e-5 of its size,
    within its own noise floor; the biased instead of the unbiased variance or another decay
    would differ by percents."""
    result = jax_results["train_step"]["fine_tuned"]
    assert result["max_update"] > 1e-2, result
    noise = float(np.median([n["relative_l2"] for n in result["noise"]]))
    assert result["relative_l2"] <= FINE_TUNED_NOISE_FACTOR * noise, (noise, result)
    assert result["relative_l2"] <= FINE_TUNED_RELATIVE_L2_CAP, result
    statistics = result["non_trainable"]
    statistics_noise = float(
        np.median([n["update_relative_l2"] for n in result["non_trainable_noise"]])
    )
    assert statistics["max_relative"] <= 1e-4, result
    assert statistics["update_relative_l2"] <= FINE_TUNED_NOISE_FACTOR * statistics_noise, result
    assert statistics["update_relative_l2"] <= MOVING_STATISTICS_UPDATE_CAP, result


def test_convert_into_the_wrong_architecture_fails_as_export_does(tmp_path):
    """Its main() in this process (the command line's end-to-end run is `_converted_checkpoint`'s
    subprocess)."""
    checkpoint = os.path.join(helpers.official_fixture("mobilenet_v2_os8")[0], "model.ckpt")

    def convert(output, *model_flags):
        return helpers.run_cli_in_process(
            "deeplab.convert", f"--checkpoint_path={checkpoint}", f"--output_path={output}",
            *model_flags,
        )  # fmt: skip

    output = tmp_path / "wrong.weights.h5"
    run = convert(output, "--model_variant=xception_65")
    assert run.returncode == 1
    assert "xception_65" in run.stderr and "Traceback" not in run.stderr
    assert not output.exists()
    bad = convert(tmp_path / "weights.h5")
    assert bad.returncode == 2 and "weights.h5" in bad.stderr
