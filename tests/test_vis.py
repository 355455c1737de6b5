"""vis.py, its library entry `visualize_checkpoint(VisConfig)` and the visualisation helpers:
colour maps, overlays, figures, raw label ids."""

import dataclasses
import os

import numpy as np
import pytest
from PIL import Image

from deeplab.data.config import DataConfig
from deeplab.data.pipeline import build_dataset
from deeplab.evaluation import colormaps, visualization
from deeplab.evaluation.vis_runner import VisConfig, visualize_checkpoint
from deeplab.modeling import inference
from tests import helpers


def test_cityscapes_train_ids_to_label_ids():
    expected = [7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33]
    np.testing.assert_array_equal(visualization.train_id_to_label_id(np.arange(19)), expected)
    converted = visualization.train_id_to_label_id(np.array([[0, 18], [13, 2]]))
    np.testing.assert_array_equal(converted, [[7, 33], [26, 11]])
    assert converted.dtype == np.uint8
    with pytest.raises(ValueError):
        visualization.train_id_to_label_id(np.array([19]))


@pytest.mark.parametrize("dataset", ["pascal_voc_seg", "cityscapes", "ade20k"])
def test_color_maps_of_the_three_datasets(dataset):
    label = np.array([[0, 1], [2, 3]])
    color = colormaps.colorize(label, colormaps.get_colormap(dataset))
    assert color.shape == (2, 2, 3) and color.dtype == np.uint8
    assert len({tuple(c) for c in color.reshape(-1, 3)}) == 4 or dataset == "ade20k"


def test_ignore_label_is_drawn_white_when_it_is_not_a_class():
    cmap = colormaps.get_colormap("pascal_voc_seg")
    color = colormaps.colorize(np.array([[0, 255]]), cmap, ignore_label=255, num_classes=21)
    np.testing.assert_array_equal(color[0, 1], [255, 255, 255])
    np.testing.assert_array_equal(color[0, 0], cmap[0])


def test_save_visualization_writes_image_prediction_overlay_and_figure(tmp_path):
    rng = np.random.default_rng(0)
    image = rng.uniform(0, 255, (31, 45, 3))
    prediction = rng.integers(0, 3, (31, 45))
    label = prediction.copy()
    label[0] = 255
    cmap = colormaps.get_colormap("pascal_voc_seg")
    paths = visualization.save_visualization(
        str(tmp_path),
        7,
        image,
        prediction,
        label,
        colormap=cmap,
        class_names=["bg", "a", "b"],
        ignore_label=255,
        num_classes=3,
        image_name="x",
    )
    assert sorted(paths) == ["figure", "image", "overlay", "prediction"]
    assert os.path.basename(paths["prediction"]) == "000007_prediction.png"
    color = np.asarray(Image.open(paths["prediction"]))
    np.testing.assert_array_equal(color, cmap[prediction])
    overlay = np.asarray(Image.open(paths["overlay"]))
    np.testing.assert_array_equal(
        overlay, colormaps.overlay(np.round(image).astype(np.uint8), cmap[prediction], 0.5)
    )
    figure = Image.open(paths["figure"])
    assert figure.size[0] > figure.size[1] > 0  # panels side by side


def _vis_config(tmp_path, dataset_dir=None, options=None, **fields):
    """A VisConfig of the synthetic val split at crop 97 (`fields`: VisConfig fields)."""
    options = options or inference.inference_options(helpers.tiny_options())
    data = DataConfig(
        "synthetic",
        dataset_dir or str(tmp_path / "synthetic"),
        "val",
        crop_size=(97, 97),
        batch_size=fields.pop("batch_size", 1),
        is_training=False,
        model_variant=options.model_variant,
        num_classes=options.num_classes,
    )
    fields.setdefault("vis_logdir", str(tmp_path / "vis"))
    return VisConfig(
        model_options=options,
        data=data,
        settings=inference.InferenceSettings.for_options(options),
        **fields,
    )


@pytest.mark.parametrize(
    "field, value, flag",
    [
        ("checkpoint_dir", "", "--checkpoint_dir"),
        ("colormap_type", "viridis", "--colormap_type=viridis"),
        ("num_vis_examples", 0, "--num_vis_examples=0"),
        ("overlay_alpha", 1.5, "--overlay_alpha=1.5"),
        ("eval_interval_secs", -1, "--eval_interval_secs=-1"),
        ("eval_timeout_secs", -5.0, "--eval_timeout_secs=-5.0"),
    ],
)
def test_vis_config_rejects_bad_values_naming_the_flag(tmp_path, field, value, flag):
    fields = {"checkpoint_dir": str(tmp_path / "run"), field: value}
    with pytest.raises(ValueError) as err:
        _vis_config(tmp_path, **fields)
    assert str(err.value).startswith(flag)
    assert "\n" not in str(err.value)


def test_vis_config_is_frozen_and_writes_beside_the_checkpoint_by_default(tmp_path):
    config = _vis_config(tmp_path, checkpoint_dir=str(tmp_path / "run"), vis_logdir=None)
    assert config.vis_logdir == str(tmp_path / "run" / "vis")
    assert config.save_dir == str(tmp_path / "run" / "vis" / "segmentation_results")
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.overlay_alpha = 0.2
    # An evaluation DataConfig only.
    train_data = dataclasses.replace(config.data, is_training=True)
    with pytest.raises(ValueError, match="evaluation DataConfig"):
        dataclasses.replace(config, data=train_data)


@pytest.mark.slow
def test_visualize_checkpoint_writes_color_predictions_and_raw_label_ids(run, tmp_path):
    vis_dir = tmp_path / "vis"
    config = _vis_config(
        tmp_path,
        dataset_dir=run.data_dir,
        options=inference.inference_options(run.options),
        checkpoint_dir=run.run_dir,
        batch_size=2,
        max_number_of_iterations=1,
        num_vis_examples=3,
        also_save_raw_predictions=True,
        colormap_type="cityscapes",
    )
    visualised = visualize_checkpoint(config)
    assert visualised == [
        dict(
            checkpoint=run.checkpoint,
            step=max(helpers.CHECKPOINT_STEPS),
            num_images=3,
            save_dir=str(vis_dir / "segmentation_results"),
        )
    ]
    results = vis_dir / "segmentation_results"
    for index in range(3):
        for kind in ("image", "prediction", "overlay", "figure"):
            assert (results / f"{index:06d}_{kind}.png").is_file()
    assert not (results / "000003_image.png").exists()
    raw = sorted((vis_dir / "raw_segmentation_results").iterdir())
    assert [p.name for p in raw] == ["val_000000.png", "val_000001.png", "val_000002.png"]
    first = next(iter(build_dataset(dataclasses.replace(config.data, batch_size=1))))
    height, width = int(first["height"][0]), int(first["width"][0])
    raw0 = np.asarray(Image.open(raw[0]))
    assert raw0.shape == (height, width)  # the original size, not the padded one
    # Cityscapes colour map: predictions saved as label ids.
    assert set(np.unique(raw0)) <= set(visualization.CITYSCAPES_TRAIN_ID_TO_LABEL_ID[:7])
    image0 = np.asarray(Image.open(results / "000000_image.png"))
    assert image0.shape == (height, width, 3)
    prediction0 = np.asarray(Image.open(results / "000000_prediction.png"))
    cmap = colormaps.get_colormap("cityscapes")
    train_ids = np.searchsorted(visualization.CITYSCAPES_TRAIN_ID_TO_LABEL_ID, raw0)
    np.testing.assert_array_equal(prediction0, cmap[train_ids])


@pytest.mark.slow
def test_vis_cli_end_to_end(run, tmp_path):
    """The one vis.py subprocess: flags -> VisConfig -> visualize_checkpoint, quietly."""
    vis_dir = tmp_path / "vis"
    result = helpers.run_cli(
        "vis.py",
        f"--checkpoint_dir={run.run_dir}",
        f"--vis_logdir={vis_dir}",
        "--vis_crop_size=97,97",
        "--max_number_of_iterations=1",
        "--num_vis_examples=2",
        "--save_figures=false",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Visualised 2 images of synthetic/val" in result.stdout
    results = vis_dir / "segmentation_results"
    assert sorted(p.name for p in results.iterdir()) == [
        f"{index:06d}_{kind}.png"
        for index in range(2)
        for kind in ("image", "overlay", "prediction")
    ]
    assert "Traceback" not in result.stderr


@pytest.mark.slow
@pytest.mark.parametrize(
    "args, flag",
    [
        (["--vis_crop_size=97"], "--vis_crop_size"),
        (["--eval_scales=1.0,x"], "--eval_scales"),
        (["--overlay_alpha=2"], "--overlay_alpha=2.0"),
        (["--vis_batch_size=0"], "--vis_batch_size: 0 must be >= 1"),
        (["--checkpoint_dir={missing}", "--max_number_of_iterations=1"], "--checkpoint_dir="),
    ],
)
def test_vis_cli_rejects_bad_flags_naming_them(run, tmp_path, args, flag):
    missing = str(tmp_path / "runs" / "dmeo")
    result = helpers.run_cli_in_process(
        "vis.py",
        f"--checkpoint_dir={run.run_dir}",
        f"--vis_logdir={tmp_path / 'vis'}",
        *[arg.format(missing=missing) for arg in args],
    )
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if flag in line]
    assert len(errors) == 1 and errors[0].startswith("FATAL Flags parsing error: "), result.stderr
    assert not (tmp_path / "vis").exists()


@pytest.mark.parametrize(
    "script, config_class",
    [("vis.py", "VisConfig"), ("eval.py", "EvalConfig")],
)
def test_every_config_field_is_a_flag_of_its_command_line(script, config_class):
    """vis.py and eval.py fill their config's fields from the flags of the same names
    (`cli_flags.checkpoint_job_config`): a field without its flag would silently keep its
    default."""
    import deeplab.evaluation

    fields = {f.name for f in dataclasses.fields(getattr(deeplab.evaluation, config_class))}
    with helpers.cli_flags_defined(script) as module:
        missing = fields - {"model_options", "data", "settings"} - set(module.FLAGS)
    assert not missing
