"""A tiny DeepLab trained a few steps on a small synthetic set, for the eval / vis / export tests.

The run is built once per test session and shared between pytest-xdist workers (a file lock in
the session's common temp dir). It is written the way train.py writes its runs (the shared
contract): `tf.train.CheckpointManager` over `tf.train.Checkpoint(model=..., optimizer=...,
step=...)` in `run_dir`, checkpoints `ckpt-<step>`, and `run_dir/model_options.json`
(`dataclasses.asdict(ModelOptions)` + `dataset`, `dataset_dir`). A plain training loop keeps
these tests independent of train.py's flags.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import fcntl
import json
import os
import sys
from types import SimpleNamespace

import numpy as np
import tensorflow as tf

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
NUM_CLASSES = 7  # the synthetic dataset: background + 6 shapes
TRAIN_CROP = (65, 65)
CHECKPOINT_STEPS = (4, 8)
_VERSION = "v4"  # bump to rebuild the shared run after changing this file

TINY_OPTIONS = dict(
    model_variant="mobilenet_v2",
    num_classes=NUM_CLASSES,
    output_stride=16,
    atrous_rates=None,
    decoder_output_stride=4,
    crop_size=TRAIN_CROP,
    depth_multiplier=0.25,
    batch_norm_decay=0.5,
)
# batch_norm_decay: a few steps from scratch need fast BatchNorm statistics for the moving
# averages (used at inference) to follow the weights.


def official_fixture_dir():
    """Directory of the official-format mobilenet_v2 OS 8 checkpoint fixture, or None.

    Looks in tests/fixtures first (a user's clone), then ../shared/reference. The full-size
    `logits_upsampled.npy` may exist only in the latter.
    """
    for folder in (
        os.path.join(HERE, "fixtures", "mobilenet_v2_os8"),
        os.path.join(REPO, "..", "shared", "reference", "fixtures", "mobilenet_v2_os8"),
    ):
        if os.path.isfile(os.path.join(folder, "model.ckpt.index")):
            return os.path.normpath(folder)
    return None


def official_upsampled_logits():
    """The official graph's upsampled logits for the fixture input, or None when unavailable."""
    for folder in (
        os.path.join(HERE, "fixtures", "mobilenet_v2_os8"),
        os.path.join(REPO, "..", "shared", "reference", "fixtures", "mobilenet_v2_os8"),
    ):
        path = os.path.join(folder, "logits_upsampled.npy")
        if os.path.isfile(path):
            return np.load(path)
    return None


@contextlib.contextmanager
def _file_lock(path):
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _shared_root(tmp_path_factory):
    base = tmp_path_factory.getbasetemp()
    # Under pytest-xdist every worker's basetemp is <session root>/popen-gwN.
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def build_synthetic(data_dir):
    """A small synthetic set (16 train, 6 val images of 48..96 pixels), official TFRecords."""
    from deeplab.data import synthetic

    if not os.path.isfile(os.path.join(data_dir, "DONE")):
        synthetic.build_synthetic_dataset(
            data_dir, seed=0, num_train=16, num_val=6, num_shards=1, min_size=48, max_size=96
        )
        open(os.path.join(data_dir, "DONE"), "w").close()
    return data_dir


def train_tiny_run(run_dir, data_dir, steps=CHECKPOINT_STEPS, batch_size=4, seed=0):
    """Trains the tiny model with Adam and writes checkpoints at `steps` + model_options.json."""
    import keras
    import tensorflow as tf

    from deeplab import ModelOptions, build_deeplab_from_options
    from deeplab.data.config import DataConfig
    from deeplab.data.pipeline import build_dataset

    keras.utils.set_random_seed(seed)
    options = ModelOptions(**TINY_OPTIONS)
    model = build_deeplab_from_options(options)
    optimizer = keras.optimizers.Adam(2e-3)
    step = tf.Variable(0, dtype=tf.int64, name="global_step")
    checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer, step=step)
    manager = tf.train.CheckpointManager(checkpoint, run_dir, max_to_keep=5, checkpoint_name="ckpt")
    dataset = build_dataset(
        DataConfig(
            "synthetic",
            data_dir,
            "train",
            crop_size=TRAIN_CROP,
            batch_size=batch_size,
            is_training=True,
            seed=seed,
            min_scale_factor=0.75,
            max_scale_factor=1.25,
            scale_factor_step_size=0.25,
        )
    )

    # Eager: a handful of steps run faster than tracing and optimising the gradient graph.
    def train_step(images, labels):
        labels = tf.squeeze(labels, -1)
        valid = tf.cast(labels != 255, tf.float32)
        with tf.GradientTape() as tape:
            logits = model(images, training=True)
            ce = tf.nn.sparse_softmax_cross_entropy_with_logits(
                labels=tf.where(labels == 255, 0, labels), logits=logits
            )
            loss = tf.reduce_sum(ce * valid) / tf.maximum(tf.reduce_sum(valid), 1.0)
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    iterator = iter(dataset)
    for _ in range(max(steps)):
        batch = next(iterator)
        train_step(batch["image"], batch["label"])
        step.assign_add(1)
        if int(step.numpy()) in steps:
            manager.save(checkpoint_number=int(step.numpy()))
    data = dataclasses.asdict(options)
    data.update(
        dataset="synthetic",
        dataset_dir=data_dir,
        train_split="train",
        train_crop_size=list(TRAIN_CROP),
    )
    with open(os.path.join(run_dir, "model_options.json"), "w") as f:
        json.dump(data, f, indent=2, default=list)
    return manager.latest_checkpoint


def trained_run(tmp_path_factory):
    """SimpleNamespace(run_dir, data_dir, checkpoint (latest prefix), options (ModelOptions))."""
    from deeplab import ModelOptions

    root = _shared_root(tmp_path_factory) / f"deeplab_eval_fixture_{_VERSION}"
    root.mkdir(parents=True, exist_ok=True)
    run_dir = root / "run"
    data_dir = root / "synthetic"
    with _file_lock(str(root / "lock")):
        build_synthetic(str(data_dir))
        if not (run_dir / "DONE").exists():
            run_dir.mkdir(exist_ok=True)
            train_tiny_run(str(run_dir), str(data_dir))
            (run_dir / "DONE").write_text("ok")
    import tensorflow as tf

    return SimpleNamespace(
        run_dir=str(run_dir),
        data_dir=str(data_dir),
        checkpoint=tf.train.latest_checkpoint(str(run_dir)),
        options=ModelOptions(**TINY_OPTIONS),
    )


def run_cli(script, *args, timeout=600, cwd=None):
    """Runs one of the repo's CLIs (eval.py, vis.py, export.py) in a fresh Python process."""
    import subprocess

    env = dict(os.environ)
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env["CUDA_VISIBLE_DEVICES"] = ""
    return subprocess.run(
        [sys.executable, os.path.join(REPO, script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd or REPO,
        env=env,
    )


def read_confusion_matrix_csv(path: str):
    """(matrix int64, class names) from `eval_results.save_confusion_matrix_csv`'s file."""
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    names = rows[0][1:]
    return np.array([[int(v) for v in row[1:]] for row in rows[1:]], np.int64), names


def read_scalar_summaries(logdir: str) -> dict[str, list[tuple]]:
    """{tag: [(step, value), ...]} of the scalar summaries in a log dir's event files (tests,
    scripts; TensorFlow only)."""
    out: dict[str, list[tuple]] = {}
    for path in sorted(tf.io.gfile.glob(os.path.join(logdir, "events.out.tfevents.*"))):
        for record in tf.data.TFRecordDataset(path):
            event = tf.compat.v1.Event.FromString(record.numpy())
            for value in event.summary.value:
                if value.metadata.plugin_data.plugin_name != "scalars":
                    continue
                number = float(tf.make_ndarray(value.tensor))
                out.setdefault(value.tag, []).append((int(event.step), number))
    return out
