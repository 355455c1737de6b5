"""A newcomer's mistakes stop with one line (issue 21): a typo'd --dataset_dir or
--checkpoint_dir builds nothing, waits for nothing and writes nothing; eval's progress bar and
table agree on the mIoU; --output_json leaves no stale results.json; --help is readable and no
error; the log filter keeps every line short and drops the converter's internals."""

import ast
import glob
import json
import logging
import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from absl import app, flags

from deeplab.cli import flags as cli_flags
from deeplab.cli import logs as cli_logs
from deeplab.evaluation import loop as evaluation
from deeplab.evaluation import metrics
from deeplab.evaluation import results as eval_results
from deeplab.modeling import inference

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_a_typod_dataset_dir_stops_naming_the_flag_and_builds_nothing(tmp_path):
    typo = str(tmp_path / "data" / "synthtic")
    with pytest.raises(flags.ValidationError) as err:
        cli_flags.check_dataset_dir("synthetic", typo)
    message = str(err.value)
    assert message.startswith(f"--dataset_dir={typo}: no such directory")
    assert "build_synthetic_data.py" in message and "\n" not in message
    with pytest.raises(flags.ValidationError, match="no such directory$"):
        cli_flags.check_dataset_dir("pascal_voc_seg", typo)
    assert not os.path.exists(tmp_path / "data")
    cli_flags.check_dataset_dir("pascal_voc_seg", str(tmp_path))  # exists: fine
    cli_flags.check_dataset_dir("tfds:oxford_iiit_pet", None)  # TFDS needs no dir


def _checkpoint_flags(count_flag, **values):
    flag_values = flags.FlagValues()
    flags.DEFINE_string("checkpoint_dir", None, "", flag_values=flag_values)
    flags.DEFINE_integer(count_flag, 0, "", flag_values=flag_values)
    flags.DEFINE_float("eval_timeout_secs", None, "", flag_values=flag_values)
    flag_values(["prog"] + [f"--{k}={v}" for k, v in values.items()])
    return flag_values


@pytest.mark.parametrize(
    "script, count_flag",
    [("eval", "max_number_of_evaluations"), ("vis", "max_number_of_iterations")],
)
def test_a_typod_or_empty_checkpoint_dir_stops_instead_of_waiting(tmp_path, script, count_flag):
    typo, empty = str(tmp_path / "runs" / "dmeo"), tmp_path / "empty"
    empty.mkdir()
    for path, problem in ((typo, "no such checkpoint, directory or archive"), (empty, "holds no")):
        values = _checkpoint_flags(count_flag, checkpoint_dir=path, **{count_flag: 1})
        with pytest.raises(flags.ValidationError) as err:
            cli_flags.check_checkpoint_source(values, script)
        assert str(err.value).startswith(f"--checkpoint_dir={path}: {problem}")
        assert "--eval_timeout_secs" in str(err.value)
        # Waiting stays when asked for: a timeout, or no count (the official endless loop).
        asked = dict(checkpoint_dir=path, eval_timeout_secs=30, **{count_flag: 1})
        cli_flags.check_checkpoint_source(_checkpoint_flags(count_flag, **asked), script)
        for count in (0, -1):  # non-positive: the official endless loop
            forever = _checkpoint_flags(count_flag, checkpoint_dir=path, **{count_flag: count})
            cli_flags.check_checkpoint_source(forever, script)
    assert not os.path.exists(tmp_path / "runs")
    # Nothing lands beside a directory training has not created yet.
    assert inference.default_output_dir(typo, "eval") == os.path.join(typo, "eval")
    # A training dir with a checkpoint, and a checkpoint prefix, are read.
    tf.train.Checkpoint(step=tf.Variable(3)).save(str(empty / "ckpt"))
    for path in (empty, tf.train.latest_checkpoint(str(empty))):
        values = _checkpoint_flags(count_flag, checkpoint_dir=path, **{count_flag: 1})
        cli_flags.check_checkpoint_source(values, script)
    prefix = tf.train.latest_checkpoint(str(empty))
    assert inference.default_output_dir(prefix, "eval") == os.path.join(str(empty), "eval")
    # export.py's --checkpoint_path: the same test, without waiting.
    assert cli_flags.checkpoint_source_problem(typo).startswith("no such checkpoint")
    (tmp_path / "still_empty").mkdir()
    assert (
        cli_flags.checkpoint_source_problem(str(tmp_path / "still_empty")) == "holds no checkpoint"
    )
    assert cli_flags.checkpoint_source_problem(prefix) is None


@pytest.mark.slow  # builds and runs a model: the full suite's, not the quick loop's
def test_the_eval_bar_shows_the_confusion_matrix_miou_of_the_table(capsys):
    keras.utils.set_random_seed(1)
    model = keras.Sequential([keras.Input((None, None, 3)), keras.layers.Conv2D(3, 1)])
    rng = np.random.default_rng(0)
    batches = [
        {
            "image": rng.uniform(0, 255, (2, 9, 9, 3)).astype(np.float32),
            "label": rng.integers(0, 3, (2, 9, 9, 1)).astype(np.int32),
        }
        for _ in range(4)
    ]
    results = evaluation.evaluate(model, batches, 3, 255, num_batches=4)
    bar = capsys.readouterr().out
    assert f"miou: {results['miou']:.4f}" in bar, bar
    # The average of the running values (what the bar showed before) differs here.
    running, total = [], np.zeros((3, 3), np.int64)
    for batch in batches:
        predictions = inference.predict_labels(model, batch["image"], (1.0,), False, None)
        total += metrics.batch_confusion_matrix(batch["label"][..., 0], predictions, 3, 255).numpy()
        running.append(metrics.iou_from_confusion_matrix(total)["miou"])
    assert f"{np.mean(running):.4f}" != f"{results['miou']:.4f}"


def test_output_json_leaves_no_stale_results_json(tmp_path):
    def results(diagonal):
        cm = np.array([[diagonal, 1], [1, diagonal]], np.int64)
        return dict(
            metrics.iou_from_confusion_matrix(cm), confusion_matrix=cm, class_names=["a", "b"]
        )

    eval_results.write_result_files(results(1), str(tmp_path))
    extra = tmp_path / "elsewhere" / "metrics.json"
    paths = eval_results.write_result_files(results(9), str(tmp_path), output_json=str(extra))
    assert paths["output_json"] == str(extra)
    for path in (tmp_path / "results.json", extra):
        assert json.loads(path.read_text())["miou"] == pytest.approx(9 / 11)


def _docstring(path):
    """The module docstring as Python reads it (a `\\` at a line end joins lines unless raw)."""
    with open(path) as f:
        return ast.get_docstring(ast.parse(f.read()), clean=False)


def test_help_keeps_the_usage_line_breaks_and_exits_0(capsys):
    for path in glob.glob(os.path.join(ROOT, "deeplab", "cli", "*.py")):
        usage = _docstring(path) or ""
        assert max(map(len, usage.splitlines() or [""])) <= 100, path
    app.define_help_flags()
    try:
        with pytest.raises(SystemExit) as done:
            cli_flags.parse_flags_exit_2(["eval.py", "--helpshort"])
        assert done.value.code == 0
        with pytest.raises(SystemExit) as done:
            cli_flags.parse_flags_exit_2(["eval.py", "--no_such_flag"])
        assert done.value.code == 2
    finally:
        flags.FLAGS.unparse_flags()
    capsys.readouterr()


def test_the_log_filter_drops_the_converter_internals_and_keeps_lines_short():
    prefix = b"I0000 00:00:1796371047.260122   27259 "
    noise = [
        b"W1204 07:57:27.249234 140156743060352 lite.py:2203] Please consider providing the "
        b"trackable_obj argument in the from_concrete_functions.",
        b"/x/convert.py:846: UserWarning: Statistics for quantized inputs were expected, but not "
        b"specified; continuing anyway.",
        b"  warnings.warn(",
        b"fully_quantize: 0, inference_type: 6, input_inference_type: UINT8, "
        b"output_inference_type: INT8",
        b"I1204 functional_saver.py:440] Sharding callback duration: 171 microseconds",
        b"I1204 signature_serialization.py:156] Function `_predict` contains input name(s) "
        b"resource with unsupported characters which will be renamed",
        prefix + b"single_machine.cc:376] Starting new session",
    ]
    count = prefix + b"flatbuffer_export.cc:4302] Estimated count of arithmetic ops: 10.2 M  ops"
    onednn = (
        prefix + b"port.cc:153] oneDNN custom operations are on. You may see slightly different "
        b"numerical results due to floating-point round-off errors from different computation "
        b"orders. To turn them off, set the environment variable `TF_ENABLE_ONEDNN_OPTS=0`."
    )
    line_filter = cli_logs.LineFilter()
    kept = [line_filter.output(line) for line in noise + [count, count, onednn, b"ours"]]
    kept = [line for line in kept if line is not None]
    assert kept[0] == count and kept[2] == b"ours" and len(kept) == 3
    assert kept[1].startswith(prefix + b"port.cc:153] oneDNN custom operations are on (")
    assert len(kept[1]) < 200 and b"TF_ENABLE_ONEDNN_OPTS=0" in kept[1]
    # Long Python log records are wrapped onto short lines; TensorFlow's renaming is dropped.
    record = logging.LogRecord("tensorflow", logging.INFO, "x", 1, "a, " * 100, None, None)
    assert cli_logs.ShortRecords().filter(record)
    assert max(map(len, record.getMessage().splitlines())) <= cli_logs.WRAP
    record.msg = "Function `_predict_encoded` contains input name(s) input_8, input_9"
    assert not cli_logs.ShortRecords().filter(record)
