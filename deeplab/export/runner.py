"""`export(ExportConfig)`: the export job of export.py as one library call.

Loads a checkpoint (ours or an official TF1 one) into the inference model and writes a
SavedModel (or, for an `export_path` ending in `.pb`, the official frozen graph), and with
`tflite` a LiteRT model (float, or full-integer int8: calibrated, or with the trained ranges of
a quantization-aware training run).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Optional, Tuple

from absl import logging

from deeplab.data.config import DataConfig
from deeplab.modeling.inference import InferenceSettings
from deeplab.modeling.options import ModelOptions, options_summary


class QuantizerRangesError(ValueError):
    """The checkpoint of a quantization-aware export holds no (or other) activation ranges."""


class LiteRTExportError(RuntimeError):
    """The LiteRT converter failed."""


@dataclasses.dataclass(frozen=True)
class ExportConfig:
    """An export job (field names are export.py's flags). `model_options` are the inference
    model's (`inference.inference_options`); `class_names` and `dataset` are stored with the
    export. The resize fields apply to the frozen graph. `calibration_data` (a training
    DataConfig: dataset, split, crop) gives the images of `quantize="int8"`;
    `quantize_delay_step >= 0` exports the fake-quantized model of a quantization-aware run."""

    checkpoint_path: str
    export_path: str
    model_options: ModelOptions
    settings: InferenceSettings = InferenceSettings()
    dataset: Optional[str] = None
    class_names: Optional[Tuple[str, ...]] = None
    min_resize_value: Optional[int] = None
    max_resize_value: Optional[int] = None
    resize_factor: Optional[int] = None
    keep_aspect_ratio: bool = True
    save_inference_graph: bool = False
    serve_encoded: bool = True
    tflite: bool = False
    tflite_path: Optional[str] = None
    tflite_probabilities: bool = True
    crop_size: Optional[Tuple[int, int]] = (513, 513)
    quantize: Optional[str] = None
    calibration_data: Optional[DataConfig] = None
    num_calibration_images: int = 300
    quantize_delay_step: int = -1

    def __post_init__(self):
        if not self.checkpoint_path or not self.export_path:
            raise ValueError("--checkpoint_path and --export_path are required")
        if self.tflite and (not self.crop_size or len(self.crop_size) != 2):
            raise ValueError("--crop_size must be height,width for --tflite")
        if not self.tflite_probabilities and not self.tflite:
            raise ValueError("--notflite_probabilities applies to the LiteRT model: add --tflite")
        if self.quantize:
            if not self.tflite:
                raise ValueError("--quantize applies to the LiteRT model: add --tflite")
            if self.num_calibration_images < 1:
                raise ValueError("--num_calibration_images must be positive")
            if self.calibration_data is None:
                raise ValueError(
                    f"--quantize={self.quantize} needs calibration images: give --dataset and "
                    "--dataset_dir of the training set"
                )
        if self.frozen_graph and not self.serve_encoded:
            raise ValueError("--noserve_encoded applies to the SavedModel, not the frozen graph")
        if not self.frozen_graph and (
            self.settings.image_pyramid or not self.settings.prediction_with_upsampled_logits
        ):
            raise ValueError(
                "--image_pyramid and --prediction_with_upsampled_logits=false are supported by "
                "the frozen-graph export only (an --export_path ending in .pb)"
            )

    @property
    def frozen_graph(self) -> bool:
        """The official frozen graph instead of a SavedModel (an export_path ending in .pb)."""
        return self.export_path.endswith(".pb")


def export(config: ExportConfig) -> str:
    """Runs the export job of `config`; returns the SavedModel directory or frozen graph path.
    Raises `deeplab.checkpoints.CheckpointError` (checkpoint does not fit the model),
    QuantizerRangesError, LiteRTExportError and `staging.ExportPathError`. A SavedModel export
    (with its LiteRT model, unless `tflite_path` puts it elsewhere) is atomic."""
    from deeplab.checkpoints import official as checkpoints
    from deeplab.export import litert, qat
    from deeplab.export import saved_model as export_lib
    from deeplab.modeling import inference

    options, settings, path = config.model_options, config.settings, config.checkpoint_path
    logging.info("Model options: %s", options_summary(options))
    model, report = inference.build_inference_model(options, path)
    logging.info("%s", report.summary())
    quantize, calibration = config.quantize, None
    if quantize:
        data = config.calibration_data
        calibration = litert.calibration_images(
            data.dataset_name,
            data.dataset_dir,
            config.crop_size,
            config.num_calibration_images,
            split=data.split,
        )
    if config.quantize_delay_step >= 0:
        model = qat.quantize_model(model)
        try:
            qat.load_quantizer_ranges(model, checkpoints.resolve_checkpoint_prefix(path))
        except ValueError as err:
            raise QuantizerRangesError(f"--quantize_delay_step: {err}") from None
        quantize, calibration = "int8", qat.range_free_images(config.crop_size or (513, 513))
    scales = list(settings.eval_scales)
    export_dir = config.export_path
    if config.frozen_graph:
        from deeplab.export import frozen_graph

        export_dir = os.path.dirname(os.path.abspath(config.export_path))
        frozen_graph.write_frozen_graph(
            model,
            config.export_path,
            settings,
            save_inference_graph=config.save_inference_graph,
            min_resize_value=config.min_resize_value,
            max_resize_value=config.max_resize_value,
            resize_factor=config.resize_factor,
            keep_aspect_ratio=config.keep_aspect_ratio,
        )
        # The LiteRT model serves the plain multi-scale prediction.
        module = export_lib.DeepLabServingModule(
            model,
            options.num_classes,
            dataclasses.replace(
                settings, image_pyramid=None, prediction_with_upsampled_logits=True
            ),
        )
        print(
            f"Frozen inference graph written to {config.export_path} (input "
            f"{frozen_graph.INPUT_NAME}:0 uint8 [1, H, W, 3]; outputs "
            f"{frozen_graph.OUTPUT_NAME}:0, {frozen_graph.PROBABILITIES_NAME}:0; "
            f"{options.num_classes} classes, scales {scales})"
        )
    else:
        metadata = dict(
            checkpoint=os.path.abspath(path),
            dataset=config.dataset,
            class_names=list(config.class_names) if config.class_names else None,
            model_options=options.as_dict(),
            quantize_delay_step=config.quantize_delay_step,
        )
        # A LiteRT model inside the export folder is part of the (atomic) export.
        inside = config.tflite and not config.tflite_path
        module = export_lib.export_saved_model(
            model,
            config.export_path,
            options.num_classes,
            settings,
            metadata=metadata,
            encoded_signature=config.serve_encoded,
            also=(
                (
                    lambda folder, module: _write_tflite(
                        config, module, quantize, calibration, f"{folder}/model.tflite"
                    )
                )
                if inside
                else None
            ),
        )
        print(
            f"SavedModel written to {config.export_path} (signatures: serving_default"
            + (", serve_encoded" if config.serve_encoded else "")
            + f"; {options.num_classes} classes, scales {scales}"
            + (", flipped" if settings.add_flipped_images else "")
            + ")"
        )
    if config.tflite:
        tflite_path = config.tflite_path or os.path.join(export_dir, "model.tflite")
        if config.frozen_graph or config.tflite_path:
            _write_tflite(config, module, quantize, calibration, tflite_path)
        _report_tflite(config, quantize, tflite_path)
    return config.export_path


def _write_tflite(config: ExportConfig, module, quantize, calibration, tflite_path: str) -> None:
    from deeplab.export import saved_model as export_lib

    try:
        export_lib.export_tflite(
            module,
            tflite_path,
            config.crop_size,
            quantize=quantize,
            representative_images=calibration,
            probabilities=config.tflite_probabilities,
        )
    except ValueError as err:
        raise LiteRTExportError(str(err)[:1000]) from None


def _report_tflite(config: ExportConfig, quantize, tflite_path: str) -> None:
    from deeplab.export import litert

    kind = "full-integer int8 " if quantize else ""
    outputs = litert.PREDICTIONS + (
        f", {litert.PROBABILITIES}" if config.tflite_probabilities else ""
    )
    crop = config.crop_size
    print(
        f"{kind}LiteRT model written to {tflite_path} (signature serving_default: image "
        f"uint8 [1, {crop[0]}, {crop[1]}, 3] -> {outputs})"
    )
