"""train.py, eval.py, export.py and `python -m deeplab.summary` with the MobileNetV3 variants
and the official Cityscapes recipe flags (subprocesses, small crops on the synthetic set)."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from deeplab.data import synthetic

VARIANTS = ["mobilenet_v3_large_seg", "mobilenet_v3_small_seg"]
SYNTHETIC_CLASSES = 7
TRAIN_CROP = 65


def _recipe_flags(variant, num_classes, pooling_crop):
    """The model_zoo.md Cityscapes flags, with a pooling window that fits small crops: at
    output stride 32 the window is (crop - 1) / 32 + 1 features, so inputs must be at least
    `pooling_crop` (the official 769 needs 769x769 inputs)."""
    return [
        f"--model_variant={variant}",
        f"--image_pooling_crop_size={pooling_crop},{pooling_crop}",
        "--image_pooling_stride=4,5",
        "--add_image_level_feature=1",
        "--aspp_convs_filters=128",
        "--aspp_with_concat_projection=0",
        "--aspp_with_squeeze_and_excitation=1",
        "--decoder_use_sum_merge=1",
        f"--decoder_filters={num_classes}",
        "--decoder_output_is_logits=1",
        "--image_se_uses_qsigmoid=1",
        "--decoder_output_stride=8",
        "--output_stride=32",
    ]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("synthetic"))
    synthetic.build_synthetic_dataset(
        path, num_train=6, num_val=2, num_shards=1, min_size=64, max_size=96
    )
    return path


@pytest.mark.slow
@pytest.mark.parametrize("variant", VARIANTS)
def test_train_eval_export_on_synthetic_data(variant, data_dir, tmp_path, eval_fixtures):
    model_flags = _recipe_flags(variant, SYNTHETIC_CLASSES, TRAIN_CROP)
    logdir = tmp_path / "train"
    result = eval_fixtures.run_cli(
        "train.py",
        f"--train_logdir={logdir}",
        "--dataset=synthetic",
        f"--dataset_dir={data_dir}",
        f"--train_crop_size={TRAIN_CROP},{TRAIN_CROP}",
        "--train_batch_size=2",
        "--training_number_of_steps=3",
        "--save_interval_steps=3",
        "--log_steps=1",
        *model_flags,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert tf.train.latest_checkpoint(str(logdir)).endswith("ckpt-3")
    with open(logdir / "model_options.json") as f:
        saved = json.load(f)
    saved = saved.get("model_options", saved)
    assert saved["model_variant"] == variant and saved["image_pooling_stride"] == [4, 5]
    assert saved["decoder_output_is_logits"] is True

    # eval.py and export.py read the model from model_options.json; the window (3x3 features)
    # and stride are kept, so at the 225x225 eval crop the image pooling is local.
    output_json = tmp_path / "metrics.json"
    result = eval_fixtures.run_cli(
        "eval.py",
        f"--checkpoint_dir={logdir}",
        f"--dataset_dir={data_dir}",
        "--max_number_of_evaluations=1",
        f"--output_json={output_json}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    data = json.loads(output_json.read_text())
    assert data["step"] == 3 and len(data["per_class_iou"]) == SYNTHETIC_CLASSES
    assert 0.0 <= data["miou"] <= 1.0

    export_dir = tmp_path / "export"
    result = eval_fixtures.run_cli(
        "export.py", f"--checkpoint_path={logdir}", f"--export_path={export_dir}"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    serve = tf.saved_model.load(str(export_dir)).signatures["serving_default"]
    images = np.random.default_rng(0).integers(0, 256, (1, 100, 130, 3), np.uint8)
    out = serve(images=tf.constant(images))
    assert out["semantic_predictions"].shape == (1, 100, 130)
    probabilities = out["semantic_probabilities"].numpy()
    assert probabilities.shape == (1, 100, 130, SYNTHETIC_CLASSES)
    np.testing.assert_allclose(probabilities.sum(-1), 1.0, atol=1e-5)


@pytest.mark.slow
def test_official_checkpoint_exported_with_the_official_flags(
    tmp_path, eval_fixtures, model_fixtures
):
    variant = "mobilenet_v3_small_seg"
    folder, flags = model_fixtures.official_fixture(variant)
    export_dir = tmp_path / "official"
    result = eval_fixtures.run_cli(
        "export.py",
        f"--checkpoint_path={folder}",
        f"--export_path={export_dir}",
        *flags["official_flags"],
    )
    assert result.returncode == 0, result.stderr[-3000:]
    images = np.load(os.path.join(folder, "input.npy"))
    out = tf.saved_model.load(str(export_dir)).signatures["serving_default"](
        images=tf.constant(images)
    )
    probabilities = out["semantic_probabilities"].numpy()[:, ::4, ::4, :]
    official = tf.nn.softmax(np.load(os.path.join(folder, "logits_upsampled_every4.npy"))).numpy()
    assert probabilities.shape == official.shape == (1, 193, 193, 19)
    assert np.abs(probabilities - official).max() < 1e-3
    predictions = out["semantic_predictions"].numpy()[:, ::4, ::4]
    assert np.mean(predictions == official.argmax(-1)) >= 0.999


@pytest.mark.slow
@pytest.mark.parametrize("variant", VARIANTS)
def test_summary_cli_prints_the_official_figures(variant, eval_fixtures, model_fixtures):
    facts = model_fixtures.facts()[f"{variant}_19classes"]
    result = eval_fixtures.run_cli(
        "deeplab.summary", *facts["official_flags_argv"], "--num_classes=19", "--crop_size=769,769"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"trainable parameters {facts['trainable_params']:,};" in result.stdout
    official = facts["madds_769x769"]
    assert (
        f"official TF1 profiler count (predict_labels graph, float ops / 2): "
        f"{official / 1e9:.3f}B" in result.stdout
    )
    result = eval_fixtures.run_cli(
        "deeplab.summary",
        *facts["official_flags_argv"],
        "--num_classes=19",
        "--crop_size=769,769",
        "--json",
    )
    data = json.loads(result.stdout)
    assert data["trainable_params"] == facts["trainable_params"]
    assert abs(data["madds_tf1"] - official) / official < 0.01


@pytest.mark.slow
def test_cli_bad_flags_name_the_flag_and_the_allowed_values(eval_fixtures, model_fixtures):
    result = eval_fixtures.run_cli("deeplab.summary", "--model_variant=mobilenet_v3_huge_seg")
    assert result.returncode != 0
    assert "model_variant" in result.stderr and "mobilenet_v3_large_seg" in result.stderr
    facts = model_fixtures.facts()["mobilenet_v3_large_seg_19classes"]
    argv = [a for a in facts["official_flags_argv"] if not a.startswith("--decoder_output_str")]
    result = eval_fixtures.run_cli(
        "deeplab.summary", *argv, "--decoder_output_stride=2", "--num_classes=19"
    )
    assert result.returncode == 2
    assert "--decoder_output_stride=2 must be one of (4, 8, 16)" in result.stderr
    # The official 769x769 pooling window does not fit a 513x513 input.
    result = eval_fixtures.run_cli(
        "deeplab.summary", *facts["official_flags_argv"], "--num_classes=19", "--crop_size=513,513"
    )
    assert result.returncode == 2 and "--image_pooling_crop_size" in result.stderr
