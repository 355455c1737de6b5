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

import dataclasses
import os
import sys

from absl import flags, logging

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


class _LiteRTExportError(Exception):
    """The LiteRT conversion failed (the export is not written)."""


def main():
    """The command line; returns its exit status."""
    from deeplab.checkpoints import run_options
    from deeplab.checkpoints.mismatch import cli_checkpoint_error
    from deeplab.checkpoints.official import CheckpointError
    from deeplab.data import descriptors
    from deeplab.export import litert, staging
    from deeplab.export import saved_model as export_lib
    from deeplab.modeling import inference

    path = FLAGS.checkpoint_path
    try:
        problem = cli_flags.checkpoint_source_problem(path)
        if problem:
            raise flags.ValidationError(f"--checkpoint_path={path}: {problem}")
        pyramid = cli_flags.check_inference_flags(FLAGS, "export")
        saved_fields, saved = run_options.saved_run_info(path)
        dataset = FLAGS.dataset or saved.get("dataset")
        info = descriptors.get_dataset_info(dataset) if dataset else None
        num_classes = (
            (info.num_classes if info else None) or inference.checkpoint_num_classes(path) or 21
        )
        options = cli_flags.options_from_flags(FLAGS, path, num_classes)
        scales = cli_flags.parse_float_list(FLAGS.inference_scales, "inference_scales") or [1.0]
        crop = cli_flags.parse_int_list(FLAGS.crop_size, "crop_size")
        if not FLAGS.export_path.endswith(".pb"):
            staging.check_export_path(FLAGS.export_path)
        if FLAGS.tflite and (not crop or len(crop) != 2):
            raise flags.ValidationError("--crop_size must be height,width for --tflite")
        calibration = None
        if not FLAGS.tflite_probabilities and not FLAGS.tflite:
            raise flags.ValidationError(
                "--notflite_probabilities applies to the LiteRT model: add --tflite"
            )
        if FLAGS.quantize:
            if not FLAGS.tflite:
                raise flags.ValidationError("--quantize applies to the LiteRT model: add --tflite")
            if FLAGS.num_calibration_images < 1:
                raise flags.ValidationError("--num_calibration_images must be positive")
            if not (FLAGS.dataset_dir or saved.get("dataset_dir")):
                raise flags.ValidationError(
                    f"--quantize={FLAGS.quantize} needs calibration images: give --dataset and "
                    "--dataset_dir of the training set"
                )
            calibration_data = cli_flags.resolve_dataset(FLAGS.dataset, FLAGS.dataset_dir, saved)
            if not os.path.isdir(calibration_data[1]):
                raise flags.ValidationError(
                    f"--dataset_dir {calibration_data[1]} (calibration images) does not exist"
                )
            calibration = litert.calibration_images(
                *calibration_data,
                crop,
                FLAGS.num_calibration_images,
                split=saved.get("train_split") or "train",
            )
    except (flags.ValidationError, ValueError) as err:
        cli_flags.print_flags_error(err)
        return 2
    from deeplab.modeling.options import options_summary

    logging.info("Model options: %s", options_summary(options))
    try:
        model, report = inference.build_inference_model(options, path)
    except CheckpointError as err:
        print(cli_checkpoint_error(err, options, path), file=sys.stderr)
        return 1
    logging.info("%s", report.summary())
    quantize_delay_step = FLAGS.quantize_delay_step
    if quantize_delay_step is None:
        quantize_delay_step = int(saved.get("quantize_delay_step", -1))
    quantize = FLAGS.quantize
    if quantize_delay_step >= 0:
        from deeplab.checkpoints import official as checkpoints
        from deeplab.export import qat

        model = qat.quantize_model(model)
        try:
            qat.load_quantizer_ranges(model, checkpoints.resolve_checkpoint_prefix(path))
        except ValueError as err:
            print(f"FATAL Flags parsing error: --quantize_delay_step: {err}", file=sys.stderr)
            return 2
        quantize, calibration = "int8", qat.range_free_images(crop or (513, 513))
    class_names = None
    if info is not None and len(info.class_names) == options.num_classes:
        class_names = list(info.class_names)
    metadata = dict(
        checkpoint=os.path.abspath(path),
        dataset=dataset,
        class_names=class_names,
        model_options=dataclasses.asdict(options),
        quantize_delay_step=quantize_delay_step,
    )
    settings = dict(
        eval_scales=scales,
        add_flipped_images=FLAGS.add_flipped_images,
        logits_output_stride=inference.logits_output_stride(options),
    )
    export_dir = FLAGS.export_path
    tflite_path = FLAGS.tflite_path or os.path.join(export_dir, "model.tflite")

    def write_tflite(module, path):
        try:
            export_lib.export_tflite(
                module,
                path,
                crop,
                quantize=quantize,
                representative_images=calibration,
                probabilities=FLAGS.tflite_probabilities,
            )
        except ValueError as err:
            raise _LiteRTExportError(str(err)[:1000]) from None

    try:
        if FLAGS.export_path.endswith(".pb"):
            from deeplab.export import frozen_graph

            export_dir = os.path.dirname(os.path.abspath(FLAGS.export_path))
            tflite_path = FLAGS.tflite_path or os.path.join(export_dir, "model.tflite")
            frozen_graph.write_frozen_graph(
                model,
                FLAGS.export_path,
                save_inference_graph=FLAGS.save_inference_graph,
                min_resize_value=FLAGS.min_resize_value,
                max_resize_value=FLAGS.max_resize_value,
                resize_factor=FLAGS.resize_factor,
                keep_aspect_ratio=FLAGS.keep_aspect_ratio,
                image_pyramid=pyramid,
                merge_method=FLAGS.merge_method,
                prediction_with_upsampled_logits=FLAGS.prediction_with_upsampled_logits,
                **settings,
            )
            print(
                f"Frozen inference graph written to {FLAGS.export_path} (input "
                f"{frozen_graph.INPUT_NAME}:0 uint8 [1, H, W, 3]; outputs "
                f"{frozen_graph.OUTPUT_NAME}:0, {frozen_graph.PROBABILITIES_NAME}:0; "
                f"{options.num_classes} classes, scales {scales})"
            )
            if FLAGS.tflite:
                module = export_lib.DeepLabServingModule(model, options.num_classes, **settings)
                write_tflite(module, tflite_path)
        else:
            # The LiteRT model inside the export folder is part of the (atomic) export.
            inside = FLAGS.tflite and not FLAGS.tflite_path
            module = export_lib.export_saved_model(
                model,
                FLAGS.export_path,
                options.num_classes,
                metadata=metadata,
                also=(
                    (lambda folder, module: write_tflite(module, f"{folder}/model.tflite"))
                    if inside
                    else None
                ),
                **settings,
            )
            print(
                f"SavedModel written to {FLAGS.export_path} (signatures: serving_default, "
                f"serve_encoded; {options.num_classes} classes, scales {scales}"
                + (", flipped" if FLAGS.add_flipped_images else "")
                + ")"
            )
            if FLAGS.tflite and not inside:
                write_tflite(module, tflite_path)
    except staging.ExportPathError as err:
        cli_flags.print_flags_error(err)
        return 2
    except _LiteRTExportError as err:
        print(f"FATAL LiteRT export failed: {err}", file=sys.stderr)
        return 1
    if FLAGS.tflite:
        kind = "full-integer int8 " if quantize else ""
        outputs = litert.PREDICTIONS + (
            f", {litert.PROBABILITIES}" if FLAGS.tflite_probabilities else ""
        )
        print(
            f"{kind}LiteRT model written to {tflite_path}\n  signature serving_default: image "
            f"uint8 [1, {crop[0]}, {crop[1]}, 3] -> {outputs}"
        )
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
