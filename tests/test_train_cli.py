"""train.py end to end through subprocesses: checkpoints, events, SIGKILL and resume, flags."""

import glob
import os
import re
import signal
import subprocess
import sys
import time

import pytest
import tensorflow as tf

from deeplab.data import synthetic

# Every test runs train.py in a subprocess.
pytestmark = pytest.mark.slow


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = [
    "--model_variant=mobilenet_v2",
    "--depth_multiplier=0.25",
    "--train_crop_size=49,49",
    "--train_batch_size=2",
    "--base_learning_rate=0.01",
    "--dataset=synthetic",
    "--min_scale_factor=0.75",
    "--max_scale_factor=1.25",
    "--seed=3",
]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("synthetic"))
    synthetic.build_synthetic_dataset(
        path, num_train=8, num_val=2, num_shards=2, min_size=56, max_size=80
    )
    return path


def _env():
    env = dict(os.environ)
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _train(args, **kwargs):
    return subprocess.run(
        [sys.executable, os.path.join(ROOT, "train.py")] + args,
        capture_output=True,
        text=True,
        env=_env(),
        cwd=ROOT,
        timeout=600,
        **kwargs,
    )


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
    proc = _train(args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert tf.train.latest_checkpoint(logdir).endswith("ckpt-20")
    tags = _scalar_tags(logdir)
    assert tags["total_loss"] == [10, 20] and tags["learning_rate"] == [10, 20]
    assert os.path.exists(os.path.join(logdir, "model_options.json"))
    again = _train(args)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "Nothing to do" in again.stdout and "step 20" in again.stdout


def test_sigkill_then_rerun_resumes_to_the_final_step(tmp_path, data_dir):
    logdir = str(tmp_path / "run")
    args = [
        f"--train_logdir={logdir}",
        f"--dataset_dir={data_dir}",
        "--training_number_of_steps=60",
        "--save_interval_steps=3",
        "--log_steps=50",
        "--max_checkpoints_to_keep=2",
    ] + TINY
    proc = subprocess.Popen(
        [sys.executable, os.path.join(ROOT, "train.py")] + args,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=_env(),
        cwd=ROOT,
    )
    try:
        deadline = time.time() + 300
        while time.time() < deadline and proc.poll() is None:
            latest = tf.train.latest_checkpoint(logdir)
            if latest and int(latest.rsplit("-", 1)[1]) >= 6:
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the run ended before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    killed_at = int(tf.train.latest_checkpoint(logdir).rsplit("-", 1)[1])
    assert 6 <= killed_at < 60
    resumed = _train(args)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    restored = re.search(r"Restored \S+ \(step (\d+)\)", resumed.stderr)
    assert restored and int(restored.group(1)) >= killed_at, resumed.stderr[-3000:]
    assert tf.train.latest_checkpoint(logdir).endswith("ckpt-60")
    assert f"from step {restored.group(1)} to 60" in resumed.stderr
    assert "Finished at step 60" in resumed.stdout


@pytest.mark.parametrize(
    "flag, fragment",
    [
        ("--top_k_percent_pixels=1.5", "--top_k_percent_pixels"),
        ("--label_weights=1,2", "--label_weights"),
        ("--train_crop_size=65", "--train_crop_size"),
        ("--output_stride=12", "--output_stride"),
    ],
)
def test_bad_flags_fail_with_a_message_naming_the_flag(tmp_path, data_dir, flag, fragment):
    proc = _train([f"--train_logdir={tmp_path}", f"--dataset_dir={data_dir}"] + TINY + [flag])
    assert proc.returncode != 0
    assert fragment in proc.stderr, proc.stderr[-2000:]
    assert not glob.glob(str(tmp_path / "ckpt-*"))
