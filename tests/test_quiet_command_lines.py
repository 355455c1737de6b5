"""Every documented command line as a newcomer runs it (TensorFlow's default native logging):
`--help` is readable and exits 0; a tiny run of each prints no `E` line, no notice twice and
no line over 200 characters; typo'd paths stop at once with one line (issue 21). On the same
tiny run, what a user of the official code meets first: short errors for checkpoints that do
not fit the flags, the official frozen-graph export, eval and vis progress over the split."""

import json
import os
import re
import socket
import subprocess
import sys

import numpy as np
import pytest

from tests import helpers

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
        # The final line reports the run's average throughput.
        assert "images/s on average over 2 steps" in runs[name].stdout


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
        # The first in a fresh process (all it prints), the others through main() in process.
        if flag == "checkpoint_dir" and command == "eval":
            out = _run(command, args, cwd=str(base), timeout=120)
        else:
            out = helpers.run_cli_in_process(f"{command}.py", *args)
        assert out.returncode == 2, out.stderr[-2000:]
        errors = [line for line in out.stderr.splitlines() if "FATAL" in line]
        assert errors == [errors[0]] and errors[0].startswith(
            f"FATAL Flags parsing error: --{flag}={path}: "
        )
        assert "Waiting" not in out.stderr
        assert not os.path.exists(path)
    assert not os.path.exists(base / "runs")  # no stray runs/eval
    assert not os.path.exists(base / "x")


@pytest.mark.parametrize(
    "flag, hint",
    [
        ("--num_classes=21", "likely flag: --num_classes=21 here, 7 in "),
        ("--model_variant=xception_65", "likely flag: --model_variant=xception_65 here, "),
    ],
)
def test_checkpoint_of_other_flags_gives_a_short_error(runs, flag, hint):
    out = helpers.run_cli_in_process(
        "eval.py",
        f"--checkpoint_dir={runs['logdir']}",
        f"--dataset_dir={runs['data']}",
        "--eval_crop_size=81,81",
        "--max_number_of_evaluations=1",
        flag,
    )
    lines = helpers.printed_lines(out)
    assert out.returncode == 1
    assert len(lines) <= 10, "\n".join(lines)
    assert not [line for line in lines if "Traceback" in line or "Value in checkpoint" in line]
    text = "\n".join(lines)
    assert "first differing variable: " in text and "shape in the checkpoint: " in text
    assert hint in text and "model_options.json" in text
    assert "Waiting for" not in text  # a checkpoint exists


def test_export_writes_the_official_frozen_graph_quietly(runs):
    import tensorflow as tf

    from deeplab.checkpoints.official import load_checkpoint
    from deeplab.export import frozen_graph
    from deeplab.modeling import inference
    from deeplab.modeling.options import ModelOptions

    path = str(runs["base"] / "frozen" / "frozen_inference_graph.pb")
    out = _run("export", [f"--checkpoint_path={runs['logdir']}", f"--export_path={path}"])
    assert out.returncode == 0, out.stderr[-3000:]
    assert "ImageTensor:0" in out.stdout
    _assert_quiet(out, runs["base"])

    # The official demo's way: a tf.compat.v1 graph and session.
    image = np.random.RandomState(0).randint(0, 256, (480, 640, 3)).astype(np.uint8)
    graph = tf.Graph()
    with graph.as_default():
        graph_def = tf.compat.v1.GraphDef.FromString(open(path, "rb").read())
        tf.import_graph_def(graph_def, name="")
        assert graph.get_tensor_by_name("ImageTensor:0").dtype == tf.uint8
    with tf.compat.v1.Session(graph=graph) as session:
        labels = session.run("SemanticPredictions:0", feed_dict={"ImageTensor:0": [image]})
    assert labels.shape == (1, 480, 640)

    with open(os.path.join(runs["logdir"], "model_options.json")) as f:
        saved = json.load(f)
    fields = {k: v for k, v in saved.items() if k in ModelOptions.__dataclass_fields__}
    options = inference.inference_options(ModelOptions(**fields))
    model, _ = inference.build_inference_model(options)
    load_checkpoint(model, str(runs["logdir"]))
    expected = inference.predict_labels(
        model, image[None], logits_output_stride=inference.logits_output_stride(options)
    ).numpy()
    np.testing.assert_array_equal(labels, expected)
    np.testing.assert_array_equal(frozen_graph.run_frozen_graph(path, image), expected[0])


def test_eval_and_vis_show_progress_over_the_split(runs):
    common = [f"--checkpoint_dir={runs['logdir']}", f"--dataset_dir={runs['data']}"]
    out = helpers.run_cli_in_process(
        "eval.py", *common, "--eval_crop_size=81,81", "--max_number_of_evaluations=1"
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "2/2" in out.stdout and "Unknown" not in out.stdout  # the split has 2 images
    assert "Waiting for" not in out.stderr
    # The official single-scale inference flags run through eval.py too.
    out = helpers.run_cli_in_process(
        "eval.py",
        *common,
        "--eval_crop_size=81,81",
        "--max_number_of_evaluations=1",
        "--image_pyramid=0.75,1.0",
        "--merge_method=avg",
        "--prediction_with_upsampled_logits=false",
        f"--eval_logdir={runs['base'] / 'eval_pyramid'}",
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "eval/miou_1.0_overall: " in out.stdout
    out = helpers.run_cli_in_process(
        "vis.py",
        *common,
        f"--vis_logdir={runs['base'] / 'vis_progress'}",
        "--vis_crop_size=81,81",
        "--max_number_of_iterations=1",
        "--save_figures=false",
    )
    assert out.returncode == 0, out.stderr[-3000:]
    progress = [line for line in out.stderr.splitlines() if "images (" in line]
    assert [line.split("] ")[1].split(" (")[0] for line in progress] == [
        "1/2 images",
        "2/2 images",
    ]
