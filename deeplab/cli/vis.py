r"""Visualises DeepLab predictions: colour label maps, overlays, side-by-side figures.

  python vis.py --checkpoint_dir=runs/demo --vis_logdir=runs/demo/vis --max_number_of_iterations=1
  python vis.py --checkpoint_dir=CITYSCAPES_CKPT --dataset=cityscapes --dataset_dir=... \
      --vis_split=val_fine --vis_crop_size=1025,2049 --also_save_raw_predictions \
      --max_number_of_iterations=1 (+ the model flags)

Per image, in <vis_logdir>/segmentation_results: `%06d_image.png`, `%06d_prediction.png` (the
prediction in the dataset's colours), `%06d_overlay.png` (prediction blended over the image) and
`%06d_figure.png` (image | ground truth | prediction | overlay, with a class legend). With
--also_save_raw_predictions, <vis_logdir>/raw_segmentation_results/<image name>.png holds the raw
label map (Cityscapes: train ids converted to label ids, as the evaluation server expects).
`--checkpoint_dir` is a training directory (each new checkpoint, until
--max_number_of_iterations; 0 = forever) or one checkpoint (prefix, official dir or .tar.gz).
"""

from __future__ import annotations

import os
import sys

from absl import flags, logging

from deeplab.cli import flags as cli_flags
from deeplab.cli import logs as cli_logs

FLAGS = flags.FLAGS

cli_flags.define_model_flags()
flags.DEFINE_string("checkpoint_dir", None, "Training directory or one checkpoint to visualise.")
flags.DEFINE_string("vis_logdir", None, "Where results go (default <checkpoint_dir>/vis).")
flags.DEFINE_string(
    "dataset",
    None,
    "Dataset name (default: the training run's, else synthetic "
    "when --dataset_dir is unset, else pascal_voc_seg).",
)
flags.DEFINE_string("dataset_dir", None, "Where the dataset resides.")
flags.DEFINE_string("vis_split", "val", "Which split of the dataset is visualised.")
cli_flags.define_int_list(
    "vis_crop_size",
    "513,513",
    "Images are padded to this size (default 225,225 for the synthetic set).",
)
flags.DEFINE_integer("vis_batch_size", 1, "Images per batch.")
flags.DEFINE_multi_string("eval_scales", ["1.0"], "Scales for multi-scale inference.")
flags.DEFINE_boolean("add_flipped_images", False, "Also average the flipped images' predictions.")
flags.DEFINE_enum(
    "colormap_type",
    None,
    ["pascal", "cityscapes", "ade20k", "synthetic"],
    "Colour map (default: the dataset's).",
)
flags.DEFINE_boolean(
    "also_save_raw_predictions",
    False,
    "Also save raw label maps (Cityscapes: converted to label ids).",
)
flags.DEFINE_integer(
    "max_number_of_iterations",
    0,
    "Checkpoints to visualise before stopping (0: keep waiting for new ones).",
)
flags.DEFINE_integer("eval_interval_secs", 60 * 5, "Minimum seconds between two checkpoints.")
flags.DEFINE_float(
    "eval_timeout_secs",
    None,
    "Stop after this many seconds without a new checkpoint (default: never).",
)
flags.DEFINE_integer("num_vis_examples", None, "Visualise only this many images (default: all).")
flags.DEFINE_float("overlay_alpha", 0.5, "Weight of the label colours in the overlay.")
flags.DEFINE_boolean("save_figures", True, "Write the side-by-side matplotlib figures.")
cli_flags.define_resize_flags()
cli_flags.define_official_flags("vis")
flags.adopt_module_key_flags(cli_flags)

_COLORMAP_DATASET = {
    "pascal": "pascal_voc_seg",
    "cityscapes": "cityscapes",
    "ade20k": "ade20k",
    "synthetic": "synthetic",
}


def _resized_size(height: int, width: int):
    """Size of an image after the pipeline's resize_to_range (the official vis reverses it)."""
    if not FLAGS.min_resize_value:
        return height, width
    import tensorflow as tf

    from deeplab.data import preprocess

    resized = preprocess.resize_to_range(
        tf.zeros([height, width, 1]),
        None,
        FLAGS.min_resize_value,
        FLAGS.max_resize_value,
        FLAGS.resize_factor,
        keep_aspect_ratio=FLAGS.keep_aspect_ratio,
    )[0]
    return int(resized.shape[0]), int(resized.shape[1])


def main():
    """The command line; returns its exit status."""
    import numpy as np
    import tensorflow as tf

    from deeplab.checkpoints import polling as checkpoint_polling
    from deeplab.checkpoints.mismatch import cli_checkpoint_error
    from deeplab.checkpoints.official import (
        CheckpointError,
        load_checkpoint,
        resolve_checkpoint_prefix,
    )
    from deeplab.data.pipeline import build_dataset, split_size
    from deeplab.evaluation import colormaps, visualization
    from deeplab.modeling import inference
    from deeplab.modeling.layers import resize_labels

    checkpoint_dir = FLAGS.checkpoint_dir
    setup = cli_flags.cli_model_setup(
        FLAGS, checkpoint_dir, script="vis", crop_flag="vis_crop_size", scales_flag="eval_scales"
    )
    if setup is None:
        return 2
    dataset, dataset_dir = setup.dataset, setup.dataset_dir
    info, options = setup.info, setup.options
    scales, model, stride = setup.scales, setup.model, setup.stride
    colormap = colormaps.get_colormap(
        _COLORMAP_DATASET[FLAGS.colormap_type] if FLAGS.colormap_type else dataset
    )
    class_names = list(info.class_names) if len(info.class_names) == options.num_classes else None
    vis_logdir = FLAGS.vis_logdir or inference.default_output_dir(checkpoint_dir, "vis")
    save_dir = os.path.join(vis_logdir, "segmentation_results")
    raw_dir = os.path.join(vis_logdir, "raw_segmentation_results")

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)])
    def predict(images):
        return inference.predict_labels(
            setup.predictor,
            images,
            scales,
            FLAGS.add_flipped_images,
            stride,
            prediction_with_upsampled_logits=FLAGS.prediction_with_upsampled_logits,
        )

    convert = dataset == "cityscapes" or FLAGS.colormap_type == "cityscapes"
    for path in checkpoint_polling.checkpoints_to_evaluate(
        checkpoint_dir,
        eval_interval_secs=FLAGS.eval_interval_secs,
        max_number_of_evaluations=FLAGS.max_number_of_iterations,
        timeout_secs=FLAGS.eval_timeout_secs,
    ):
        try:
            path, report = checkpoint_polling.load_readable(
                lambda p: load_checkpoint(model, p), path, checkpoint_dir
            )
            logging.info("%s", report.summary())
        except CheckpointError as err:
            print(cli_checkpoint_error(err, options, path), file=sys.stderr)
            return 1
        data = build_dataset(
            cli_flags.eval_data_config(
                FLAGS, setup, split=FLAGS.vis_split, batch_size=FLAGS.vis_batch_size
            )
        )
        target = split_size(dataset, dataset_dir, FLAGS.vis_split)
        if FLAGS.num_vis_examples is not None:
            target = min(target, FLAGS.num_vis_examples) if target else FLAGS.num_vis_examples
        progress = cli_logs.Progress(target, "image")
        index = 0
        for batch in data:
            predictions = predict(tf.cast(batch["image"], tf.float32)).numpy()
            for i in range(predictions.shape[0]):
                if FLAGS.num_vis_examples is not None and index >= FLAGS.num_vis_examples:
                    break
                height, width = int(batch["height"][i]), int(batch["width"][i])
                valid_h, valid_w = _resized_size(height, width)
                name = batch["image_name"][i].numpy().decode()
                prediction = predictions[i, :valid_h, :valid_w]
                visualization.save_visualization(
                    save_dir,
                    index,
                    batch["image"][i, :valid_h, :valid_w].numpy(),
                    prediction,
                    batch["label"][i, :valid_h, :valid_w, 0].numpy(),
                    colormap=colormap,
                    class_names=class_names,
                    ignore_label=info.ignore_label,
                    num_classes=options.num_classes,
                    alpha=FLAGS.overlay_alpha,
                    save_figure=FLAGS.save_figures,
                    image_name=name,
                )
                if FLAGS.also_save_raw_predictions:
                    raw = prediction
                    if (valid_h, valid_w) != (height, width):  # undo the resize (nearest)
                        raw = resize_labels(raw[None], [height, width]).numpy()[0]
                    if convert:
                        raw = visualization.train_id_to_label_id(raw)
                    visualization.save_png(
                        np.asarray(raw, np.uint8),
                        os.path.join(raw_dir, f"{name or f'{index:06d}'}.png"),
                    )
                index += 1
                progress.update(index)
            if FLAGS.num_vis_examples is not None and index >= FLAGS.num_vis_examples:
                break
        progress.finish(index)
        print(
            f"Visualised {index} images of {dataset}/{FLAGS.vis_split} with "
            f"{resolve_checkpoint_prefix(path)} in {save_dir}",
            flush=True,
        )
    return 0


def run() -> None:
    """The console script `deeplab-vis` and `python vis.py`: flags, then `main()`."""
    cli_flags.run_command_line(
        main, required_flags=["checkpoint_dir"], usage=__doc__, output_flag="--vis_logdir"
    )


if __name__ == "__main__":
    run()
