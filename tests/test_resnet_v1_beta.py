"""ResNet-v1-beta DeepLabV3+: official variables, parameters, Mult-Adds, strides and rates,
the bottleneck unit's op order, the decoder's low-level feature and ImageNet checkpoints."""

import re

import numpy as np
import pytest
import tensorflow as tf

from deeplab import ModelOptions, build_deeplab, build_deeplab_from_options
from deeplab.checkpoints.official import load_official_checkpoint, official_variables
from deeplab.modeling.layers import ScaleToUnitRange
from deeplab.modeling.summary import summarize
from tests import helpers

CONFIGS = [
    "resnet_v1_50_beta_21classes",
    "resnet_v1_50_beta_21classes_os8",
    "resnet_v1_101_beta_21classes",
    "resnet_v1_101_beta_21classes_os8",
]


def official_options(facts, key, **changes):
    """ModelOptions of a facts.json configuration (its resolved official flag values)."""
    fact = facts()[key]
    values = fact["official_flag_values"]
    kwargs = dict(
        model_variant=values["model_variant"],
        num_classes=fact["num_classes"],
        output_stride=values["output_stride"],
        atrous_rates=values["atrous_rates"],
        decoder_output_stride=values["decoder_output_stride"],
        multi_grid=values["multi_grid"],
        aspp_with_separable_conv=values["aspp_with_separable_conv"],
        decoder_use_separable_conv=values["decoder_use_separable_conv"],
        add_image_level_feature=values["add_image_level_feature"],
    )
    kwargs.update(changes)
    return ModelOptions(**kwargs)


@pytest.mark.slow
@pytest.mark.parametrize("key", ["resnet_v1_50_beta_21classes", "resnet_v1_101_beta_21classes"])
def test_variables_match_official_checkpoint_exactly(key):
    fact = helpers.facts()[key]
    model = build_deeplab_from_options(official_options(helpers.facts, key))
    ours = {name: list(v.shape) for name, v in official_variables(model).items()}
    assert ours == helpers.official_variables(fact["variables_file"].split("/")[-1])
    assert sum(int(np.prod(w.shape)) for w in model.trainable_weights) == fact["trainable_params"]
    assert len(model.trainable_weights) == fact["num_trainable_variables"]
    assert sum(int(np.prod(w.shape)) for w in model.weights) == fact["all_variable_elements"]
    assert len(model.weights) == fact["num_variables"]
    # The official feature extractor maps 0..255 to [-1, 1] for the beta variants.
    assert isinstance(model.get_layer("preprocess"), ScaleToUnitRange)


@pytest.mark.slow
@pytest.mark.parametrize("key", CONFIGS)
def test_mult_adds_strides_and_rates_match_official(key):
    fact = helpers.facts()[key]
    options = official_options(helpers.facts, key)
    summary = summarize(options, (513, 513))
    assert summary["trainable_params"] == fact["trainable_params"]
    # The official conv-only count, reproduced exactly (atrous convs run through
    # space_to_batch in the official graph), and the official profiler total to a few float ops
    # (max pools and residual sums included).
    assert summary["madds_tf1_conv_only"] == fact["madds_513x513_conv_only"]
    assert abs(summary["madds_tf1"] - fact["madds_513x513"]) <= 2
    # Our own count (the model's arithmetic, no space_to_batch padding) is lower.
    assert summary["madds"] < summary["madds_tf1_conv_only"]
    rows = {row["block"]: row for row in summary["blocks"]}
    net = "resnet_v1_50" if "_50_" in key else "resnet_v1_101"
    last3 = 6 if "_50_" in key else 23
    os = options.output_stride
    # Root at stride 2 (the max pool takes it to 4), block1 at 4, its last unit strides to 8.
    assert [rows[f"{net}/conv1_{i}"]["stride"] for i in (1, 2, 3)] == [2, 2, 2]
    assert rows[f"{net}/block1/unit_2"]["stride"] == 4
    assert rows[f"{net}/block1/unit_3"]["stride"] == 8
    assert rows[f"{net}/block2/unit_4"]["stride"] == min(16, os)
    assert rows[f"{net}/block3/unit_{last3}"]["stride"] == os
    # Atrous from the unit whose stride is dropped; multi_grid (1, 2, 4) times it in block4.
    base = 16 // os if os < 16 else 1
    assert rows[f"{net}/block3/unit_1"]["rate"] == base
    assert [rows[f"{net}/block4/unit_{i}"]["rate"] for i in (1, 2, 3)] == [
        2 * base * g for g in (1, 2, 4)
    ]
    assert [rows[f"aspp{i}"]["rate"] for i in (1, 2, 3)] == list(options.atrous_rates)
    assert rows["decoder/decoder_conv1"]["stride"] == 4


@pytest.mark.slow
@pytest.mark.parametrize("output_stride", [8, 16, 32])
@pytest.mark.parametrize("decoder", [4, 16, None])
def test_output_shapes_at_every_stride(output_stride, decoder):
    if decoder is not None and decoder >= output_stride:
        pytest.skip("the decoder stride must be below the output stride")
    model = build_deeplab(
        model_variant="resnet_v1_50_beta",
        num_classes=3,
        output_stride=output_stride,
        atrous_rates={8: (12, 24, 36), 16: (6, 12, 18), 32: (3, 6, 9)}[output_stride],
        decoder_output_stride=decoder,
        multi_grid=(1, 2, 4),
        upsample_logits=False,
    )
    images = tf.random.uniform([1, 65, 49, 3], 0, 255, seed=2)
    stride = decoder or output_stride
    assert model(images).shape == (1, (65 - 1) // stride + 1, (49 - 1) // stride + 1, 3)


@pytest.mark.slow
def test_decoder_reads_block1_unit2_conv3_after_batch_norm():
    """The official low-level feature is `block1/unit_2/bottleneck_v1/conv3`: the BN output of
    the unit's last conv, before the residual sum and ReLU (block1 is the same three units in
    the 50- and the 101-layer network)."""
    model = build_deeplab(model_variant="resnet_v1_50_beta", num_classes=3)
    source = model.get_layer("decoder.feature_projection0").input._keras_history.operation
    assert source.name == "resnet_v1_50.block1.unit_2.bottleneck_v1.conv3.BatchNorm"


def _bn(x, layer):
    return tf.nn.batch_normalization(
        x,
        layer.moving_mean,
        layer.moving_variance,
        layer.beta,
        layer.gamma,
        layer.epsilon,
    )


@pytest.mark.slow
def test_strided_bottleneck_unit_follows_the_official_op_order():
    """block1/unit_3 (stride 2, identity shortcut subsampled) recomputed with raw TF ops:
    1x1 conv-BN-ReLU, fixed-padded VALID 3x3 stride-2 conv-BN-ReLU, 1x1 conv-BN, sum, ReLU."""
    model = build_deeplab(model_variant="resnet_v1_50_beta", num_classes=3, output_stride=16)
    for weight in model.weights:  # non-trivial BatchNorm statistics
        if "moving" in weight.path or "gamma" in weight.path or "beta" in weight.path:
            rng = np.random.default_rng(len(weight.path))
            weight.assign(rng.uniform(0.5, 1.5, weight.shape).astype("float32"))
    unit = "resnet_v1_50.block1.unit_3.bottleneck_v1"
    probe = tf.keras.Model(
        model.input,
        [
            model.get_layer("resnet_v1_50.block1.unit_2.bottleneck_v1.Relu").output,
            model.get_layer(unit + ".Relu").output,
        ],
    )
    x, expected = probe(tf.random.uniform([1, 66, 51, 3], 0, 255, seed=4))

    def conv(name, inputs, stride=1, padding="SAME"):
        kernel = model.get_layer(f"{unit}.{name}").kernel
        out = tf.nn.conv2d(inputs, kernel, stride, padding)
        return _bn(out, model.get_layer(f"{unit}.{name}.BatchNorm"))

    residual = tf.nn.relu(conv("conv1", x))
    padded = tf.pad(residual, [[0, 0], [1, 1], [1, 1], [0, 0]])
    residual = tf.nn.relu(conv("conv2", padded, stride=2, padding="VALID"))
    residual = conv("conv3", residual)
    out = tf.nn.relu(x[:, ::2, ::2, :] + residual)
    assert out.shape == expected.shape == (1, 9, 7, 256)
    np.testing.assert_allclose(out.numpy(), expected.numpy(), rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_imagenet_backbone_checkpoint_initializes_the_backbone(tmp_path):
    """The official ImageNet resnet_v1_50 (beta) checkpoint holds only `resnet_v1_50/...`
    (plus its classifier and optimizer slots, ignored)."""
    source = build_deeplab(model_variant="resnet_v1_50_beta", num_classes=21)
    rng = np.random.default_rng(0)
    tensors = {
        name: rng.normal(size=v.shape).astype("float32")
        for name, v in official_variables(source).items()
        if name.startswith("resnet_v1_50/")
    }
    backbone = len(tensors)
    tensors["resnet_v1_50/logits/weights"] = np.zeros([1, 1, 2048, 1000], "float32")
    tensors["resnet_v1_50/logits/biases"] = np.zeros([1000], "float32")
    tensors["global_step"] = np.array(7, dtype=np.int64)
    prefix = str(tmp_path / "resnet_v1_50" / "model.ckpt")
    helpers.write_tf1_checkpoint(prefix, tensors)
    model = build_deeplab(model_variant="resnet_v1_50_beta", num_classes=5, multi_grid=(1, 2, 4))
    report = load_official_checkpoint(model, prefix)
    assert len(report.loaded) == backbone
    assert report.skipped and all(not n.startswith("resnet_v1_50/") for n in report.skipped)
    assert report.unused == ["resnet_v1_50/logits/biases", "resnet_v1_50/logits/weights"]
    np.testing.assert_array_equal(
        model.get_layer("resnet_v1_50.conv1_1").kernel.numpy(),
        tensors["resnet_v1_50/conv1_1/weights"],
    )
    bn = model.get_layer("resnet_v1_50.block4.unit_3.bottleneck_v1.conv3.BatchNorm")
    np.testing.assert_array_equal(
        bn.moving_variance.numpy(),
        tensors["resnet_v1_50/block4/unit_3/bottleneck_v1/conv3/BatchNorm/moving_variance"],
    )


@pytest.mark.parametrize(
    "bad, message",
    [
        (dict(model_variant="resnet_v1_50"), r"--model_variant=.*resnet_v1_50_beta"),
        (dict(model_variant="resnet_v1_50_beta", multi_grid=(1, 2)), "--multi_grid"),
        (dict(model_variant="mobilenet_v2", multi_grid=(1, 2, 4)), r"--multi_grid.*resnet_v1"),
        (
            dict(model_variant="resnet_v1_101_beta", decoder_output_stride=2),
            r"--decoder_output_stride=2 must be one of \(4, 8, 16\)",
        ),
    ],
)
def test_bad_options_name_the_flag_and_the_allowed_values(bad, message):
    with pytest.raises(ValueError, match=message):
        ModelOptions(**bad)


@pytest.mark.slow
@pytest.mark.parametrize("key", CONFIGS)
def test_summary_cli_with_the_official_flags_prints_the_official_figures(key):
    fact = helpers.facts()[key]
    result = helpers.run_cli_in_process(
        "deeplab.summary",
        *fact["official_flags_argv"],
        f"--num_classes={fact['num_classes']}",
        "--crop_size=513,513",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    totals = "\n".join(result.stdout.strip().splitlines()[-2:])
    assert f"trainable parameters {fact['trainable_params']:,};" in totals
    official = re.search(r"official TF1 profiler count .*: ([\d.]+)B;", totals).group(1)
    assert abs(float(official) * 1e9 - fact["madds_513x513"]) / fact["madds_513x513"] < 0.01
    net = fact["official_flag_values"]["model_variant"].replace("_beta", "")
    unit = re.search(rf"^{net}/block4/unit_3 +(\d+) +(\d+) ", result.stdout, re.MULTILINE)
    os_ = fact["official_flag_values"]["output_stride"]
    assert (int(unit.group(1)), int(unit.group(2))) == (os_, 8 * 16 // os_)
