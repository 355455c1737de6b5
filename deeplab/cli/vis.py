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
--max_number_of_iterations; 0 or less = forever) or one checkpoint (prefix, official dir or
.tar.gz).
"""

from __future__ import annotations

from absl import flags

from deeplab.cli import flags as cli_flags

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
    "Checkpoints to visualise before stopping (0 or less: keep waiting for new ones).",
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
cli_flags.define_skip_bad_examples_flag()
cli_flags.define_resize_flags()
cli_flags.define_official_flags("vis")
flags.adopt_module_key_flags(cli_flags)


def config_from_flags(values):
    """Turns parsed flags into a `deeplab.evaluation.VisConfig` (ValueError or a flag error
    naming the flag if bad)."""
    from deeplab.evaluation import VisConfig

    return cli_flags.checkpoint_job_config(VisConfig, values, "vis")


def main():
    """The command line; returns its exit status."""
    from deeplab.evaluation import vis_runner

    return cli_flags.run_checkpoint_job(
        config_from_flags,
        vis_runner.visualize_checkpoint,
        FLAGS,
        job_errors=(vis_runner.BadVisDataError,),
    )


def run() -> None:
    """The console script `deeplab-vis` and `python vis.py`: flags, then `main()`."""
    cli_flags.run_command_line(
        main, required_flags=["checkpoint_dir"], usage=__doc__, output_flag="--vis_logdir"
    )


if __name__ == "__main__":
    run()
