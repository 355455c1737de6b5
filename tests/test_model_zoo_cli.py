"""train.py -> (eval.py) -> export.py for the model-zoo variants on the synthetic set, with the
official model flags (MobileNetV3: the official Cityscapes recipe), at a small crop (a few
training steps; the point is that every CLI builds, trains, restores and exports these graphs).
The CLIs' main() run in this process (their end-to-end subprocess runs are in test_train_cli,
test_eval, test_vis, test_export)."""

import json

import numpy as np
import pytest
import tensorflow as tf

from deeplab.data import synthetic
from tests import helpers


def mobilenet_v3_recipe_flags(variant, num_classes, pooling_crop):
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


VARIANT_FLAGS = {
    # The OS 8 flags of the resnet_v1_101_beta model-zoo entry (repeated and comma-list forms),
    # on the 50-layer network: the 101-layer graph is the same code with more units, checked
    # against the official checkpoints in test_resnet_v1_beta and across backends in
    # test_backends.
    "resnet_v1_50_beta": [
        "--model_variant=resnet_v1_50_beta",
        "--atrous_rates=12",
        "--atrous_rates=24",
        "--atrous_rates=36",
        "--output_stride=8",
        "--decoder_output_stride=4",
        "--multi_grid=1,2,4",
    ],
    # The official Cityscapes command line; the cell path resolves to the packaged copy.
    "xception_71": [
        "--model_variant=xception_71",
        "--atrous_rates=6",
        "--atrous_rates=12",
        "--atrous_rates=18",
        "--output_stride=16",
        "--decoder_output_stride=4",
        "--dense_prediction_cell_json=deeplab/core/dense_prediction_cell_branch5_top1_cityscapes.json",
    ],
    # The official MobileNetV3 Cityscapes recipe, its pooling window fitted to the crop.
    "mobilenet_v3_large_seg": mobilenet_v3_recipe_flags("mobilenet_v3_large_seg", 7, 65),
    "mobilenet_v3_small_seg": mobilenet_v3_recipe_flags("mobilenet_v3_small_seg", 7, 65),
}
# What model_options.json must say beyond the variant (flags with no default equivalent).
SAVED = {
    "mobilenet_v3_large_seg": {"image_pooling_stride": [4, 5], "decoder_output_is_logits": True},
    "mobilenet_v3_small_seg": {"image_pooling_stride": [4, 5], "decoder_output_is_logits": True},
}


# eval.py runs on the MobileNetV3 runs (the pooling window of the run's options at an eval crop
# larger than the training crop); for xception_71 and resnet_v1_50_beta export.py restores the
# run's options (the cell path, OS 8 with multi-grid) and serves the graph, and eval.py's
# metric is the same code for every variant (test_eval.py).
EVALUATED = ("mobilenet_v3_large_seg", "mobilenet_v3_small_seg")


def _evaluate(logdir, data_dir, metrics):
    """eval.py on the run's latest checkpoint at crop 81: an mIoU and one IoU per class."""
    result = helpers.run_cli_in_process(
        "eval.py",
        f"--checkpoint_dir={logdir}",
        f"--dataset_dir={data_dir}",
        "--eval_crop_size=81,81",
        "--max_number_of_evaluations=1",
        f"--output_json={metrics}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    with open(metrics) as f:
        evaluated = json.load(f)
    assert 0.0 <= evaluated["miou"] <= 1.0
    assert len(evaluated["per_class_iou"]) == helpers.NUM_CLASSES


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("synthetic"))
    synthetic.build_synthetic_dataset(
        path, num_train=4, num_val=2, num_shards=1, min_size=56, max_size=72
    )
    return path


@pytest.mark.slow
@pytest.mark.parametrize("variant", sorted(VARIANT_FLAGS))
def test_train_eval_export(variant, data_dir, tmp_path):
    model_flags = VARIANT_FLAGS[variant]
    logdir = tmp_path / "train"
    result = helpers.run_cli_in_process(
        "train.py",
        *model_flags,
        f"--train_logdir={logdir}",
        "--dataset=synthetic",
        f"--dataset_dir={data_dir}",
        "--train_crop_size=65,65",
        "--train_batch_size=2",
        "--training_number_of_steps=2",
        "--log_steps=1",
        "--base_learning_rate=0.001",
        "--seed=1",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert tf.train.latest_checkpoint(str(logdir)).endswith("ckpt-2")
    with open(logdir / "model_options.json") as f:
        saved = json.load(f)
    assert saved["model_variant"] == variant
    for name, value in SAVED.get(variant, {}).items():
        assert saved[name] == value, name
    cell = [f.split("=", 1)[1] for f in model_flags if f.startswith("--dense_prediction_cell_json")]
    assert saved["dense_prediction_cell_json"] == (cell[0] if cell else None)

    if variant in EVALUATED:
        _evaluate(logdir, data_dir, tmp_path / "metrics.json")
    export_dir = tmp_path / "export"
    # serving_default alone (one traced model less); serve_encoded is test_export's.
    result = helpers.run_cli_in_process(
        "export.py",
        f"--checkpoint_path={logdir}",
        f"--export_path={export_dir}",
        "--noserve_encoded",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "(signatures: serving_default; " in result.stdout
    signatures = tf.saved_model.load(str(export_dir)).signatures
    assert list(signatures) == ["serving_default"]
    serve = signatures["serving_default"]
    # At least the MobileNetV3 pooling window (65) on each side.
    images = np.random.default_rng(0).integers(0, 256, (1, 100, 130, 3), np.uint8)
    out = serve(images=tf.constant(images))
    assert out["semantic_predictions"].shape == (1, 100, 130)
    probabilities = out["semantic_probabilities"].numpy()
    assert probabilities.shape == (1, 100, 130, helpers.NUM_CLASSES)
    np.testing.assert_allclose(probabilities.sum(-1), 1.0, atol=1e-5)
