"""What a user of the official code meets first, through the command lines: quiet logs, short
errors for checkpoints that do not fit the flags, the official frozen-graph export."""

import json
import os

import numpy as np
import pytest

from deeplab.data import synthetic
from tests import helpers

# One worker runs this module (its module fixtures are built once).
pytestmark = pytest.mark.xdist_group("first_contact")

TINY = helpers.TINY_FLAGS


def _run(script, args, quiet=True):
    env = helpers.cli_env()
    env.pop("DEEPLAB_RAW_LOGS", None)
    if "CUDA_VISIBLE_DEVICES" not in os.environ:  # as a user runs it
        env.pop("CUDA_VISIBLE_DEVICES")
    if quiet:
        env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    else:  # what a user sees: TensorFlow's default native logging
        env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    return helpers.run_cli(script, *args, env=env, timeout=900)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A 3-step CPU training run (7 classes, MobileNetV2) with TensorFlow's default logging."""
    base = tmp_path_factory.mktemp("first_contact")
    data = str(base / "data")
    synthetic.build_synthetic_dataset(
        data, num_train=4, num_val=2, num_shards=1, min_size=56, max_size=80
    )
    logdir = str(base / "run")
    out = _run(
        "train.py",
        TINY
        + [
            f"--dataset_dir={data}",
            f"--train_logdir={logdir}",
            "--training_number_of_steps=3",
            "--log_steps=1",
        ],
        quiet=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return {"data": data, "logdir": logdir, "train": out, "base": base}


@pytest.mark.slow
def test_training_logs_are_quiet(run):
    out = run["train"]
    lines = (out.stdout + out.stderr).splitlines()
    assert not [line for line in lines if line.startswith("E")], out.stderr
    assert max(len(line) for line in lines) <= 300
    assert sum("oneDNN custom operations are on" in line for line in lines) <= 1
    assert not [line for line in lines if "deprecated" in line]
    # The final line reports the run's average throughput.
    assert "images/s on average over 3 steps" in out.stdout


def _error_lines(out):
    return [line for line in (out.stdout + out.stderr).splitlines() if line.strip()]


@pytest.mark.slow
@pytest.mark.parametrize(
    "flag, hint",
    [
        ("--num_classes=21", "likely flag: --num_classes=21 here, 7 in "),
        ("--model_variant=xception_65", "likely flag: --model_variant=xception_65 here, "),
    ],
)
def test_checkpoint_of_other_flags_gives_a_short_error(run, flag, hint):
    out = helpers.run_cli_in_process(
        "eval.py",
        *[
            f"--checkpoint_dir={run['logdir']}",
            f"--dataset_dir={run['data']}",
            "--eval_crop_size=81,81",
            "--max_number_of_evaluations=1",
            flag,
        ],
    )
    lines = _error_lines(out)
    assert out.returncode == 1
    assert len(lines) <= 10, "\n".join(lines)
    assert not [line for line in lines if "Traceback" in line or "Value in checkpoint" in line]
    text = "\n".join(lines)
    assert "first differing variable: " in text and "shape in the checkpoint: " in text
    assert hint in text and "model_options.json" in text
    assert "Waiting for" not in text  # a checkpoint exists


@pytest.mark.slow
def test_export_writes_the_official_frozen_graph(run):
    import tensorflow as tf

    from deeplab.checkpoints.official import load_checkpoint
    from deeplab.export import frozen_graph
    from deeplab.modeling import inference
    from deeplab.modeling.options import ModelOptions

    path = str(run["base"] / "exported" / "frozen_inference_graph.pb")
    out = _run("export.py", [f"--checkpoint_path={run['logdir']}", f"--export_path={path}"])
    assert out.returncode == 0, out.stderr[-3000:]
    assert "ImageTensor:0" in out.stdout
    lines = (out.stdout + out.stderr).splitlines()
    assert max(len(line) for line in lines) <= 300

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

    with open(os.path.join(run["logdir"], "model_options.json")) as f:
        saved = json.load(f)
    fields = {k: v for k, v in saved.items() if k in ModelOptions.__dataclass_fields__}
    options = inference.inference_options(ModelOptions(**fields))
    model, _ = inference.build_inference_model(options)
    load_checkpoint(model, run["logdir"])
    expected = inference.predict_labels(
        model, image[None], logits_output_stride=inference.logits_output_stride(options)
    ).numpy()
    np.testing.assert_array_equal(labels, expected)
    np.testing.assert_array_equal(frozen_graph.run_frozen_graph(path, image), expected[0])


@pytest.mark.slow
def test_eval_and_vis_show_progress_over_the_split(run):
    common = [f"--checkpoint_dir={run['logdir']}", f"--dataset_dir={run['data']}"]
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
        f"--eval_logdir={run['base'] / 'eval_pyramid'}",
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "eval/miou_1.0_overall: " in out.stdout
    vis_dir = str(run["base"] / "vis")
    out = helpers.run_cli_in_process(
        "vis.py",
        *common,
        f"--vis_logdir={vis_dir}",
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


@pytest.mark.slow
def test_missing_dataset_dir_gives_one_error_line(tmp_path):
    missing = str(tmp_path / "nowhere")
    out = helpers.run_cli_in_process(
        "train.py",
        *[f for f in helpers.TINY_FLAGS if not f.startswith(("--dataset=", "--seed="))],
        "--dataset=pascal_voc_seg",
        f"--dataset_dir={missing}",
        f"--train_logdir={tmp_path / 'run'}",
    )
    lines = _error_lines(out)
    assert out.returncode == 2  # a flag error, as every other
    assert len(lines) <= 10, "\n".join(lines)
    assert [
        line
        for line in lines
        if line.startswith("FATAL Flags parsing error: --dataset_dir=") and missing in line
    ]
    assert not [line for line in lines if "Traceback" in line]


def test_log_filter_drops_only_the_known_start_up_noise():
    from deeplab.cli.logs import LineFilter

    lines = [
        b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
        b"I0000 port.cc:153] oneDNN custom operations are on. You may see ...",
        b"I0000 cudart_stub.cc:31] Could not find cuda drivers on your machine, GPU will not be used.",
        b"I0000 cpu_feature_guard.cc:227] This TensorFlow binary is optimized to use available CPU "
        b"instructions in performance-critical operations.",
        b"To enable the following instructions: AVX2 FMA, in other operations, rebuild TensorFlow",
        b"I0000 port.cc:153] oneDNN custom operations are on. You may see ...",
        b"E0000 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error (303)",
        b"E0000 some_op.cc:1] a real error",
        b"To enable the following instructions: a line of ours",
    ]
    line_filter = LineFilter()
    assert [line for line in lines if line_filter.keep(line)] == [lines[1], lines[2], *lines[7:]]
    # Without TensorFlow's no-driver notice the cuInit error is a real one and stays.
    assert LineFilter().keep(lines[6])
