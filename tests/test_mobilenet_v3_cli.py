"""export.py and `python -m deeplab.summary` with the MobileNetV3 variants and the official
Cityscapes recipe flags (their main() in process: the end-to-end summary run is
test_quiet_command_lines'; train -> eval -> export on the synthetic set is in
test_model_zoo_cli.py)."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from tests import helpers

VARIANTS = ["mobilenet_v3_large_seg", "mobilenet_v3_small_seg"]


@pytest.mark.slow
def test_official_checkpoint_exported_with_the_official_flags(tmp_path):
    variant = "mobilenet_v3_small_seg"
    folder, flags = helpers.official_fixture(variant)
    export_dir = tmp_path / "official"
    result = helpers.run_cli_in_process(
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
def test_summary_cli_prints_the_official_figures(variant):
    facts = helpers.facts()[f"{variant}_19classes"]
    # main() in process (the end-to-end run of `python -m deeplab.summary` is
    # test_quiet_command_lines').
    result = helpers.run_cli_in_process(
        "deeplab.summary", *facts["official_flags_argv"], "--num_classes=19", "--crop_size=769,769"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"trainable parameters {facts['trainable_params']:,};" in result.stdout
    official = facts["madds_769x769"]
    assert (
        f"official TF1 profiler count (predict_labels graph, float ops / 2): "
        f"{official / 1e9:.3f}B" in result.stdout
    )
    result = helpers.run_cli_in_process(
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
def test_cli_bad_flags_name_the_flag_and_the_allowed_values():
    result = helpers.run_cli_in_process("deeplab.summary", "--model_variant=mobilenet_v3_huge_seg")
    assert result.returncode != 0
    assert "model_variant" in result.stderr and "mobilenet_v3_large_seg" in result.stderr
    facts = helpers.facts()["mobilenet_v3_large_seg_19classes"]
    argv = [a for a in facts["official_flags_argv"] if not a.startswith("--decoder_output_str")]
    result = helpers.run_cli_in_process(
        "deeplab.summary", *argv, "--decoder_output_stride=2", "--num_classes=19"
    )
    assert result.returncode == 2
    assert "--decoder_output_stride=2 must be one of (4, 8, 16)" in result.stderr
    # The official 769x769 pooling window does not fit a 513x513 input.
    result = helpers.run_cli_in_process(
        "deeplab.summary", *facts["official_flags_argv"], "--num_classes=19", "--crop_size=513,513"
    )
    assert result.returncode == 2 and "--image_pooling_crop_size" in result.stderr
