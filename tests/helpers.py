"""Plain helpers of the test suite (imported as `from tests import helpers`; conftest.py only
turns the shared runs into fixtures).

- Official reference facts and the official-format checkpoint fixtures: the small fixtures and
  the variable lists are copied into tests/fixtures so a user's clone can run them; the large
  upsampled-logits array is read from ../shared/reference when that checkout exists.
- Small on-disk datasets for the data tests (images are tiny).
- The one tiny model of the suite (`tiny_options`, `tiny_model`; `TINY_FLAGS` is the same model
  on a command line) and a tiny DeepLab trained a few steps on a small synthetic set
  (`trained_run`), for the eval / vis / export tests. The run is built once per test session
  and shared between pytest-xdist workers (`shared_once`: a file lock in the session's common
  temp dir). It is written the way train.py writes its runs (the shared contract):
  `tf.train.CheckpointManager` over `tf.train.Checkpoint(model=..., optimizer=..., step=...)`
  in `run_dir`, checkpoints `ckpt-<step>`, and `run_dir/model_options.json`
  (`dataclasses.asdict(ModelOptions)` + `dataset`, `dataset_dir`). A plain training loop keeps
  these tests independent of train.py's flags.
- The command lines: `run_cli` (a fresh Python process: the end-to-end path of each job) and
  `run_cli_in_process` / `cli_flags_defined` (the same `main()` in this process, for flag
  errors and per-variant runs), `official_flags` (the official scripts' flag names, test data).
- Training-loop helpers (`small_model`, `fixed_batches`, `make_config`), also imported by the
  subprocess of test_mirrored.py.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import fcntl
import importlib
import io
import json
import logging
import os
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import tensorflow as tf
from PIL import Image

from deeplab import build_deeplab_from_options
from deeplab.data import synthetic
from deeplab.data.config import DataConfig
from deeplab.data.pipeline import build_dataset
from deeplab.evaluation import colormaps
from deeplab.modeling.options import ModelOptions
from deeplab.training import LearningRateConfig, TrainConfig

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
FIXTURES = os.path.join(HERE, "fixtures")
REFERENCE = os.path.join(FIXTURES, "reference")
MOBILENET_FIXTURE = os.path.join(FIXTURES, "mobilenet_v2_os8")
SHARED_REFERENCE = os.path.normpath(os.path.join(HERE, "..", "..", "shared", "reference"))
NUM_CLASSES = 7  # the synthetic dataset: background + 6 shapes
TRAIN_CROP = (65, 65)
CHECKPOINT_STEPS = (4, 8)
_VERSION = "v5"  # bump to rebuild the shared run after changing this file
CROP = 49  # the training-loop tests

# ----------------------------------------------------------------------------------------------
# Official reference facts and the official-format checkpoint fixture.


def facts():
    """The official parameter counts and Mult-Adds (facts.json)."""
    with open(os.path.join(REFERENCE, "facts.json")) as f:
        return json.load(f)


def official_variables(filename):
    """{name: shape} of an official checkpoint's variable list."""
    shapes = {}
    with open(os.path.join(REFERENCE, filename)) as f:
        for line in f:
            name, shape = line.rstrip("\n").split("\t")
            shapes[name] = json.loads(shape)
    return shapes


def fixture_flags():
    """build_deeplab kwargs of the mobilenet_v2 OS 8 fixture."""
    with open(os.path.join(MOBILENET_FIXTURE, "flags.json")) as f:
        return json.load(f)["build_deeplab"]


def official_fixture(name):
    """(directory, flags.json) of an official-format fixture in tests/fixtures, e.g.
    `mobilenet_v3_large_seg`."""
    folder = os.path.join(FIXTURES, name)
    with open(os.path.join(folder, "flags.json")) as f:
        return folder, json.load(f)


def write_tf1_checkpoint(prefix, tensors):
    """Writes {name: array} as a TF1 Saver (name-based) checkpoint at `prefix`."""
    names = sorted(tensors)
    tf.raw_ops.SaveV2(
        prefix=prefix,
        tensor_names=names,
        shape_and_slices=[""] * len(names),
        tensors=[tf.constant(tensors[n]) for n in names],
    )


# ----------------------------------------------------------------------------------------------
# Small on-disk datasets.


def encode(array, fmt, mode=None, palette=None):
    """Encodes a uint8 array with PIL; returns the file bytes."""
    image = Image.fromarray(np.asarray(array, dtype=np.uint8), mode=mode)
    if palette is not None:
        image.putpalette(palette)
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **({"quality": 95} if fmt == "JPEG" else {}))
    return buffer.getvalue()


def write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    return path


def random_pair(rng, height, width, num_classes):
    """A random RGB image and a label with blocks of classes and some 255."""
    image = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    label = rng.integers(0, num_classes, size=(height, width), dtype=np.uint8)
    label[0, :] = 255
    return image, label


def official_example(image_bytes, filename, height, width, seg_bytes, image_format=b"jpg"):
    """A tf.train.Example written exactly as the official build_data.py does
    (independent of deeplab.data.tfrecord)."""

    def b(v):
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[v]))

    def i(v):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[v]))

    return tf.train.Example(
        features=tf.train.Features(
            feature={
                "image/encoded": b(image_bytes),
                "image/filename": b(filename.encode()),
                "image/format": b(image_format),
                "image/height": i(height),
                "image/width": i(width),
                "image/channels": i(3),
                "image/segmentation/class/encoded": b(seg_bytes),
                "image/segmentation/class/format": b(b"png"),
            }
        )
    )


def write_official_tfrecords(output_dir, split, pairs, num_shards=2):
    """Writes (name, image, label) triples as official shards (JPEG + PNG).

    Returns {name: (image as tf.io.decode_jpeg decodes it, label)}.
    """
    os.makedirs(output_dir, exist_ok=True)
    per_shard = -(-len(pairs) // num_shards)
    decoded = {}
    for shard in range(num_shards):
        path = os.path.join(output_dir, f"{split}-{shard:05d}-of-{num_shards:05d}.tfrecord")
        with tf.io.TFRecordWriter(path) as writer:
            for name, image, label in pairs[shard * per_shard : (shard + 1) * per_shard]:
                jpeg = encode(image, "JPEG")
                png = encode(label, "PNG", mode="L")
                writer.write(
                    official_example(
                        jpeg, name, image.shape[0], image.shape[1], png
                    ).SerializeToString()
                )
                decoded[name] = (tf.io.decode_jpeg(jpeg).numpy(), label)
    return decoded


def voc_palette():
    return colormaps.create_pascal_label_colormap()[:256].flatten().tolist()


def write_voc_folder(root, splits, rng, size=(20, 24), palette_labels=False, num_classes=21):
    """Writes a VOC2012-layout folder; returns {name: (image, label)}."""
    data = {}
    for split, names in splits.items():
        write(
            os.path.join(root, "ImageSets", "Segmentation", split + ".txt"),
            ("\n".join(names) + "\n").encode(),
        )
        for name in names:
            image, label = random_pair(rng, size[0], size[1], num_classes)
            write(os.path.join(root, "JPEGImages", name + ".jpg"), encode(image, "JPEG"))
            if palette_labels:
                write(
                    os.path.join(root, "SegmentationClass", name + ".png"),
                    encode(label, "PNG", mode="P", palette=voc_palette()),
                )
            else:
                write(
                    os.path.join(root, "SegmentationClassRaw", name + ".png"),
                    encode(label, "PNG", mode="L"),
                )
            data[name] = (image, label)
    return data


# ----------------------------------------------------------------------------------------------
# The tiny model of the suite.


def tiny_options(**overrides) -> ModelOptions:
    """The suite's tiny DeepLab: MobileNetV2 x0.25, output stride 16, no ASPP rates, no decoder,
    7 classes (the synthetic set), crop 49; `overrides` are ModelOptions fields."""
    kwargs = dict(
        model_variant="mobilenet_v2",
        num_classes=synthetic.NUM_CLASSES,
        output_stride=16,
        atrous_rates=None,
        decoder_output_stride=None,
        depth_multiplier=0.25,
        crop_size=(CROP, CROP),
    )
    kwargs.update(overrides)
    return ModelOptions(**kwargs)


def tiny_model(**overrides) -> keras.Model:
    """`build_deeplab_from_options(tiny_options(**overrides))`."""
    return build_deeplab_from_options(tiny_options(**overrides))


# The tiny model on train.py's command line (the synthetic set, a batch of 2).
TINY_FLAGS = [
    "--model_variant=mobilenet_v2",
    "--depth_multiplier=0.25",
    f"--train_crop_size={CROP},{CROP}",
    "--train_batch_size=2",
    "--dataset=synthetic",
    "--seed=3",
]
# The trained run of the eval / vis / export tests: with the decoder, at crop 65.
# batch_norm_decay: a few steps from scratch need fast BatchNorm statistics for the moving
# averages (used at inference) to follow the weights.
TINY_RUN_OPTIONS = tiny_options(decoder_output_stride=4, crop_size=TRAIN_CROP, batch_norm_decay=0.5)


# ----------------------------------------------------------------------------------------------
# The tiny trained run for eval / vis / export, and the CLIs.


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
def file_lock(path):
    """An exclusive lock on `path` (created) for the `with` block: one pytest-xdist worker at a
    time."""
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def shared_root(tmp_path_factory):
    """The temp dir common to every pytest-xdist worker of this session (else the basetemp)."""
    base = tmp_path_factory.getbasetemp()
    # Under pytest-xdist every worker's basetemp is <session root>/popen-gwN.
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def shared_once(tmp_path_factory, name, build):
    """`<shared root>/<name>`, filled once per test session by `build(path)` (the first worker
    to get there builds it under a lock; the others wait and reuse it)."""
    root = shared_root(tmp_path_factory) / name
    root.mkdir(parents=True, exist_ok=True)
    with file_lock(str(root) + ".lock"):
        if not (root / "DONE").exists():
            build(root)
            (root / "DONE").write_text("ok")
    return root


def build_synthetic(data_dir):
    """A small synthetic set (16 train, 6 val images of 48..96 pixels), official TFRecords.
    (No marker file in it: the CLIs refuse a synthetic dir holding files they did not write;
    `shared_once` marks the shared run's root instead.)"""
    synthetic.build_synthetic_dataset(
        data_dir, seed=0, num_train=16, num_val=6, num_shards=1, min_size=48, max_size=96
    )
    return data_dir


def synthetic_example(index, size, split="train", label_value=None, label_size=None):
    """A synthetic tf.Example (`size` x `size`, named `img<index>`); `label_value` is put at one
    pixel, `label_size` crops the label (a label of the wrong size)."""
    from deeplab.data import tfrecord

    image, label = synthetic.generate_example(3, split, index, min_size=size, max_size=size)
    if label_value is not None:
        label[5, 5] = label_value
    if label_size is not None:
        label = label[:label_size, :label_size]
    encoded = synthetic.encode_example(image, label, "x").features.feature["image/encoded"]
    label_png = encode(label, "PNG", mode="L")
    return tfrecord.image_seg_to_tfexample(
        encoded.bytes_list.value[0], f"img{index}", size, size, label_png
    )


def split_with_a_bad_example(folder, split, bad_index=2, count=4, size=49):
    """`count` synthetic examples of `split` in `folder`, the one at `bad_index` with a label of
    the wrong size."""
    from deeplab.data import tfrecord

    examples = [
        synthetic_example(i, size, label_size=20 if i == bad_index else None) for i in range(count)
    ]
    tfrecord.write_shards(examples, folder, split, 1)
    return folder


def train_tiny_run(run_dir, data_dir, steps=CHECKPOINT_STEPS, batch_size=4, seed=0):
    """Trains the tiny model with Adam and writes checkpoints at `steps` + model_options.json."""
    keras.utils.set_random_seed(seed)
    options = TINY_RUN_OPTIONS
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


@dataclasses.dataclass(frozen=True)
class TrainedRun:
    """The tiny trained run: its dir, dataset dir, latest checkpoint prefix and options."""

    run_dir: str
    data_dir: str
    checkpoint: str
    options: ModelOptions


def trained_run(tmp_path_factory) -> TrainedRun:
    """The tiny run (`train_tiny_run` on `build_synthetic`), built once per session."""

    def build(root):
        build_synthetic(str(root / "synthetic"))
        (root / "run").mkdir(exist_ok=True)
        train_tiny_run(str(root / "run"), str(root / "synthetic"))

    root = shared_once(tmp_path_factory, f"deeplab_eval_fixture_{_VERSION}", build)
    run_dir = str(root / "run")
    return TrainedRun(
        run_dir=run_dir,
        data_dir=str(root / "synthetic"),
        checkpoint=tf.train.latest_checkpoint(run_dir),
        options=TINY_RUN_OPTIONS,
    )


def train_then_sigkill(args, ready, env=None, timeout=300) -> int:
    """Starts train.py with `args` in a subprocess, kills it with SIGKILL once `ready()` is
    true (within `timeout` seconds) and returns its exit status; fails if the run ended first."""
    proc = subprocess.Popen(
        cli_command("train.py") + list(args),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env or cli_env(),
        cwd=REPO,
    )
    try:
        deadline = time.time() + timeout
        while time.time() < deadline and proc.poll() is None and not ready():
            time.sleep(0.02)
        assert proc.poll() is None, "the run ended before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
        return proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()


def cli_env():
    """The environment of a CLI subprocess: this checkout first on PYTHONPATH, TensorFlow's C++
    notices off unless asked for, no GPU."""
    env = dict(os.environ)
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env["CUDA_VISIBLE_DEVICES"] = ""
    return env


def cli_command(script):
    """The argv start of one of the repo's CLIs (train.py, eval.py, vis.py, export.py) or
    modules (e.g. `deeplab.summary`, run as `python -m`)."""
    if script.endswith(".py"):
        return [sys.executable, os.path.join(REPO, script)]
    return [sys.executable, "-m", script]


def run_cli(script, *args, timeout=600, cwd=None, env=None):
    """Runs a CLI (`cli_command`) in a fresh Python process (`cli_env()` unless `env`)."""
    return subprocess.run(
        cli_command(script) + list(args),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd or REPO,
        env=env or cli_env(),
    )


# The CLI module behind each command line (run_cli's `script`).
CLI_MODULES = {
    "train.py": "deeplab.cli.train",
    "eval.py": "deeplab.cli.eval",
    "vis.py": "deeplab.cli.vis",
    "export.py": "deeplab.cli.export",
    "deeplab.summary": "deeplab.cli.summary",
    "build_synthetic_data.py": "deeplab.cli.build_synthetic_data",
    "deeplab.convert": "deeplab.cli.convert",
}


@contextlib.contextmanager
def cli_flags_defined(script):
    """Imports the CLI module of `script` (a key of CLI_MODULES) afresh, its flags defined on
    absl's global FLAGS, and yields it; afterwards removes those flags and the module again
    (train.py and eval.py define flags of the same names, so one CLI at a time per process)."""
    from absl import flags

    from deeplab.cli import flags as cli_flags

    name = CLI_MODULES[script]
    before = set(flags.FLAGS)
    sys.modules.pop(name, None)
    try:
        module = importlib.import_module(name)
        if script == "deeplab.summary":  # its flags are defined when it runs
            cli_flags.define_summary_flags()
        yield module
    finally:
        flags.FLAGS.unparse_flags()
        for flag in set(flags.FLAGS) - before:
            delattr(flags.FLAGS, flag)
        sys.modules.pop(name, None)


@dataclasses.dataclass
class CliResult:
    """What a command line returned and printed (as `subprocess.CompletedProcess`)."""

    returncode: int
    stdout: str
    stderr: str


def _raise_timeout(signum, frame):
    raise TimeoutError("the command line ran past its timeout")


def run_cli_in_process(script, *args, timeout=600):
    """Runs a CLI's `main()` in this process on `args` (parsed as the command line parses
    them: a flag error exits 2), with stdout, stderr and absl's log lines captured. The
    end-to-end path of each command line stays a `run_cli` subprocess; this is for the flag
    errors and the variants, which would each pay a fresh TensorFlow import. A run longer than
    `timeout` seconds raises TimeoutError (as `run_cli`'s subprocess would)."""
    from absl import logging as absl_logging

    from deeplab.cli import flags as cli_flags

    stdout, stderr = io.StringIO(), io.StringIO()
    handler = logging.StreamHandler(stderr)
    handler.setFormatter(absl_logging.PythonFormatter())  # the command line's log lines
    absl_logger = logging.getLogger("absl")
    verbosity = absl_logging.get_verbosity()
    with cli_flags_defined(script) as module:
        absl_logger.addHandler(handler)
        absl_logging.set_verbosity(absl_logging.INFO)
        previous = signal.signal(signal.SIGALRM, _raise_timeout)
        signal.alarm(timeout)
        try:
            with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
                try:
                    argv = cli_flags.parse_flags_exit_2([script, *args])
                    if script in ("deeplab.summary", "build_synthetic_data.py"):
                        code = module.main(argv)
                    else:
                        code = cli_flags.run_reporting_missing_files(module.main)
                except SystemExit as exit:
                    code = exit.code
        finally:
            signal.alarm(0)
            signal.signal(signal.SIGALRM, previous)
            absl_logger.removeHandler(handler)
            absl_logging.set_verbosity(verbosity)
    return CliResult(code or 0, stdout.getvalue(), stderr.getvalue())


def printed_lines(out):
    """The non-blank lines a command line printed (stdout, then stderr)."""
    return [line for line in (out.stdout + out.stderr).splitlines() if line.strip()]


def official_flags(script):
    """The flag names of the official research/deeplab `script` ("train", "eval", "vis",
    "export") and of common.py, which each official script also reads
    (tests/data/official_flags.json)."""
    with open(os.path.join(HERE, "data", "official_flags.json")) as f:
        names = json.load(f)
    return names["scripts"][script] + names["common"]


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


# ----------------------------------------------------------------------------------------------
# Training-loop helpers.


def small_model(options):
    """A stand-in with the official layer naming (conv + BN + logits), fast to trace; for the
    tests of the loop itself rather than of the DeepLab graph."""
    reg = keras.regularizers.L2(options.weight_decay / 2)
    images = keras.Input((None, None, 3))
    x = keras.layers.Rescaling(2 / 255, -1.0)(images)
    x = keras.layers.Conv2D(
        8, 3, padding="same", use_bias=False, kernel_regularizer=reg, name="features.conv1"
    )(x)
    x = keras.layers.BatchNormalization(name="features.conv1.BatchNorm")(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.Conv2D(
        8, 3, padding="same", use_bias=False, kernel_regularizer=reg, name="aspp0"
    )(x)
    x = keras.layers.ReLU()(x)
    logits = keras.layers.Conv2D(
        options.num_classes, 1, kernel_regularizer=reg, name="logits.semantic"
    )(x)
    return keras.Model(images, logits)


def fixed_batches(num_images=4, crop=CROP, nan_from_step=None):
    """A dataset_fn repeating `num_images` synthetic scenes (optionally NaN images later)."""
    images, labels = [], []
    for i in range(num_images):
        image, label = synthetic.generate_example(7, "train", i, min_size=crop, max_size=crop)
        images.append(image.astype(np.float32))
        labels.append(label.astype(np.int32)[..., None])
    images, labels = np.stack(images), np.stack(labels)

    def dataset_fn(ctx):
        per_replica = ctx.get_per_replica_batch_size(num_images)
        ds = tf.data.Dataset.from_tensors({"image": images, "label": labels}).repeat()
        ds = ds.unbatch().batch(per_replica, drop_remainder=True)
        if nan_from_step is not None:

            def poison(step, batch):
                image = tf.where(
                    step >= nan_from_step, tf.fill(tf.shape(batch["image"]), np.nan), batch["image"]
                )
                return {"image": image, "label": batch["label"]}

            ds = tf.data.Dataset.zip((tf.data.Dataset.range(1, 10**9), ds)).map(poison)
        return ds

    return dataset_fn


def make_config(logdir, options=None, steps=4, batch_size=4, dataset_dir=None, **overrides):
    options = options or tiny_options()
    data = DataConfig(
        "synthetic", dataset_dir, "train", crop_size=(CROP, CROP), batch_size=batch_size,
        is_training=True, seed=1, num_classes=options.num_classes,
    )  # fmt: skip
    kwargs = dict(
        train_logdir=str(logdir),
        model_options=options,
        data=data,
        learning_rate=LearningRateConfig(base_learning_rate=0.01, training_number_of_steps=steps),
        log_steps=2,
        save_interval_steps=2,
    )
    kwargs.update(overrides)
    return TrainConfig(**kwargs)
