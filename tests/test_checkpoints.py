"""Loading official TF1 checkpoints (and ours): the official fixture and every error path."""

import os
import shutil
import tarfile

import numpy as np
import pytest
import tensorflow as tf

from deeplab import build_deeplab
from deeplab.checkpoints.official import (
    CheckpointError,
    load_checkpoint,
    load_official_checkpoint,
    official_variables,
)
from tests import helpers

# Full DeepLab models (the official mobilenet_v2 OS 8 fixture) built and run.
# One worker runs this module (its module fixtures are built once).
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("checkpoints")]

FIXTURE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "mobilenet_v2_os8")
CKPT = os.path.join(FIXTURE, "model.ckpt")


@pytest.fixture(scope="module")
def fixture_model():
    model = build_deeplab(**helpers.fixture_flags())
    report = load_official_checkpoint(model, CKPT)
    assert len(report.loaded) == 272 and not report.skipped
    return model


@pytest.fixture(scope="module")
def fixture_input():
    return np.load(os.path.join(FIXTURE, "input.npy"))


def test_official_fixture_pre_upsampling_logits(fixture_model, fixture_input):
    raw = tf.keras.Model(fixture_model.input, fixture_model.get_layer("logits.semantic").output)
    ours = raw(fixture_input.astype(np.float32)).numpy()
    official = np.load(os.path.join(FIXTURE, "logits.npy"))
    assert ours.shape == official.shape == (1, 33, 33, 21)
    assert np.abs(ours - official).max() <= 1e-3
    assert (ours.argmax(-1) == official.argmax(-1)).mean() >= 0.999


def test_official_fixture_upsampled_logits(fixture_model, fixture_input):
    path = os.path.join(
        helpers.SHARED_REFERENCE, "fixtures", "mobilenet_v2_os8", "logits_upsampled.npy"
    )
    if not os.path.exists(path):
        pytest.skip(f"{path} is absent (only the project's shared checkout has it)")
    official = np.load(path)
    ours = fixture_model(fixture_input.astype(np.float32), training=False).numpy()
    assert ours.shape == official.shape == (1, 257, 257, 21)
    assert np.abs(ours - official).max() <= 1e-3
    assert (ours.argmax(-1) == official.argmax(-1)).mean() >= 0.999


def test_uint8_input_is_accepted(fixture_model, fixture_input):
    as_uint8 = fixture_model(tf.constant(fixture_input), training=False)
    as_float = fixture_model(fixture_input.astype(np.float32), training=False)
    np.testing.assert_allclose(as_uint8, as_float, atol=1e-6)


def test_directory_and_tar_gz_are_accepted(tmp_path, fixture_model):
    model = build_deeplab(**helpers.fixture_flags())
    load_official_checkpoint(model, FIXTURE)  # a directory with a `checkpoint` file
    archive = tmp_path / "deeplabv3_mnv2_test.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for name in ("model.ckpt.index", "model.ckpt.data-00000-of-00001"):
            tar.add(os.path.join(FIXTURE, name), arcname="deeplabv3_mnv2_test/" + name)
    model = build_deeplab(**helpers.fixture_flags())
    report = load_official_checkpoint(model, str(archive))
    assert len(report.loaded) == 272
    for a, b in zip(model.weights, fixture_model.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_missing_checkpoint_names_the_path(tmp_path):
    model = build_deeplab(**helpers.fixture_flags())
    with pytest.raises(CheckpointError, match="nowhere/model.ckpt"):
        load_official_checkpoint(model, str(tmp_path / "nowhere" / "model.ckpt"))


def test_other_class_count_fails_naming_logits_unless_skipped():
    flags = dict(helpers.fixture_flags(), num_classes=5)
    model = build_deeplab(**flags)
    with pytest.raises(CheckpointError, match=r"logits/semantic/weights.*\[1, 1, 256, 21\]"):
        load_official_checkpoint(model, CKPT)
    report = load_official_checkpoint(model, CKPT, skip_logits=True)
    assert sorted(report.skipped) == ["logits/semantic/biases", "logits/semantic/weights"]
    assert report.unused == []  # the file's logits are the skipped ones, not unknown
    assert "Skipped 2" in report.summary()


def test_missing_variable_is_named():
    flags = dict(helpers.fixture_flags(), atrous_rates=(6, 12, 18))
    model = build_deeplab(**flags)
    with pytest.raises(CheckpointError, match="aspp1_depthwise.* missing from the checkpoint"):
        load_official_checkpoint(model, CKPT)


def test_failed_load_assigns_nothing():
    flags = dict(helpers.fixture_flags(), num_classes=5)
    model = build_deeplab(**flags)
    before = [w.numpy().copy() for w in model.weights]
    with pytest.raises(CheckpointError):
        load_official_checkpoint(model, CKPT)
    for a, b in zip(before, model.weights):
        np.testing.assert_array_equal(a, b.numpy())


def test_backbone_only_checkpoint_initializes_the_backbone(tmp_path, fixture_model):
    """An ImageNet checkpoint holds backbone variables (plus its classifier, ignored)."""
    backbone = {
        name: v.numpy()
        for name, v in official_variables(fixture_model).items()
        if name.startswith("MobilenetV2/")
    }
    backbone["MobilenetV2/Logits/Conv2d_1c_1x1/weights"] = np.zeros([1, 1, 1280, 1001], "float32")
    backbone["global_step"] = np.array(5, dtype=np.int64)
    backbone["MobilenetV2/Conv/weights/Momentum"] = backbone["MobilenetV2/Conv/weights"]
    prefix = str(tmp_path / "imagenet" / "model.ckpt")
    helpers.write_tf1_checkpoint(prefix, backbone)
    model = build_deeplab(**dict(helpers.fixture_flags(), num_classes=7))
    report = load_official_checkpoint(model, prefix)
    assert len(report.loaded) == len(backbone) - 3
    assert all(
        name.startswith(("aspp", "image_pooling", "concat_projection", "logits"))
        for name in report.skipped
    )
    assert report.unused == ["MobilenetV2/Logits/Conv2d_1c_1x1/weights"]
    np.testing.assert_array_equal(
        model.get_layer("MobilenetV2.Conv").kernel.numpy(), backbone["MobilenetV2/Conv/weights"]
    )
    with pytest.raises(CheckpointError, match="missing"):
        load_official_checkpoint(model, prefix, backbone_only=False)


def test_object_based_checkpoint_round_trip_and_partial_load(tmp_path, fixture_model):
    prefix = tf.train.Checkpoint(model=fixture_model).save(str(tmp_path / "ours" / "ckpt"))
    model = build_deeplab(**helpers.fixture_flags())
    report = load_checkpoint(model, str(tmp_path / "ours"))
    assert len(report.loaded) == 272
    for a, b in zip(model.weights, fixture_model.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    other = build_deeplab(**dict(helpers.fixture_flags(), num_classes=4))
    report = load_checkpoint(other, prefix, skip_logits=True)
    assert len(report.skipped) == 2 and len(report.loaded) == 270
    np.testing.assert_array_equal(
        other.get_layer("aspp0").kernel.numpy(), fixture_model.get_layer("aspp0").kernel.numpy()
    )
    with pytest.raises(CheckpointError, match="object-based"):
        load_official_checkpoint(model, prefix)


def test_load_checkpoint_detects_official_format():
    model = build_deeplab(**helpers.fixture_flags())
    assert len(load_checkpoint(model, CKPT).loaded) == 272


def test_tar_gz_without_checkpoint_fails_clearly(tmp_path):
    archive = tmp_path / "empty.tar.gz"
    (tmp_path / "readme.txt").write_text("no checkpoint here")
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "readme.txt", arcname="readme.txt")
    model = build_deeplab(**helpers.fixture_flags())
    with pytest.raises(CheckpointError, match="expected exactly one checkpoint"):
        load_official_checkpoint(model, str(archive))
    shutil.rmtree(tmp_path)
