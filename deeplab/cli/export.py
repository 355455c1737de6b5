r"""Exports a DeepLab checkpoint (ours or an official TF1 one) as a SavedModel for serving.

  python export.py --checkpoint_path=runs/demo --export_path=exported/demo
  python export.py --checkpoint_path=deeplabv3_pascal_trainval/model.ckpt \
      --export_path=exported/voc --model_variant=xception_65 --atrous_rates=6,12,18 \
      --output_stride=16 --decoder_output_stride=4

The SavedModel's `serving_default` signature takes `images` uint8 [N, H, W, 3] of any size and
returns `semantic_predictions` int32 [N, H, W] and `semantic_probabilities` float32
[N, H, W, C] at the input size; `serve_encoded` takes `encoded_images` (JPEG/PNG bytes) [N].
Loading it needs TensorFlow only (`tf.saved_model.load`, TF Serving, `saved_model_cli`).
--output_stride, --atrous_rates, --inference_scales and --add_flipped_images are fixed at
export time. With --tflite a LiteRT (TFLite) model for a fixed input size (--crop_size) is
written too; --quantize=int8 makes it full-integer, calibrated on training images:

  python export.py --checkpoint_path=runs/demo --export_path=exported/demo --tflite \
      --crop_size=225,225 --quantize=int8 --dataset=synthetic --dataset_dir=data/synthetic
"""

from __future__ import annotations

import os
import sys

from absl import flags

from deeplab.cli import flags as cli_flags

FLAGS = flags.FLAGS

cli_flags.define_model_flags()
flags.DEFINE_string(
    "checkpoint_path",
    None,
    "Checkpoint to export: our training dir or ckpt prefix, or an official TF1 "
    "checkpoint (prefix, directory or model-zoo .tar.gz).",
)
flags.DEFINE_string(
    "export_path",
    None,
    "Directory the SavedModel is written to; a path ending in .pb gets the official frozen "
    "inference graph instead (ImageTensor:0 -> SemanticPredictions:0).",
)
flags.DEFINE_string(
    "dataset",
    None,
    "Dataset name, for the class count and class names stored "
    "with the export (default: the training run's).",
)
cli_flags.define_int_list(
    "crop_size",
    "513,513",
    "Input size (height,width) of the TFLite model; the SavedModel takes any size.",
)
flags.DEFINE_multi_string(
    "inference_scales",
    ["1.0"],
    "Scales for multi-scale inference, e.g. 0.5,1.0,1.5 (comma list or repeated flag).",
)
flags.DEFINE_boolean(
    "add_flipped_images", False, "Also average the predictions of left-right flipped images."
)
flags.DEFINE_boolean(
    "serve_encoded",
    True,
    "SavedModel: also the serve_encoded signature (PNG/JPEG bytes in). --noserve_encoded writes "
    "serving_default alone, and exports faster (one traced model less).",
)
flags.DEFINE_boolean("tflite", False, "Also write a TFLite model (fixed input size --crop_size).")
flags.DEFINE_integer(
    "quantize_delay_step",
    None,
    "Official flag: >= 0 exports the fake-quantized model of a quantization-aware training run "
    "(train.py --quantize_delay_step), and --tflite writes it as a full-integer (int8) LiteRT "
    "model with the trained ranges (no calibration images needed); < 0 exports the float "
    "model. Default: the run's value.",
)
flags.DEFINE_string(
    "tflite_path", None, "Where the TFLite model goes (default <export_path>/model.tflite)."
)
flags.DEFINE_boolean(
    "tflite_probabilities",
    True,
    "With --tflite: also output semantic_probabilities. --notflite_probabilities writes "
    "semantic_predictions alone (like the official frozen graph's SemanticPredictions), "
    "skipping the softmax and resize of the probabilities at the image size: the faster model.",
)
flags.DEFINE_enum(
    "quantize",
    None,
    ["int8"],
    "With --tflite: int8 writes a full-integer LiteRT model (int8 weights and activations, "
    "uint8 image in), calibrated on --num_calibration_images images of the training split of "
    "--dataset / --dataset_dir.",
)
flags.DEFINE_string(
    "dataset_dir",
    None,
    "Dataset folder for --quantize calibration (default: the training run's).",
)
flags.DEFINE_integer(
    "num_calibration_images", 300, "Training images that calibrate --quantize=int8."
)
cli_flags.define_official_flags("export")
flags.adopt_module_key_flags(cli_flags)


def config_from_flags(values):
    """Turns parsed flags into a `deeplab.export.ExportConfig` (ValueError or a flag error
    naming the flag if bad)."""
    from deeplab.checkpoints import run_options
    from deeplab.data.config import DataConfig
    from deeplab.export import ExportConfig, staging

    path = values.checkpoint_path
    problem = cli_flags.checkpoint_source_problem(path)
    if problem:
        raise flags.ValidationError(f"--checkpoint_path={path}: {problem}")
    _, saved = run_options.saved_run_info(path)
    dataset, info, num_classes = cli_flags.checkpoint_dataset_classes(values, path, saved)
    options = cli_flags.options_from_flags(values, path, num_classes)
    settings = cli_flags.inference_settings_from_flags(values, options, "export")
    crop = cli_flags.parse_int_list(values.crop_size, "crop_size")
    if not values.export_path.endswith(".pb"):
        staging.check_export_path(values.export_path)
    calibration = None
    if values.quantize and values.tflite and (values.dataset_dir or saved.get("dataset_dir")):
        name, folder = cli_flags.resolve_dataset(values.dataset, values.dataset_dir, saved)
        if not os.path.isdir(folder):
            raise flags.ValidationError(
                f"--dataset_dir {folder} (calibration images) does not exist"
            )
        calibration = DataConfig(
            name,
            folder,
            saved.get("train_split") or "train",
            crop_size=tuple(crop or (513, 513)),
            batch_size=1,
            is_training=True,
        )
    quantize_delay_step = values.quantize_delay_step
    if quantize_delay_step is None:
        quantize_delay_step = int(saved.get("quantize_delay_step", -1))
    class_names = None
    if info is not None and len(info.class_names) == options.num_classes:
        class_names = tuple(info.class_names)
    return ExportConfig(
        checkpoint_path=path,
        export_path=values.export_path,
        model_options=options,
        settings=settings,
        dataset=dataset,
        class_names=class_names,
        min_resize_value=values.min_resize_value,
        max_resize_value=values.max_resize_value,
        resize_factor=values.resize_factor,
        keep_aspect_ratio=values.keep_aspect_ratio,
        save_inference_graph=values.save_inference_graph,
        serve_encoded=values.serve_encoded,
        tflite=values.tflite,
        tflite_path=values.tflite_path,
        tflite_probabilities=values.tflite_probabilities,
        crop_size=tuple(crop) if crop else None,
        quantize=values.quantize,
        calibration_data=calibration,
        num_calibration_images=values.num_calibration_images,
        quantize_delay_step=quantize_delay_step,
    )


def main():
    """The command line; returns its exit status."""
    from deeplab.checkpoints.mismatch import cli_checkpoint_error
    from deeplab.checkpoints.official import CheckpointError
    from deeplab.export import runner, staging

    try:
        config = config_from_flags(FLAGS)
    except (flags.Error, ValueError) as err:
        cli_flags.print_flags_error(err)
        return 2
    try:
        runner.export(config)
    except CheckpointError as err:
        print(
            cli_checkpoint_error(err, config.model_options, config.checkpoint_path),
            file=sys.stderr,
        )
        return 1
    except runner.QuantizerRangesError as err:
        cli_flags.print_flags_error(err)
        return 2
    except staging.ExportPathError as err:
        cli_flags.print_flags_error(err)
        return 2
    except runner.LiteRTExportError as err:
        print(f"FATAL LiteRT export failed: {err}", file=sys.stderr)
        return 1
    return 0


def run() -> None:
    """The console script `deeplab-export` and `python export.py`: flags, then `main()`."""
    cli_flags.run_command_line(
        main,
        required_flags=["checkpoint_path", "export_path"],
        usage=__doc__,
        output_flag="--export_path",
    )


if __name__ == "__main__":
    run()
