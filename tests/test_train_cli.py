"""train.py: end to end in a subprocess (SIGKILL and resume; a live second trainer); checkpoints
and events, flag errors, the synthetic preset and NaN stops through its `main()` in process."""

import glob
import os
import re
import signal
import subprocess
import time

import numpy as np
import pytest
import tensorflow as tf
from absl import flags

from deeplab.data import synthetic, tfrecord
from tests import helpers

# Every test trains or runs train.py.
pytestmark = pytest.mark.slow

TINY = helpers.TINY_FLAGS + [
    "--base_learning_rate=0.01",
    "--min_scale_factor=0.75",
    "--max_scale_factor=1.25",
]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("synthetic"))
    synthetic.build_synthetic_dataset(
        path, num_train=8, num_val=2, num_shards=2, min_size=56, max_size=80
    )
    return path


def _scalar_tags(logdir):
    tags = {}
    for path in glob.glob(os.path.join(logdir, "events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                tags.setdefault(value.tag, []).append(event.step)
    return tags


def test_train_writes_checkpoint_and_events_then_rerun_does_nothing(tmp_path, data_dir):
    logdir = str(tmp_path / "run")
    args = [
        f"--train_logdir={logdir}",
        f"--dataset_dir={data_dir}",
        "--training_number_of_steps=20",
        "--log_steps=10",
    ] + TINY
    # In process: train.py's end-to-end subprocess runs are the SIGKILL / resume pair below.
    proc = helpers.run_cli_in_process("train.py", *args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert tf.train.latest_checkpoint(logdir).endswith("ckpt-20")
    tags = _scalar_tags(logdir)
    assert tags["total_loss"] == [10, 20] and tags["learning_rate"] == [10, 20]
    assert os.path.exists(os.path.join(logdir, "model_options.json"))
    again = helpers.run_cli_in_process("train.py", *args)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "Nothing to do" in again.stdout and "step 20" in again.stdout


def test_sigkill_then_rerun_resumes_to_the_final_step(tmp_path, data_dir):
    logdir = str(tmp_path / "run")
    steps = 24
    args = [
        f"--train_logdir={logdir}",
        f"--dataset_dir={data_dir}",
        f"--training_number_of_steps={steps}",
        "--save_interval_steps=3",
        "--log_steps=50",
        "--max_checkpoints_to_keep=2",
    ] + TINY

    def reached_step_6():
        latest = tf.train.latest_checkpoint(logdir)
        return bool(latest) and int(latest.rsplit("-", 1)[1]) >= 6

    assert helpers.train_then_sigkill(args, reached_step_6) == -signal.SIGKILL
    killed_at = int(tf.train.latest_checkpoint(logdir).rsplit("-", 1)[1])
    assert 6 <= killed_at < steps
    resumed = helpers.run_cli("train.py", *args)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    restored = re.search(r"Restored \S+ \(step (\d+)\)", resumed.stderr)
    assert restored and int(restored.group(1)) >= killed_at, resumed.stderr[-3000:]
    assert tf.train.latest_checkpoint(logdir).endswith(f"ckpt-{steps}")
    assert f"from step {restored.group(1)} to {steps}" in resumed.stderr
    assert f"Finished at step {steps}" in resumed.stdout


@pytest.mark.parametrize(
    "flag, fragment",
    [
        ("--top_k_percent_pixels=1.5", "--top_k_percent_pixels"),
        ("--label_weights=1,2", "--label_weights"),
        ("--train_crop_size=65", "--train_crop_size"),
        ("--output_stride=12", "--output_stride"),
        ("--train_crop_size=1,1", "--train_crop_size"),
        ("--train_crop_size=9,65", "--train_crop_size=9,65 must be larger than --output_stride"),
        ("--optimizer=sgd", "--optimizer"),
        ("--train_batch_size=0", "--train_batch_size"),
    ],
)
def test_bad_flags_exit_2_with_a_message_naming_the_flag(tmp_path, data_dir, flag, fragment):
    name = flag.split("=")[0] + "="
    if name == "--train_crop_size=" and "," in flag:  # replace TINY's crop (a list flag adds up)
        tiny = [a for a in TINY if not a.startswith(name)]
    else:
        tiny = TINY
    proc = helpers.run_cli_in_process(
        "train.py", f"--train_logdir={tmp_path}", f"--dataset_dir={data_dir}", *tiny, flag
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert fragment in proc.stderr, proc.stderr[-2000:]
    assert not glob.glob(str(tmp_path / "ckpt-*"))


def test_synthetic_preset_goes_into_the_config_not_into_the_flags(tmp_path):
    with helpers.cli_flags_defined("train.py") as train:
        values = flags.FLAGS
        values(["train.py", f"--train_logdir={tmp_path}", "--train_batch_size=4"])
        config = train.config_from_flags(values)
        # The flags keep their defaults; the config has the demo preset, except for the flag
        # given.
        assert values.training_number_of_steps == 30000 and values.train_crop_size == ["513,513"]
        assert values.train_batch_size == config.data.batch_size == 4
    assert config.learning_rate.training_number_of_steps == 1500
    assert list(config.data.crop_size) == [129, 129]
    assert config.model_options.batch_norm_decay == 0.99 and config.data.dataset_name == "synthetic"


def test_synthetic_never_writes_into_a_users_folder(tmp_path):
    user = tmp_path / "mine"
    user.mkdir()
    example = synthetic.encode_example(*synthetic.generate_example(1, "train", 0), "2007_000032")
    shard = tfrecord.write_shards([example], str(user), "train", 1)[0]
    before = open(shard, "rb").read()
    # train.py would build the set there; eval.py never builds data and stops on the run
    # folder that does not exist (instead of waiting for it).
    for script, extra, expected in (
        ("train.py", [f"--train_logdir={tmp_path / 'run'}"], "did not build"),
        (
            "eval.py",
            [f"--checkpoint_dir={tmp_path / 'run'}", "--max_number_of_evaluations=1"],
            str(tmp_path / "run"),
        ),
    ):
        proc = helpers.run_cli_in_process(
            script, *extra, "--dataset=synthetic", f"--dataset_dir={user}"
        )
        assert proc.returncode == 2, (script, proc.stderr[-2000:])
        last = proc.stderr.strip().splitlines()[-1]
        assert expected in last, (script, last)
        assert script == "eval.py" or str(user) in last, (script, last)
        assert os.listdir(user) == [os.path.basename(shard)]
        assert open(shard, "rb").read() == before


def _wait_for(predicate, proc, what, seconds=300):
    deadline = time.time() + seconds
    while time.time() < deadline and proc.poll() is None:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"{what} did not happen (exit {proc.poll()})")


def test_second_trainer_on_a_live_logdir_is_refused_and_a_killed_ones_lock_is_taken_over(
    tmp_path, data_dir
):
    logdir = str(tmp_path / "run")
    args = [f"--train_logdir={logdir}", f"--dataset_dir={data_dir}", "--log_steps=1"] + TINY
    first = subprocess.Popen(
        helpers.cli_command("train.py") + ["--training_number_of_steps=100000"] + args,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=helpers.cli_env(),
        cwd=helpers.REPO,
    )
    try:
        lock = os.path.join(logdir, "train.lock")
        _wait_for(lambda: os.path.exists(lock), first, "the lock file")
        second = helpers.run_cli_in_process("train.py", *args, "--training_number_of_steps=2")
        assert second.returncode == 1, second.stderr[-2000:]
        last = second.stderr.strip().splitlines()[-1]
        assert f"in use by another trainer (pid {first.pid} on " in last, last
        assert first.poll() is None
        os.kill(first.pid, signal.SIGKILL)
        first.wait(timeout=60)
    finally:
        if first.poll() is None:
            first.kill()
    third = helpers.run_cli_in_process("train.py", *args, "--training_number_of_steps=2")
    assert third.returncode == 0, third.stderr[-3000:]
    assert f"taking over the stale lock {lock}" in third.stderr
    assert f"(pid {first.pid} on " in third.stderr
    assert "Finished at step 2" in third.stdout
    assert not os.path.exists(lock)


def test_forced_nan_with_a_checkpoint_every_step_then_a_sane_restart_finishes(tmp_path, data_dir):
    logdir = str(tmp_path / "run")
    args = [
        f"--train_logdir={logdir}",
        f"--dataset_dir={data_dir}",
        "--save_interval_steps=1",
        "--training_number_of_steps=5",
        "--log_steps=1",
    ] + [a for a in TINY if not a.startswith("--base_learning_rate")]
    # Two sane steps, then a learning rate that sends the weights to inf.
    nan = helpers.run_cli_in_process(
        "train.py",
        *args,
        "--base_learning_rate=1e38",
        "--slow_start_step=2",
        "--slow_start_learning_rate=0.01",
    )
    assert nan.returncode == 3, nan.stderr[-3000:]
    last = nan.stderr.strip().splitlines()[-1]
    named = re.search(r"last good checkpoint is (\S+)\. ", last)
    assert named and named.group(1).endswith("ckpt-2"), last
    assert tf.train.latest_checkpoint(logdir) == named.group(1)
    reader = tf.train.load_checkpoint(named.group(1))
    for name in reader.get_variable_to_shape_map():
        value = reader.get_tensor(name)
        if getattr(value, "dtype", None) is not None and value.dtype.kind == "f":
            assert np.all(np.isfinite(value)), name
    sane = helpers.run_cli_in_process("train.py", *args, "--base_learning_rate=0.01")
    assert sane.returncode == 0, sane.stderr[-3000:]
    assert f"Restored {named.group(1)} (step 2)" in sane.stderr
    assert "Finished at step 5" in sane.stdout
