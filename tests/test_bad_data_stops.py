"""A bad training example stops the run in a few lines naming it, after saving the progress;
the split checker lists every problem at once."""

import io

import pytest
import tensorflow as tf
from PIL import Image

from deeplab.data import synthetic, tfrecord, validate
from deeplab.training import BadDataError, Trainer
from tests import helpers

CROP = 49


def _example(index, label_value=None, label_size=None):
    image, label = synthetic.generate_example(3, "train", index, min_size=CROP, max_size=CROP)
    if label_value is not None:
        label[5, 5] = label_value
    if label_size is not None:
        label = label[:label_size, :label_size]
    buffer = io.BytesIO()
    Image.fromarray(label, mode="L").save(buffer, format="PNG")
    return tfrecord.image_seg_to_tfexample(
        synthetic.encode_example(image, label, "x")
        .features.feature["image/encoded"]
        .bytes_list.value[0],
        f"img{index}",
        CROP,
        CROP,
        buffer.getvalue(),
    )


@pytest.fixture
def data_with_bad_examples(tmp_path):
    examples = [_example(i) for i in range(10)]
    examples[7] = _example(7, label_value=10)  # a class of 21, not of a 7-class model
    examples[9] = _example(9, label_size=20)
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
