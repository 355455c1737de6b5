"""One declaration per model option: every consumer (flags, build_deeplab, checkpoint-mismatch
fields, model_options.json) covers every declared field, with the declared defaults."""

import inspect
import types

import pytest
from absl import flags

from deeplab import build_deeplab
from deeplab.checkpoints import mismatch, run_options
from deeplab.cli import flags as cli_flags
from deeplab.modeling import options as options_lib
from deeplab.modeling.options import OPTION_FIELDS, ModelOptions
from deeplab.modeling.recipes import flag_text

# Every field away from its default (crop_size is set from a script's crop flag).
NON_DEFAULT = ModelOptions(
    model_variant="resnet_v1_50_beta",
    num_classes=5,
    output_stride=8,
    depth_multiplier=0.5,
    divisible_by=4,
    decoder_output_stride=4,
    atrous_rates=(2, 3),
    add_image_level_feature=False,
    aspp_with_separable_conv=False,
    decoder_use_separable_conv=False,
    aspp_convs_filters=64,
    decoder_filters=5,
    aspp_with_concat_projection=False,
    aspp_with_squeeze_and_excitation=True,
    decoder_use_sum_merge=True,
    decoder_output_is_logits=True,
    dense_prediction_cell_json="deeplab/core/dense_prediction_cell_branch5_top1_cityscapes.json",
    multi_grid=(1, 2, 4),
    crop_size=(65, 65),
    image_pooling_crop_size=(33, 33),
    image_pooling_stride=(2, 2),
    image_se_uses_qsigmoid=True,
    batch_norm_decay=0.9,
    weight_decay=1e-4,
    fine_tune_batch_norm=False,
    upsample_logits=False,
)
# The one field the command lines only take at its default (they stop on false).
FLAGS_AT_DEFAULT_ONLY = {"aspp_with_batch_norm"}


def _flag_values(*argv):
    values = flags.FlagValues()
    cli_flags.define_model_flags(values)
    cli_flags.define_option_flags("train", values)
    values(["prog", *argv])
    return values


def test_every_field_is_declared_with_help_flag_and_shape_effect():
    for field in OPTION_FIELDS:
        meta = field.metadata
        assert meta["help"] and meta["flag"] in options_lib.FLAG_KINDS, field.name
        assert meta["scope"] in options_lib.FLAG_SCOPES, field.name
    assert {f.name for f in OPTION_FIELDS} - FLAGS_AT_DEFAULT_ONLY - {"crop_size"} <= {
        f.name
        for f in OPTION_FIELDS
        if getattr(NON_DEFAULT, f.name) not in (f.default, f.metadata["flag_default"])
    } | {"decoder_output_stride"}  # 4: the library default, not the flag's (no decoder)


def test_flags_are_the_declared_options_with_the_declared_defaults():
    values = _flag_values()
    for field in OPTION_FIELDS:
        if field.metadata["scope"] is None:
            assert field.name not in values
            continue
        assert field.metadata["help"] in values[field.name].help, field.name
    # No flag given: the official command-line defaults, the dataset's class count.
    resolved = cli_flags.model_options_from_flags(values, num_classes=3)
    assert resolved == ModelOptions(**options_lib.command_line_defaults(), num_classes=3)
    # Where library and flag defaults differ, the declaration says so (and nowhere else).
    differing = {f.name for f in OPTION_FIELDS if f.metadata["flag_default"] != f.default}
    assert differing == {"model_variant", "num_classes", "decoder_output_stride", "atrous_rates"}


def test_every_option_round_trips_through_its_flag():
    argv = [
        f"--{f.name}={flag_text(getattr(NON_DEFAULT, f.name))}"
        for f in OPTION_FIELDS
        if f.metadata["scope"] is not None and f.name not in FLAGS_AT_DEFAULT_ONLY
    ]
    resolved = cli_flags.model_options_from_flags(_flag_values(*argv), crop_size=(65, 65))
    assert resolved == NON_DEFAULT
    # The official repeated form of the list flags gives the same options.
    repeated = _flag_values("--atrous_rates=2", "--atrous_rates=3", "--num_classes=3")
    assert cli_flags.model_options_from_flags(repeated).atrous_rates == (2, 3)


def test_build_deeplab_takes_every_option_with_its_default():
    parameters = inspect.signature(build_deeplab).parameters
    for field in OPTION_FIELDS:
        assert parameters[field.name].default == field.default, field.name
    with pytest.raises(TypeError, match="no_such_option"):
        build_deeplab(no_such_option=1)


def test_mismatch_explanation_compares_every_shape_changing_option():
    shape_fields = [f.name for f in OPTION_FIELDS if f.metadata["shapes"]]
    assert list(mismatch.SHAPE_FIELDS) == shape_fields
    assert "aspp_with_batch_norm" in shape_fields and "dense_prediction_cell_json" in shape_fields
    error = type("Error", (), {"variable": "decoder/x"})()
    saved = NON_DEFAULT.as_dict()
    for name in shape_fields:
        # Options that differ from the run's in `name` alone (likely_field reads attributes).
        here = types.SimpleNamespace(**{**vars(NON_DEFAULT), name: "other"})
        assert mismatch.likely_field(error, here, saved) == name


def test_model_options_json_round_trip(tmp_path):
    run_options.write_model_options(str(tmp_path), NON_DEFAULT, dataset="synthetic")
    fields, data = run_options.saved_run_info(str(tmp_path / "ckpt-1"))
    assert data["dataset"] == "synthetic"
    assert set(fields) == {f.name for f in OPTION_FIELDS}
    assert ModelOptions.from_dict(fields) == NON_DEFAULT
