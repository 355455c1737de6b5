"""A truncated checkpoint (.index or .data): training and eval fall back to the previous one
naming the damaged file; an explicit damaged checkpoint stops with one line naming it."""

import glob
import os

import keras
import pytest
import tensorflow as tf

from deeplab.checkpoints import polling
from deeplab.checkpoints.official import CheckpointUnreadableError, load_checkpoint
from deeplab.training import checkpointing
from tests.helpers import small_model, tiny_options


def _truncate(path):
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)


@pytest.fixture
def two_checkpoints(tmp_path):
    """A log dir with ckpt-1 and ckpt-2 of a small model (TrainCheckpoint layout)."""
    model = small_model(tiny_options())
    step = tf.Variable(0, dtype=tf.int64)
    optimizer = keras.optimizers.SGD(0.1)
    optimizer.build(model.trainable_variables)
    ckpt = checkpointing.TrainCheckpoint(
        str(tmp_path),
        model=model,
        optimizer=optimizer,
        step=step,
        strategy=tf.distribute.get_strategy(),
    )
    for _ in range(2):
        step.assign_add(1)
        ckpt.save()
    return ckpt, model, str(tmp_path)


@pytest.mark.parametrize("damaged", [".index", ".data-00000-of-00001"])
def test_training_falls_back_from_a_truncated_file(two_checkpoints, damaged, capfd):
    ckpt, _, logdir = two_checkpoints
    _truncate(os.path.join(logdir, "ckpt-2" + damaged))
    assert ckpt.restore_latest() == os.path.join(logdir, "ckpt-1")
    assert int(ckpt.step.numpy()) == 1
    warning = capfd.readouterr().err.strip().splitlines()
    assert len(warning) == 1 and "ckpt-2" + damaged.split("-")[0] in warning[0], warning


def test_eval_falls_back_naming_the_file_and_export_stops_in_one_line(two_checkpoints, capfd):
    _, model, logdir = two_checkpoints
    _truncate(os.path.join(logdir, "ckpt-2.index"))
    latest = tf.train.latest_checkpoint(logdir)
    path, report = polling.load_readable(lambda p: load_checkpoint(model, p), latest, logdir)
    assert path == os.path.join(logdir, "ckpt-1") and report.path == path
    warning = capfd.readouterr().err
    assert f"{latest}.index: not an sstable" in warning and f"falling back to {path}" in warning
    # An explicit checkpoint (export, eval of one checkpoint) is not replaced by another one.
    data = glob.glob(os.path.join(logdir, "ckpt-1.data-*"))[0]
    _truncate(data)
    for explicit in (latest, path):
        with pytest.raises(CheckpointUnreadableError) as err:
            load_checkpoint(model, explicit)
        assert "\n" not in str(err.value) and explicit in str(err.value)
    assert data in str(err.value)
    with pytest.raises(CheckpointUnreadableError, match="ckpt-1"):
        polling.load_readable(lambda p: load_checkpoint(model, p), latest, logdir)
