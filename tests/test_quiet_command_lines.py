"""Every documented command line as a newcomer runs it (TensorFlow's default native logging):
`--help` is readable and exits 0; a tiny run of each prints no `E` line, no notice twice and
no line over 200 characters; typo'd paths stop at once with one line (issue 21)."""

import json
import os
import re
import socket
import subprocess
import sys

import pytest

# One worker runs this module (its module fixtures are built once).
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("quiet_command_lines")]

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = [
    "--model_variant=mobilenet_v2",
    "--depth_multiplier=0.25",
    "--dataset=synthetic",
]
COMMANDS = {
    "train": ["train.py"],
    "eval": ["eval.py"],
    "vis": ["vis.py"],
    "export": ["export.py"],
    "summary": ["-m", "deeplab.summary"],
    "benchmarks": ["-m", "benchmarks"],
    "validate_data": ["-m", "deeplab.cli.validate_data"],
    **{
        f"build_{name}": [f"datasets/build_{name}_data.py"]
        for name in ("synthetic", "voc2012", "cityscapes", "ade20k")
    },
}
# The prefix of a native or absl log line: severity, date or zeros, time, thread, file:line.
LOG_PREFIX = re.compile(r"^[IWEF]\d{4} [\d:. ]+ +\d+ [\w.]+:\d+\] ")


def _run(name, args=(), cwd=ROOT, timeout=600):
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    for key in ("DEEPLAB_RAW_LOGS", "TF_CPP_MIN_LOG_LEVEL"):
        env.pop(key, None)
    command = [sys.executable] + [
        os.path.join(ROOT, part) if part.endswith(".py") else part for part in COMMANDS[name]
    ]
    return subprocess.run(
        command + list(args), capture_output=True, text=True, env=env, cwd=cwd, timeout=timeout
    )


def _assert_quiet(out, folder=None):
    """`folder`: the test's temp dir, written as <dir> before measuring lines (a user's paths
    are their own length)."""
    text = out.stdout + out.stderr
    lines = (text.replace(str(folder), "<dir>") if folder else text).splitlines()
    assert not [line for line in lines if re.match(r"E\d{4} ", line)], out.stderr
    assert max(map(len, lines), default=0) <= 200, max(lines, key=len)
    messages = [LOG_PREFIX.sub("", line) for line in lines if LOG_PREFIX.match(line)]
    assert len(messages) == len(set(messages)), messages  # no notice twice
    assert not [line for line in lines if "deprecated" in line or "Traceback" in line]


def test_help_is_a_readable_usage_and_exits_0():
    for name in COMMANDS:
        out = _run(name, ["--help"])
        assert out.returncode == 0, (name, out.stderr[-2000:])
        assert out.stdout.splitlines()[0].strip(), name  # the usage paragraph comes first
        _assert_quiet(out)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A tiny run of each command, in order: build, train (over a stale lock), eval, vis,
    int8 LiteRT export, summary, the split checker."""
    base = tmp_path_factory.mktemp("quiet")
    data, logdir = str(base / "data"), base / "run"
    logdir.mkdir()
    stale = {"pid": 999999999, "host": socket.gethostname()}  # a trainer that is gone
    (logdir / "train.lock").write_text(json.dumps(stale))
    common = [f"--checkpoint_dir={logdir}", f"--dataset_dir={data}"]
    steps = {
        "build_synthetic": ["--output_dir=" + data, "--num_train=4", "--num_val=2"]
        + ["--min_size=40", "--max_size=56", "--num_shards=1"],
        "train": TINY
        + [f"--dataset_dir={data}", f"--train_logdir={logdir}", "--train_crop_size=49,49"]
        + ["--train_batch_size=2", "--training_number_of_steps=2"],
        "eval": common + ["--eval_crop_size=57,57", "--max_number_of_evaluations=1"],
        "vis": common
        + ["--vis_crop_size=57,57", "--max_number_of_iterations=1"]
        + ["--save_figures=false", f"--vis_logdir={base / 'vis'}"],
        "export": [f"--checkpoint_path={logdir}", f"--export_path={base / 'exported'}"]
        + ["--tflite", "--quantize=int8", "--crop_size=49,49", "--num_calibration_images=2"],
        "summary": ["--model_variant=mobilenet_v2", "--crop_size=65,65"],
        "validate_data": ["--dataset=synthetic", f"--dataset_dir={data}", "--split=val"],
    }
    outputs = {}
    for name, args in steps.items():
        outputs[name] = _run(name, args, cwd=str(base))
        assert outputs[name].returncode == 0, (name, outputs[name].stderr[-3000:])
    return dict(outputs, base=base, logdir=logdir, data=data)


@pytest.mark.parametrize(
    "name", ["build_synthetic", "train", "eval", "vis", "export", "summary", "validate_data"]
)
def test_a_tiny_run_is_quiet(runs, name):
    _assert_quiet(runs[name], runs["base"])
    if name == "train":
        assert runs[name].stderr.count("taking over the stale lock") == 1


def test_typod_paths_stop_at_once_with_one_line(runs):
    base = runs["base"]
    typo_run, typo_data = str(base / "runs" / "dmeo"), str(base / "data" / "synthtic")
    count = "--max_number_of_evaluations=1"
    for command, args, flag, path in (
        ("eval", [f"--checkpoint_dir={typo_run}", count], "checkpoint_dir", typo_run),
        (
            "eval",
            [f"--checkpoint_dir={runs['logdir']}", f"--dataset_dir={typo_data}", count],
            "dataset_dir",
            typo_data,
        ),
        (
            "export",
            [f"--checkpoint_path={typo_run}", f"--export_path={base / 'x'}"],
            "checkpoint_path",
            typo_run,
        ),
    ):
        out = _run(command, args, cwd=str(base), timeout=120)
        assert out.returncode == 2, out.stderr[-2000:]
        errors = [line for line in out.stderr.splitlines() if "FATAL" in line]
        assert errors == [errors[0]] and errors[0].startswith(
            f"FATAL Flags parsing error: --{flag}={path}: "
        )
        assert "Waiting" not in out.stderr
        assert not os.path.exists(path)
    assert not os.path.exists(base / "runs")  # no stray runs/eval
    assert not os.path.exists(base / "x")
