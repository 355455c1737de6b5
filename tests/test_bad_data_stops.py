"""A bad example stops training in a few lines naming it, after saving the progress, and stops
evaluation and visualisation the same way; the split checker lists every problem at once."""

import os

import pytest
import tensorflow as tf

from deeplab.data import tfrecord, validate
from deeplab.data.config import DataConfig
from deeplab.evaluation.runner import BadEvalDataError, EvalConfig, evaluate_checkpoint
from deeplab.evaluation.vis_runner import BadVisDataError, VisConfig, visualize_checkpoint
from deeplab.modeling import inference
from deeplab.training import BadDataError, Trainer
from tests import helpers

CROP = 49


@pytest.fixture
def data_with_bad_examples(tmp_path):
    examples = [helpers.synthetic_example(i, CROP) for i in range(10)]
    # A class of 21, not of a 7-class model; a label of the wrong size.
    examples[7] = helpers.synthetic_example(7, CROP, label_value=10)
    examples[9] = helpers.synthetic_example(9, CROP, label_size=20)
    folder = str(tmp_path / "data")
    tfrecord.write_shards(examples, folder, "train", 1)
    return folder


@pytest.mark.slow
def test_a_bad_example_stops_training_in_a_few_lines_after_saving(tmp_path, data_with_bad_examples):
    config = helpers.make_config(
        tmp_path / "run",
        steps=50,
        dataset_dir=data_with_bad_examples,
        batch_size=2,
        save_interval_steps=1000,
    )
    with pytest.raises(BadDataError) as err:
        Trainer(config, model_fn=helpers.small_model).run()
    message = str(err.value)
    lines = message.splitlines()
    assert len(lines) <= 10, message
    assert lines[0].startswith("bad example 'img") and data_with_bad_examples in lines[0]
    assert "Training stopped at step" in message and "--skip_bad_examples" in message
    assert "validate_data --dataset=synthetic" in message
    step = int(message.split("Training stopped at step ")[1].split(";")[0])
    if step:
        assert f"saved in {tmp_path / 'run'}/ckpt-{step}" in message
        assert tf.train.latest_checkpoint(str(tmp_path / "run")).endswith(f"ckpt-{step}")


@pytest.mark.slow
def test_the_split_checker_reports_every_problem(data_with_bad_examples):
    report = validate.check_split("synthetic", data_with_bad_examples, "train", progress=False)
    assert report.examples == 10 and len(report.problems) == 2
    assert "'img7'" in report.problems[0] and "label value 10 outside 0..6" in report.problems[0]
    assert "'img9'" in report.problems[1] and "label size 20x20" in report.problems[1]
    assert report.summary() == "2 of 10 examples are bad."
    with_21 = validate.check_split("synthetic", data_with_bad_examples, "train", 21, False)
    assert with_21.problems == report.problems[1:]


@pytest.mark.slow
@pytest.mark.parametrize("job", ["eval", "vis"])
def test_a_bad_example_stops_eval_and_vis_in_a_few_lines_naming_it(run, tmp_path, job):
    """eval.py / vis.py on a split with a label of the wrong size: the library entry raises its
    bad-data error (printed as is by the CLI, exit 1) naming the example and its file, what was
    written, and the fix; no traceback of the input pipeline."""
    folder = helpers.split_with_a_bad_example(str(tmp_path / "data"), "val")
    options = inference.inference_options(run.options)
    data = DataConfig(
        "synthetic", folder, "val", crop_size=(65, 65), batch_size=1, is_training=False,
        model_variant=options.model_variant, num_classes=options.num_classes,
    )  # fmt: skip
    settings = inference.InferenceSettings.for_options(options)
    common = dict(checkpoint_dir=run.run_dir, model_options=options, data=data, settings=settings)
    if job == "eval":
        config = EvalConfig(
            eval_logdir=str(tmp_path / "eval"), max_number_of_evaluations=1, **common
        )
        error, entry, stopped = BadEvalDataError, evaluate_checkpoint, "nothing was written"
    else:
        config = VisConfig(vis_logdir=str(tmp_path / "vis"), max_number_of_iterations=1, **common)
        error, entry, stopped = BadVisDataError, visualize_checkpoint, "stopped after 2 images"
    with pytest.raises(error) as err:
        entry(config)
    message = str(err.value)
    lines = message.splitlines()
    assert len(lines) <= 6, message
    assert lines[0].startswith("bad example 'img2'") and folder in lines[0], message
    assert "label" in lines[0] and stopped in message
    assert "--skip_bad_examples" in message and "validate_data --dataset=synthetic" in message
    if job == "eval":
        assert not os.path.exists(tmp_path / "eval" / "results.json")
