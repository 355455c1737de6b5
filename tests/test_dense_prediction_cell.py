"""Xception-71 + dense prediction cell: official variables, parameters and Mult-Adds, the cell's
dataflow and numerics against raw TF1 ops, the JSON description (resolution, bad input)."""

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from deeplab import ModelOptions, build_deeplab, build_deeplab_from_options
from deeplab.checkpoints.official import official_variables
from deeplab.modeling import dense_prediction_cell as dpc
from deeplab.modeling.heads import head_style
from deeplab.modeling.model import last_layers
from deeplab.modeling.summary import summarize
from tests import helpers

# One worker runs this module (its module fixtures are built once).
pytestmark = pytest.mark.xdist_group("dense_prediction_cell")

KEY = "xception_71_19classes_dpc"
OFFICIAL_JSON = "deeplab/core/dense_prediction_cell_branch5_top1_cityscapes.json"
CELL_NAME = "dense_prediction_cell_branch5_top1_cityscapes.json"


def dpc_options(**changes):
    kwargs = dict(
        model_variant="xception_71",
        num_classes=19,
        output_stride=16,
        atrous_rates=(6, 12, 18),
        decoder_output_stride=4,
        dense_prediction_cell_json=OFFICIAL_JSON,
    )
    kwargs.update(changes)
    return ModelOptions(**kwargs)


@pytest.fixture(scope="module")
def dpc_model():
    """Xception-71 + the official cell (the Cityscapes recipe), built once for the module."""
    return build_deeplab_from_options(dpc_options())


@pytest.mark.slow
def test_variables_match_official_checkpoint_exactly(dpc_model):
    fact = helpers.facts()[KEY]
    model = dpc_model
    ours = {name: list(v.shape) for name, v in official_variables(model).items()}
    assert ours == helpers.official_variables("xception_71_19classes_dpc.txt")
    assert sum(int(np.prod(w.shape)) for w in model.trainable_weights) == fact["trainable_params"]
    assert len(model.trainable_weights) == fact["num_trainable_variables"]
    assert sum(int(np.prod(w.shape)) for w in model.weights) == fact["all_variable_elements"]
    assert len(model.weights) == fact["num_variables"]
    # The cell is one of the official "last layers" (not restored with initialize_last_layer
    # off, skipped when an ImageNet backbone checkpoint is loaded).
    names = {layer.name for layer in last_layers(model)}
    assert "meta_architecture.branch4_pointwise" in names
    assert "meta_architecture.concat_projection" in names


@pytest.mark.slow
@pytest.mark.parametrize("crop", [(513, 513), (1025, 2049)])
def test_mult_adds_match_official(crop):
    fact = helpers.facts()[KEY]
    size = f"{crop[0]}x{crop[1]}"
    summary = summarize(dpc_options(), crop)
    # The official conv-only count, reproduced exactly (the cell's non-square atrous depthwise
    # convs run through space_to_batch), and the official profiler total to a few float ops.
    assert summary["madds_tf1_conv_only"] == fact[f"madds_{size}_conv_only"]
    assert abs(summary["madds_tf1"] - fact[f"madds_{size}"]) <= 2
    rows = {row["block"]: row for row in summary["blocks"]}
    assert [rows[f"meta_architecture/branch{i}"]["rate"] for i in range(5)] == [
        "1x6",
        "18x15",
        "6x3",
        1,
        "6x21",
    ]
    assert rows["meta_architecture/concat_projection"]["stride"] == 16
    assert not any(block.startswith(("aspp", "image_pooling")) for block in rows)


@pytest.mark.slow
def test_rates_double_at_output_stride_8():
    model = build_deeplab_from_options(dpc_options(output_stride=8))
    rates = [
        model.get_layer(f"meta_architecture.branch{i}_depthwise").dilation_rate for i in range(5)
    ]
    assert rates == [(2, 12), (36, 30), (12, 6), (2, 2), (12, 42)]


def _producer(tensor):
    return tensor._keras_history.operation.name


@pytest.mark.slow
def test_cell_dataflow_follows_the_description(dpc_model):
    model = dpc_model
    inputs = {
        i: _producer(model.get_layer(f"meta_architecture.branch{i}_depthwise").input)
        for i in range(5)
    }
    features = "xception_71.exit_flow.block2.unit_1.xception_module.separable_conv3_pointwise.Relu"
    assert inputs == {
        0: features,
        1: "meta_architecture.branch0_pointwise.Relu",
        2: "meta_architecture.branch1_pointwise.Relu",
        3: "meta_architecture.branch0_pointwise.Relu",
        4: "meta_architecture.branch0_pointwise.Relu",
    }
    concat = model.get_layer("meta_architecture.concat")
    assert [_producer(t) for t in concat.input] == [
        f"meta_architecture.branch{i}_pointwise.Relu" for i in range(5)
    ]
    # Dropout on the concatenation, before the projection (not after it, as in ASPP).
    projection = model.get_layer("meta_architecture.concat_projection")
    assert _producer(projection.input) == "meta_architecture.concat_projection_dropout"
    assert _producer(model.get_layer("decoder.resize").input[0]) == (
        "meta_architecture.concat_projection.Relu"
    )


def _randomize_batch_norm(model):
    rng = np.random.default_rng(5)
    for weight in model.weights:
        if weight.path.endswith(("gamma", "beta", "moving_mean", "moving_variance")):
            weight.assign(rng.uniform(0.5, 1.5, weight.shape).astype("float32"))


def _reference_cell(model, features, cell, multiplier):
    """The cell with raw TF1 ops: depthwise convs through tf.compat.v1 (space_to_batch)."""

    def bn_relu(x, scope):
        layer = model.get_layer(scope + ".BatchNorm")
        x = tf.nn.batch_normalization(
            x, layer.moving_mean, layer.moving_variance, layer.beta, layer.gamma, layer.epsilon
        )
        return tf.nn.relu(x)

    def pointwise(x, scope):
        return bn_relu(tf.nn.conv2d(x, model.get_layer(scope).kernel, 1, "SAME"), scope)

    branches = []
    for i, op in enumerate(cell):
        scope = f"meta_architecture.branch{i}"
        x = features if op.input < 0 else branches[op.input]
        rate = [op.rate[0] * multiplier, op.rate[1] * multiplier]
        kernel = model.get_layer(scope + "_depthwise").kernel
        x = tf.compat.v1.nn.depthwise_conv2d(x, kernel, [1, 1, 1, 1], "SAME", rate=rate)
        branches.append(pointwise(bn_relu(x, scope + "_depthwise"), scope + "_pointwise"))
    return pointwise(tf.concat(branches, 3), "meta_architecture.concat_projection")


@pytest.mark.parametrize("output_stride", [8, 16])
def test_cell_numerics_match_raw_tf1_ops(output_stride):
    cell = dpc.load_cell(OFFICIAL_JSON)
    features = keras.Input((41, 47, 16))
    style = head_style(4e-5, True)
    out = dpc.dense_prediction_cell(features, cell, style, output_stride=output_stride)
    model = keras.Model(features, out)
    _randomize_batch_norm(model)
    x = tf.random.normal([2, 41, 47, 16], seed=6)
    expected = _reference_cell(model, x, cell, 16 // output_stride)
    np.testing.assert_allclose(model(x, training=False), expected, rtol=1e-4, atol=1e-4)


def test_pyramid_pooling_operations(tmp_path):
    path = tmp_path / "cell.json"
    path.write_text(
        json.dumps(
            [
                {"op": "pyramid_pooling", "input": -1, "grid_size": [1, 1]},
                {"op": "pyramid_pooling", "input": -1, "grid_size": [2, 3]},
                {"op": "conv", "input": 1, "kernel": 1},
            ]
        )
    )
    cell = dpc.load_cell(str(path))
    assert cell[1] == dpc.CellOperation("pyramid_pooling", -1, grid_size=(2, 3))
    style = head_style(0.0, True)
    features = keras.Input((33, 33, 8))
    model = keras.Model(
        features,
        dpc.dense_prediction_cell(features, cell, style, output_stride=16, crop_size=(513, 513)),
    )
    # Windows of scale_dimension(513, 1 / (16 * grid)): 33x33 and 17x11.
    assert model.get_layer("meta_architecture.branch0.pool").pool_size == (33, 33)
    assert model.get_layer("meta_architecture.branch1.pool").pool_size == (17, 11)
    x = tf.random.normal([1, 33, 33, 8], seed=7)
    probe = keras.Model(features, model.get_layer("meta_architecture.branch1.resize").output)
    pooled = tf.nn.avg_pool2d(x, (17, 11), 1, "VALID")
    conv = model.get_layer("meta_architecture.branch1")
    bn = model.get_layer("meta_architecture.branch1.BatchNorm")
    y = tf.nn.relu(bn(tf.nn.conv2d(pooled, conv.kernel, 1, "SAME"), training=False))
    expected = tf.compat.v1.image.resize_bilinear(y, [33, 33], align_corners=True)
    np.testing.assert_allclose(probe(x), expected, rtol=1e-5, atol=1e-5)
    # Global pooling stands in for grid 1x1 without a crop; other grids need the crop.
    dpc.check_cell(cell[:1], 16, None)
    with pytest.raises(ValueError, match="--dense_prediction_cell_json.*--image_pooling_crop_size"):
        dpc.check_cell(cell, 16, None)


def test_official_path_resolves_to_the_packaged_cell(tmp_path, monkeypatch):
    packaged = os.path.join(dpc.PACKAGED_CELLS_DIR, CELL_NAME)
    monkeypatch.chdir(tmp_path)
    assert dpc.resolve_cell_path(OFFICIAL_JSON) == packaged
    assert dpc.resolve_cell_path(CELL_NAME) == packaged
    assert dpc.resolve_cell_path("/elsewhere/research/" + OFFICIAL_JSON) == packaged
    # A file that exists is used as given (e.g. a checkout of the official repository).
    own = tmp_path / "deeplab" / "core" / CELL_NAME
    own.parent.mkdir(parents=True)
    own.write_text(json.dumps([{"op": "conv", "input": -1, "kernel": 1}]))
    assert dpc.resolve_cell_path(OFFICIAL_JSON) == OFFICIAL_JSON
    assert len(dpc.load_cell(OFFICIAL_JSON)) == 1
    with pytest.raises(ValueError, match=r"--dense_prediction_cell_json=other.json: no such file"):
        dpc.resolve_cell_path("other.json")


def test_packaged_cell_is_the_official_description():
    assert dpc.packaged_cells() == (CELL_NAME,)
    cell = dpc.load_cell(CELL_NAME)
    assert [(op.input, op.kernel, op.rate) for op in cell] == [
        (-1, (3, 3), (1, 6)),
        (0, (3, 3), (18, 15)),
        (1, (3, 3), (6, 3)),
        (0, (3, 3), (1, 1)),
        (0, (3, 3), (6, 21)),
    ]


@pytest.mark.parametrize(
    "content, message",
    [
        ("[{'op': 'conv'}]", "not valid JSON"),
        ("{}", "non-empty JSON list"),
        ("[]", "non-empty JSON list"),
        ('[{"op": "pool", "input": -1}]', r"'op' must be one of \['conv', 'pyramid_pooling'\]"),
        ('[{"op": "conv", "input": 0, "kernel": 1}]', r"'input' must be -1 .* \(0..-1\)"),
        ('[{"op": "conv", "input": -1, "kernel": 3}]', "needs 'rate'"),
        ('[{"op": "conv", "input": -1}]', "needs 'kernel'"),
        ('[{"op": "conv", "input": -1, "kernel": 3, "rate": [1, 2, 3]}]', "'rate' must be"),
        ('[{"op": "pyramid_pooling", "input": -1}]', "needs 'grid_size'"),
    ],
)
def test_malformed_cell_names_the_flag(tmp_path, content, message):
    path = tmp_path / "cell.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=message) as error:
        dpc_options(dense_prediction_cell_json=str(path))
    assert f"--dense_prediction_cell_json={path}" in str(error.value)


def test_missing_cell_and_output_stride_32_name_the_flag(tmp_path):
    with pytest.raises(ValueError, match="--dense_prediction_cell_json=.*no such file"):
        dpc_options(dense_prediction_cell_json=str(tmp_path / "missing.json"))
    with pytest.raises(ValueError, match="--dense_prediction_cell_json needs --output_stride 8"):
        dpc_options(output_stride=32, decoder_output_stride=None)
    assert dpc_options(dense_prediction_cell_json="").dense_prediction_cell_json is None


@pytest.mark.slow
def test_build_deeplab_keyword():
    model = build_deeplab(
        model_variant="xception_71",
        num_classes=3,
        decoder_output_stride=None,
        dense_prediction_cell_json=OFFICIAL_JSON,
        upsample_logits=False,
    )
    assert model(tf.zeros([1, 65, 49, 3])).shape == (1, 5, 4, 3)


@pytest.mark.slow
def test_summary_cli_with_the_official_flags_prints_the_official_figures(tmp_path):
    fact = helpers.facts()[KEY]
    result = helpers.run_cli_in_process(
        "deeplab.summary", *fact["official_flags_argv"], "--num_classes=19", "--crop_size=1025,2049"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    totals = "\n".join(result.stdout.strip().splitlines()[-2:])
    assert f"trainable parameters {fact['trainable_params']:,};" in totals
    # The official figure is 502.159B (model zoo: 502.07B).
    assert "official TF1 profiler count (predict_labels graph, float ops / 2): 502.159B" in totals
    assert "meta_architecture/branch1" in result.stdout
    bad = helpers.run_cli_in_process(
        "deeplab.summary",
        "--model_variant=xception_71",
        f"--dense_prediction_cell_json={tmp_path}/x.json",
    )
    assert bad.returncode != 0
    assert f"--dense_prediction_cell_json={tmp_path}/x.json: no such file" in bad.stderr
