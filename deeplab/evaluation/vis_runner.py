"""`visualize_checkpoint(VisConfig)`: the visualisation job of vis.py as one library call.

Predicts each image of the evaluation DataConfig with each checkpoint of `checkpoint_dir` (as
training writes them, or one fixed checkpoint), with the InferenceSettings, and writes per image,
in `<vis_logdir>/segmentation_results`: `%06d_image.png`, `%06d_prediction.png` (the prediction
in the colour map's colours), `%06d_overlay.png` and, with `save_figures`, `%06d_figure.png`
(image | ground truth | prediction | overlay, with a class legend). With
`also_save_raw_predictions`, `<vis_logdir>/raw_segmentation_results/<image name>.png` holds the
raw label map at the image's own size (Cityscapes: train ids converted to label ids, as the
evaluation server expects).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Dict, List, Optional

from deeplab.data.config import DataConfig
from deeplab.modeling.inference import InferenceSettings
from deeplab.modeling.options import ModelOptions

# The dataset whose colours each --colormap_type names.
COLORMAP_DATASETS = {
    "pascal": "pascal_voc_seg",
    "cityscapes": "cityscapes",
    "ade20k": "ade20k",
    "synthetic": "synthetic",
}


class BadVisDataError(RuntimeError):
    """A bad example stopped the visualisation of a checkpoint (the images before it are
    written); the message names the example's file, the problem and the fix."""


@dataclasses.dataclass(frozen=True)
class VisConfig:
    """A visualisation job (field names are vis.py's flags). `model_options` are the inference
    model's (`inference.inference_options`); `data` is an evaluation DataConfig (vis.py's
    --vis_split, --vis_crop_size, --vis_batch_size and resize flags); `vis_logdir` defaults to
    `<checkpoint_dir>/vis`; `colormap_type` None: the dataset's colours;
    `max_number_of_iterations` checkpoints are read (0 or less: keep waiting for new ones);
    `num_vis_examples` None: every image of the split. A bad value raises ValueError naming
    the flag."""

    checkpoint_dir: str
    model_options: ModelOptions
    data: DataConfig
    settings: InferenceSettings = InferenceSettings()
    vis_logdir: Optional[str] = None
    colormap_type: Optional[str] = None
    also_save_raw_predictions: bool = False
    max_number_of_iterations: int = 0
    eval_interval_secs: float = 300
    eval_timeout_secs: Optional[float] = None
    num_vis_examples: Optional[int] = None
    overlay_alpha: float = 0.5
    save_figures: bool = True

    def __post_init__(self):
        if not self.checkpoint_dir:
            raise ValueError("--checkpoint_dir is required")
        if self.data.is_training:
            raise ValueError("VisConfig.data must be an evaluation DataConfig (is_training=False)")
        if self.colormap_type is not None and self.colormap_type not in COLORMAP_DATASETS:
            raise ValueError(
                f"--colormap_type={self.colormap_type}: must be one of "
                + ", ".join(COLORMAP_DATASETS)
            )
        for name, value in (
            ("eval_interval_secs", self.eval_interval_secs),
            ("eval_timeout_secs", self.eval_timeout_secs),
        ):
            if value is not None and value < 0:
                raise ValueError(f"--{name}={value}: must be >= 0")
        if self.num_vis_examples is not None and self.num_vis_examples < 1:
            raise ValueError(
                f"--num_vis_examples={self.num_vis_examples}: must be a positive number of "
                "images (leave it unset for all)"
            )
        if not 0.0 <= self.overlay_alpha <= 1.0:
            raise ValueError(f"--overlay_alpha={self.overlay_alpha}: must be in [0, 1]")
        if self.vis_logdir is None:
            from deeplab.modeling.inference import default_output_dir

            logdir = default_output_dir(self.checkpoint_dir, "vis")
            object.__setattr__(self, "vis_logdir", logdir)

    @property
    def save_dir(self) -> str:
        """Where the colour predictions, overlays and figures go."""
        return os.path.join(self.vis_logdir, "segmentation_results")

    @property
    def raw_dir(self) -> str:
        """Where the raw label maps go (`also_save_raw_predictions`)."""
        return os.path.join(self.vis_logdir, "raw_segmentation_results")


def _resized_size(data: DataConfig, height: int, width: int):
    """Size of an image after the pipeline's resize_to_range (the official vis reverses it)."""
    if not data.min_resize_value:
        return height, width
    import tensorflow as tf

    from deeplab.data import preprocess

    resized = preprocess.resize_to_range(
        tf.zeros([height, width, 1]),
        None,
        data.min_resize_value,
        data.max_resize_value,
        data.resize_factor,
        keep_aspect_ratio=data.keep_aspect_ratio,
    )[0]
    return int(resized.shape[0]), int(resized.shape[1])


def visualize_checkpoint(config: VisConfig) -> List[Dict[str, object]]:
    """Runs the visualisation job of `config`; returns, per checkpoint read, a dict with its
    `checkpoint` prefix, `step`, `num_images` visualised and `save_dir`. Raises
    `deeplab.checkpoints.CheckpointError` for a checkpoint that cannot be loaded into the model
    (a damaged one of a training dir falls back to the one before it), and BadVisDataError for
    a bad example."""
    import numpy as np
    import tensorflow as tf

    from deeplab.data.pipeline import build_dataset, split_size
    from deeplab.data.validate import stopped_by_bad_example
    from deeplab.evaluation import colormaps, visualization
    from deeplab.evaluation.checkpoint_loop import each_checkpoint
    from deeplab.evaluation.progress import Progress
    from deeplab.modeling.layers import resize_labels

    options, data, settings = config.model_options, config.data, config.settings
    info = data.dataset_info()
    colormap_dataset = COLORMAP_DATASETS.get(config.colormap_type, data.dataset_name)
    colormap = colormaps.get_colormap(colormap_dataset)
    class_names = None
    if info is not None and len(info.class_names) == options.num_classes:
        class_names = list(info.class_names)
    # Cityscapes predictions are saved as label ids (what its evaluation server reads).
    to_label_ids = "cityscapes" in (data.dataset_name, config.colormap_type)
    limit = config.num_vis_examples
    target = split_size(data.dataset_name, data.dataset_dir, data.split)
    if limit is not None:
        target = min(target, limit) if target else limit

    def save_image(batch, i, prediction, index):
        """Writes image `i` of `batch` (its padded `prediction`) as the `index`-th result."""
        height, width = int(batch["height"][i]), int(batch["width"][i])
        valid_h, valid_w = _resized_size(data, height, width)
        name = batch["image_name"][i].numpy().decode()
        prediction = prediction[:valid_h, :valid_w]
        visualization.save_visualization(
            config.save_dir,
            index,
            batch["image"][i, :valid_h, :valid_w].numpy(),
            prediction,
            batch["label"][i, :valid_h, :valid_w, 0].numpy(),
            colormap=colormap,
            class_names=class_names,
            ignore_label=data.ignore_label,
            num_classes=options.num_classes,
            alpha=config.overlay_alpha,
            save_figure=config.save_figures,
            image_name=name,
        )
        if config.also_save_raw_predictions:
            raw = prediction
            if (valid_h, valid_w) != (height, width):  # undo the resize (nearest)
                raw = resize_labels(raw[None], [height, width]).numpy()[0]
            if to_label_ids:
                raw = visualization.train_id_to_label_id(raw)
            visualization.save_png(
                np.asarray(raw, np.uint8),
                os.path.join(config.raw_dir, f"{name or f'{index:06d}'}.png"),
            )

    visualised = []
    # Traced once for the model of every checkpoint; no autograph (the inference code has no
    # data-dependent Python control flow, and converting the model's code only slows tracing).
    predict = None
    for model, prefix, step in each_checkpoint(config, config.max_number_of_iterations):
        if predict is None:
            predict = tf.function(
                lambda images: settings.predict_labels(model, images),
                input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)],
                autograph=False,
            )
        progress = Progress(target, "image")
        index = 0
        try:
            for batch in build_dataset(data):
                predictions = predict(tf.cast(batch["image"], tf.float32)).numpy()
                for i in range(predictions.shape[0]):
                    if limit is not None and index >= limit:
                        break
                    save_image(batch, i, predictions[i], index)
                    index += 1
                    progress.update(index)
                if limit is not None and index >= limit:
                    break
        except tf.errors.OpError as err:
            stopped = (
                f"Visualisation with {prefix} stopped after {index} images (in {config.save_dir})."
            )
            message = stopped_by_bad_example(err, data, options.num_classes, stopped)
            if message is None:
                raise
            raise BadVisDataError(message) from None
        progress.finish(index)
        print(
            f"Visualised {index} images of {data.dataset_name}/{data.split} with {prefix} "
            f"in {config.save_dir}",
            flush=True,
        )
        visualised.append(
            dict(checkpoint=prefix, step=step, num_images=index, save_dir=config.save_dir)
        )
    return visualised
