"""Training semantics through the library (tiny models, tiny crops, few steps)."""

import glob
import os

import numpy as np
import pytest
import tensorflow as tf

from deeplab.checkpoints import run_options
from deeplab.checkpoints.polling import checkpoint_step
from deeplab.training import (
    LearningRateConfig,
    NonFiniteLossError,
    Trainer,
)
from tests import helpers

# Every test traces and runs the training loop.
pytestmark = pytest.mark.slow

CROP = helpers.CROP  # the crop of `helpers.fixed_batches`


def test_overfits_a_few_images(tmp_path):
    config = helpers.make_config(
        tmp_path,
        steps=40,
        optimizer="adam",
        adam_learning_rate=5e-3,
        log_steps=1,
        save_interval_steps=1000,
    )
    trainer = Trainer(config, dataset_fn=helpers.fixed_batches(num_images=2))
    first = []
    orig = trainer._train_step

    def spy(batch):
        out = orig(batch)
        if len(first) < 3:
            first.append(float(out["losses/cross_entropy"]))
        return out

    trainer._train_step = spy
    result = trainer.run()
    start = np.mean(first)
    assert result["step"] == 40
    assert result["losses/cross_entropy"] < 0.3 * start, (start, result)
    assert result["pixel_accuracy"] > 0.85


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    config = helpers.make_config(tmp_path, steps=10)
    trainer = Trainer(
        config, dataset_fn=helpers.fixed_batches(nan_from_step=5), model_fn=helpers.small_model
    )
    with pytest.raises(NonFiniteLossError, match=r"at step 5\b") as err:
        trainer.run()
    assert "ckpt-4" in str(err.value)
    latest = tf.train.latest_checkpoint(str(tmp_path))
    assert latest.endswith("ckpt-4")
    reader = tf.train.load_checkpoint(latest)
    for name in reader.get_variable_to_shape_map():
        value = reader.get_tensor(name)
        if isinstance(value, np.ndarray) and value.dtype.kind == "f":
            assert np.all(np.isfinite(value)), name


def _all_finite_checkpoint(path):
    reader = tf.train.load_checkpoint(path)
    for name in reader.get_variable_to_shape_map():
        value = reader.get_tensor(name)
        if (
            isinstance(value, np.ndarray)
            and value.dtype.kind == "f"
            and not np.all(np.isfinite(value))
        ):
            return False
    return True


def test_exploding_update_never_reaches_a_checkpoint_and_a_sane_restart_finishes(tmp_path):
    # Three sane steps (saved), then a learning rate that sends the weights to inf at step 4.
    explode = LearningRateConfig(
        base_learning_rate=1e38,
        slow_start_step=3,
        slow_start_learning_rate=0.01,
        training_number_of_steps=10,
    )
    config = helpers.make_config(tmp_path, learning_rate=explode, save_interval_steps=1)
    trainer = Trainer(config, dataset_fn=helpers.fixed_batches(), model_fn=helpers.small_model)
    with pytest.raises(NonFiniteLossError, match="not finite after step 4") as err:
        trainer.run()
    named = str(err.value).split("last good checkpoint is ")[1].split(". ")[0]
    assert named == tf.train.latest_checkpoint(str(tmp_path)) and named.endswith("ckpt-3")
    saved = sorted(glob.glob(os.path.join(str(tmp_path), "ckpt-*.index")))
    assert [os.path.basename(p) for p in saved] == [f"ckpt-{i}.index" for i in (1, 2, 3)]
    assert all(_all_finite_checkpoint(p[: -len(".index")]) for p in saved)

    sane = LearningRateConfig(base_learning_rate=0.01, training_number_of_steps=10)
    config = helpers.make_config(tmp_path, learning_rate=sane, save_interval_steps=1)
    result = Trainer(config, dataset_fn=helpers.fixed_batches(), model_fn=helpers.small_model).run()
    assert result["steps_run"] == 7 and np.isfinite(result["total_loss"])
    assert tf.train.latest_checkpoint(str(tmp_path)).endswith("ckpt-10")


def test_a_checkpoint_of_weights_that_give_a_nan_loss_is_discarded(tmp_path):
    # lr 1e6: the weights stay finite for a step or two but give a NaN loss or gradients; the
    # checkpoint of those weights would fail every restart at once, so it is dropped.
    explode = LearningRateConfig(base_learning_rate=1e6, training_number_of_steps=10)
    config = helpers.make_config(tmp_path, learning_rate=explode, save_interval_steps=1)
    trainer = Trainer(config, dataset_fn=helpers.fixed_batches(), model_fn=helpers.small_model)
    with pytest.raises(NonFiniteLossError, match="last good checkpoint is ") as err:
        trainer.run()
    named = str(err.value).split("last good checkpoint is ")[1].split(". ")[0]
    assert named == tf.train.latest_checkpoint(str(tmp_path)), str(err.value)
    saved = glob.glob(os.path.join(str(tmp_path), "ckpt-*.index"))
    assert all(_all_finite_checkpoint(p[: -len(".index")]) for p in saved)
    bad_step = int(str(err.value).split(" at step ")[1].split()[0])
    if "update was not applied" in str(err.value):
        assert checkpoint_step(named) == bad_step - 2
        assert not glob.glob(os.path.join(str(tmp_path), f"ckpt-{bad_step - 1}.*"))


def test_a_restart_that_diverges_again_falls_back_and_finishes(tmp_path, capfd):
    # lr 1e6 with a checkpoint every step: the saved weights are finite but huge, so a restart
    # at a sane learning rate diverges again at once from each of them.
    explode = LearningRateConfig(base_learning_rate=1e6, training_number_of_steps=10)
    config = helpers.make_config(tmp_path, learning_rate=explode, save_interval_steps=1)
    with pytest.raises(NonFiniteLossError, match="nothing needs deleting"):
        Trainer(config, dataset_fn=helpers.fixed_batches(), model_fn=helpers.small_model).run()
    before = sorted(os.listdir(tmp_path))
    capfd.readouterr()
    sane = LearningRateConfig(base_learning_rate=0.01, training_number_of_steps=10)
    config = helpers.make_config(tmp_path, learning_rate=sane, save_interval_steps=1)
    result = Trainer(config, dataset_fn=helpers.fixed_batches(), model_fn=helpers.small_model).run()
    assert result["step"] == 10 and np.isfinite(result["total_loss"])
    warnings = capfd.readouterr().err
    assert "after resuming; falling back to " in warnings, (before, warnings)
    assert all(
        _all_finite_checkpoint(p[: -len(".index")])
        for p in glob.glob(os.path.join(str(tmp_path), "ckpt-*.index"))
    )


def test_non_finite_gradients_skip_the_update(tmp_path):
    config = helpers.make_config(tmp_path, steps=3)
    trainer = Trainer(config, dataset_fn=helpers.fixed_batches(), model_fn=helpers.small_model)
    before = [v.numpy() for v in trainer.model.trainable_variables]
    images = tf.constant(np.full((4, CROP, CROP, 3), 1e38, np.float32))
    labels = tf.zeros((4, CROP, CROP, 1), tf.int32)
    batch = next(
        iter(
            trainer.strategy.experimental_distribute_dataset(
                tf.data.Dataset.from_tensors({"image": images, "label": labels})
            )
        )
    )
    out = trainer._train_step(batch)
    assert float(out["update_applied"]) == 0.0
    after = [v.numpy() for v in trainer.model.trainable_variables]
    assert all(np.array_equal(a, b) for a, b in zip(before, after))
    good = next(iter(trainer.dataset))
    assert float(trainer._train_step(good)["update_applied"]) == 1.0


def _bn_layers(model):
    return [layer for layer in model.layers if layer.name.endswith(".BatchNorm")]


def test_fine_tune_batch_norm_false_keeps_moving_stats_and_trains_gamma_beta(tmp_path):
    options = helpers.tiny_options(fine_tune_batch_norm=False)
    trainer = Trainer(
        helpers.make_config(tmp_path, options, steps=2, save_interval_steps=0),
        dataset_fn=helpers.fixed_batches(),
    )
    bns = _bn_layers(trainer.model)
    assert bns
    before = {lyr.name: [w.numpy().copy() for w in lyr.weights] for lyr in bns}
    trainer.run()
    for layer in bns:
        gamma, beta, mean, var = (w.numpy() for w in layer.weights)
        b_gamma, b_beta, b_mean, b_var = before[layer.name]
        np.testing.assert_array_equal(mean, b_mean)
        np.testing.assert_array_equal(var, b_var)
        assert not (np.array_equal(gamma, b_gamma) and np.array_equal(beta, b_beta)), layer.name


def _official_l2(model, weight_decay):
    import keras

    total = 0.0
    for layer in model.layers:
        if isinstance(layer, keras.layers.DepthwiseConv2D):
            continue
        if isinstance(layer, keras.layers.Conv2D):
            total += weight_decay / 2 * float(np.sum(np.square(layer.kernel.numpy())))
    return total


def test_regularization_is_official_l2_and_batch_norm_trains_its_statistics(tmp_path):
    config = helpers.make_config(
        tmp_path,
        helpers.tiny_options(weight_decay=1e-3),
        learning_rate=LearningRateConfig(base_learning_rate=0.0, training_number_of_steps=1),
    )
    trainer = Trainer(config, dataset_fn=helpers.fixed_batches())
    # Conv and pointwise kernels and the logits kernel; not depthwise, BN or biases.
    want = _official_l2(trainer.model, 1e-3)
    bn = _bn_layers(trainer.model)[0]
    mean_before = bn.moving_mean.numpy().copy()
    result = trainer.run()
    assert result["losses/regularization"] == pytest.approx(want, rel=1e-4)
    assert result["total_loss"] == pytest.approx(
        result["losses/cross_entropy"] + result["losses/regularization"], rel=1e-5
    )
    # fine_tune_batch_norm=True (the default): batch statistics update the moving mean.
    assert not np.array_equal(mean_before, bn.moving_mean.numpy())


def test_batch_of_one_summaries_and_rerun_when_done(tmp_path):
    config = helpers.make_config(tmp_path, steps=3, batch_size=1, save_summaries_images=True)
    result = Trainer(
        config, dataset_fn=helpers.fixed_batches(num_images=1), model_fn=helpers.small_model
    ).run()
    assert result["step"] == 3 and np.isfinite(result["total_loss"])
    assert tf.train.latest_checkpoint(str(tmp_path)).endswith("ckpt-3")
    tags = set()
    for path in glob.glob(os.path.join(str(tmp_path), "events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                tags.add(value.tag)
    assert {
        "total_loss",
        "losses/cross_entropy",
        "losses/regularization",
        "learning_rate",
        "pixel_accuracy",
        "images_per_second",
        "samples/image",
        "samples/label",
        "samples/prediction",
    } <= tags
    again = Trainer(
        config, dataset_fn=helpers.fixed_batches(num_images=1), model_fn=helpers.small_model
    ).run()
    assert again == {"step": 3, "steps_run": 0, "already_done": True}
    _, options = run_options.saved_run_info(str(tmp_path))
    assert options["model_variant"] == "mobilenet_v2" and options["dataset"] == "synthetic"


def test_initialize_from_checkpoint_skipping_the_last_layers(tmp_path):
    first = tmp_path / "first"
    Trainer(helpers.make_config(first, steps=1), dataset_fn=helpers.fixed_batches()).run()
    first_ckpt = tf.train.latest_checkpoint(str(first))
    source = tiny_model_from(first_ckpt)
    # A new class count: the logits cannot come from the checkpoint, everything else does.
    options = helpers.tiny_options(num_classes=3)
    config = helpers.make_config(
        tmp_path / "second",
        options,
        steps=1,
        tf_initial_checkpoint=str(first),
        initialize_last_layer=False,
        last_layers_contain_logits_only=True,
    )
    trainer = Trainer(config, dataset_fn=helpers.fixed_batches())
    trainer._restore_or_initialize()
    for layer in trainer.model.layers:
        if not layer.weights:
            continue
        for got, want in zip(layer.weights, source.get_layer(layer.name).weights):
            if layer.name.startswith("logits"):
                assert got.shape != want.shape
            else:
                np.testing.assert_array_equal(got.numpy(), want.numpy(), err_msg=layer.name)


def tiny_model_from(checkpoint):
    model = helpers.tiny_model()
    tf.train.Checkpoint(model=model).restore(checkpoint).expect_partial()
    return model


def test_truncated_latest_checkpoint_falls_back_to_the_previous_one(tmp_path, capfd):
    config = helpers.make_config(tmp_path, steps=4, save_interval_steps=2)
    Trainer(config, dataset_fn=helpers.fixed_batches(), model_fn=helpers.small_model).run()
    data = glob.glob(os.path.join(str(tmp_path), "ckpt-4.data-*"))[0]
    with open(data, "r+b") as f:
        f.truncate(os.path.getsize(data) // 2)
    temp = tmp_path / "ckpt-5_temp"
    temp.mkdir()
    (temp / "part-00000-of-00001.data-00000-of-00001").write_bytes(b"partial")
    capfd.readouterr()

    trainer = Trainer(
        helpers.make_config(tmp_path, steps=6),
        dataset_fn=helpers.fixed_batches(),
        model_fn=helpers.small_model,
    )
    assert trainer._restore_or_initialize() == 2
    warning = capfd.readouterr().err
    assert f"checkpoint {tmp_path}/ckpt-4 is unreadable ({data}: " in warning, warning
    assert f"falling back to {tmp_path}/ckpt-2" in warning
    assert not temp.exists()
    result = trainer.run()
    assert result["step"] == 6 and result["steps_run"] == 4
