"""build_dataset end to end on the synthetic set: training and evaluation
batches, determinism, sharding under tf.distribute, cache."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from deeplab.data import descriptors, pipeline, synthetic, tfrecord
from deeplab.data.config import DataConfig
from tests import helpers

# One worker runs this module (its module fixtures are built once).
pytestmark = pytest.mark.xdist_group("data_pipeline")

NUM_CLASSES = descriptors.get_dataset_info("synthetic").num_classes


@pytest.fixture(scope="module")
def synthetic_dir(tmp_path_factory):
    """Runs the build_synthetic_data CLI (in process: its main)."""
    out = str(tmp_path_factory.mktemp("synthetic"))
    result = helpers.run_cli_in_process(
        "build_synthetic_data.py",
        "--output_dir=" + out,
        "--num_train=12",
        "--num_val=5",
        "--min_size=40",
        "--max_size=72",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return out


def test_cli_writes_official_shards(synthetic_dir):
    train = tfrecord.list_shards(synthetic_dir, "train")
    val = tfrecord.list_shards(synthetic_dir, "val")
    assert [os.path.basename(p) for p in train] == [
        f"train-{i:05d}-of-00004.tfrecord" for i in range(4)
    ]
    assert len(val) == 4
    record = next(iter(tf.data.TFRecordDataset(train[0])))
    example = tf.train.Example.FromString(record.numpy())
    features = example.features.feature
    assert features["image/format"].bytes_list.value == [b"jpg"]
    assert features["image/segmentation/class/format"].bytes_list.value == [b"png"]
    assert features["image/channels"].int64_list.value == [3]
    assert features["image/filename"].bytes_list.value == [b"train_000000"]


@pytest.mark.slow
def test_training_batches(synthetic_dir):
    ds = pipeline.build_dataset(
        DataConfig(
            "synthetic",
            synthetic_dir,
            "train",
            crop_size=(33, 41),
            batch_size=4,
            is_training=True,
            min_scale_factor=0.5,
            max_scale_factor=2.0,
            scale_factor_step_size=0.25,
            seed=3,
        )
    )
    labels = set()
    for batch in ds.take(5):  # 20 > 12 images: repeats forever by default
        assert batch["image"].shape == (4, 33, 41, 3)
        assert batch["image"].dtype == tf.float32
        assert batch["label"].shape == (4, 33, 41, 1)
        assert batch["label"].dtype == tf.int32
        assert batch["height"].dtype == tf.int32 and batch["height"].shape == (4,)
        assert batch["image_name"].dtype == tf.string
        assert (
            0 <= float(tf.reduce_min(batch["image"]))
            and float(tf.reduce_max(batch["image"])) <= 255
        )
        labels |= set(np.unique(batch["label"]).tolist())
    assert labels <= set(range(NUM_CLASSES)) | {255}
    assert 0 in labels and 255 in labels and len(labels) >= 4


@pytest.mark.slow
def test_deterministic_mode_repeats_exactly(synthetic_dir):
    def first_batches(seed):
        ds = pipeline.build_dataset(
            DataConfig(
                "synthetic",
                synthetic_dir,
                "train",
                crop_size=(25, 25),
                batch_size=3,
                is_training=True,
                min_scale_factor=0.5,
                max_scale_factor=1.5,
                scale_factor_step_size=0.25,
                seed=seed,
                deterministic=True,
            )
        )
        return [b for b in ds.take(3).as_numpy_iterator()]

    a, b, c = first_batches(7), first_batches(7), first_batches(8)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x["image"], y["image"])
        np.testing.assert_array_equal(x["label"], y["label"])
    assert any(not np.array_equal(x["image"], z["image"]) for x, z in zip(a, c))


def test_eval_every_image_once_in_order_with_oversize(synthetic_dir):
    ds = pipeline.build_dataset(
        DataConfig(
            "synthetic", synthetic_dir, "val", crop_size=(49, 49), batch_size=2, is_training=False
        )
    )
    batches = list(ds.as_numpy_iterator())
    names = [n.decode() for b in batches for n in b["image_name"]]
    assert names == [f"val_{i:06d}" for i in range(5)]  # last batch of 1 kept
    for b in batches:
        height, width = b["image"].shape[1:3]
        assert height >= 49 and (height - 49) % 16 == 0
        assert width >= 49 and (width - 49) % 16 == 0
        for i in range(len(b["image_name"])):
            h, w = b["height"][i], b["width"][i]
            assert h <= height and w <= width  # whole image kept
            assert np.all(b["label"][i, h:] == 255)
            assert np.all(b["image"][i, :, w:] == 127.5)
    again = [n for b in ds.as_numpy_iterator() for n in b["image_name"]]
    assert [n.decode() for n in again] == names


def _per_worker_names(synthetic_dir, split, workers):
    names = []
    for worker in range(workers):
        context = tf.distribute.InputContext(
            num_input_pipelines=workers, input_pipeline_id=worker, num_replicas_in_sync=workers
        )
        ds = pipeline.build_dataset(
            DataConfig(
                "synthetic",
                synthetic_dir,
                split,
                crop_size=(17, 17),
                batch_size=2 * workers,
                is_training=False,
            ),
            context,
        )
        batches = list(ds.as_numpy_iterator())
        assert all(len(b["image_name"]) <= 2 for b in batches)  # per replica
        names.append({n.decode() for b in batches for n in b["image_name"]})
    return names


@pytest.mark.slow
@pytest.mark.parametrize("workers", [2, 5])  # by file (4 shards), by element
def test_sharding_per_worker(synthetic_dir, workers):
    names = _per_worker_names(synthetic_dir, "val", workers)
    assert set().union(*names) == {f"val_{i:06d}" for i in range(5)}
    assert sum(len(n) for n in names) == 5  # disjoint


# Two replicas need two logical CPU devices, which must be configured before TensorFlow
# starts: the pipeline runs under the strategies in a fresh process.
DISTRIBUTE_SCRIPT = r"""
import json, sys
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from deeplab.data import pipeline
from deeplab.data.config import DataConfig

out = {}
for mode, is_training, steps in (("train", True, 3), ("val", False, 10)):
    config = DataConfig("synthetic", sys.argv[1], mode, crop_size=(17, 17), batch_size=4,
                        is_training=is_training, seed=0)
    for name, strategy in (
        ("one_device", tf.distribute.OneDeviceStrategy("/cpu:0")),
        ("mirrored", tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])),
    ):
        dist = strategy.distribute_datasets_from_function(
            lambda ctx: pipeline.build_dataset(config, ctx))
        got = []
        for _, batch in zip(range(steps), dist):
            got.append([
                {"image": list(r["image"].shape), "label": list(r["label"].shape),
                 "device": r["image"].device, "names": [n.decode() for n in r["image_name"].numpy()]}
                for r in strategy.experimental_local_results(batch)])
        out[f"{mode}/{name}"] = {"replicas": strategy.num_replicas_in_sync, "steps": got}
print("RESULT " + json.dumps(out))
"""


@pytest.mark.slow
def test_distribute_datasets_from_function(synthetic_dir):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run(
        [sys.executable, "-c", DISTRIBUTE_SCRIPT, synthetic_dir],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stderr[-3000:]
    result = json.loads(lines[-1][len("RESULT ") :])
    # One device: the whole global batch.
    one = result["train/one_device"]
    assert one["replicas"] == 1
    assert all(step[0]["image"] == [4, 17, 17, 3] for step in one["steps"])
    # Two replicas: each gets half of the global batch, on its own device, different images.
    two = result["train/mirrored"]
    assert two["replicas"] == 2 and len(two["steps"]) == 3
    for first, second in two["steps"]:
        assert first["image"] == second["image"] == [2, 17, 17, 3]
        assert first["label"] == second["label"] == [2, 17, 17, 1]
        assert first["device"].endswith("CPU:0") and second["device"].endswith("CPU:1")
    # Evaluation: every val image reaches exactly one replica once; no replica gets more than
    # its share of a step.
    val = result["val/mirrored"]
    names = [n for step in val["steps"] for replica in step for n in replica["names"]]
    assert sorted(names) == [f"val_{i:06d}" for i in range(5)]
    assert all(len(replica["names"]) <= 2 for step in val["steps"] for replica in step)
    assert [len(r["names"]) for r in val["steps"][0]] == [2, 2]
    single = [n for step in result["val/one_device"]["steps"] for n in step[0]["names"]]
    assert sorted(single) == sorted(names)


@pytest.mark.slow  # a whole tf.data pipeline or checkpoint: the full suite's
def test_cache_and_finite_repeat(synthetic_dir, tmp_path):
    ds = pipeline.build_dataset(
        DataConfig(
            "synthetic",
            synthetic_dir,
            "train",
            crop_size=(21, 21),
            batch_size=5,
            is_training=True,
            cache=str(tmp_path / "cache"),
            repeat=2,
            drop_remainder=False,
            seed=1,
        )
    )
    sizes = [len(b["image_name"]) for b in ds.as_numpy_iterator()]
    assert sum(sizes) == 24 and sizes[-1] == 4
    assert tf.io.gfile.glob(str(tmp_path / "cache") + "*")


def test_synthetic_ensure_builds_once(tmp_path):
    out = str(tmp_path / "s")
    paths = synthetic.ensure_synthetic_dataset(
        out, num_train=2, num_val=1, min_size=24, max_size=32
    )
    assert len(paths) == 3 and all(os.path.exists(p) for p in paths)
    stamp = os.path.getmtime(paths[0])
    assert synthetic.ensure_synthetic_dataset(out) == sorted(paths)
    assert os.path.getmtime(paths[0]) == stamp


def test_unknown_source_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="No data for split"):
        pipeline.build_dataset(
            DataConfig(
                "synthetic", str(tmp_path), "train", crop_size=9, batch_size=1, is_training=True
            )
        )
    with pytest.raises(ValueError, match="known datasets"):
        pipeline.build_dataset(
            DataConfig("coco", str(tmp_path), "train", crop_size=9, batch_size=1, is_training=True)
        )
