r"""Evaluates DeepLab checkpoints: mIoU, per-class IoU, pixel accuracy, confusion matrix.

Official command lines keep working, e.g. the model zoo's PASCAL VOC check (82.20%):

  python eval.py --checkpoint_dir=deeplabv3_pascal_trainval_2018_01_04.tar.gz \
      --dataset=pascal_voc_seg --dataset_dir=PATH/tfrecord --eval_split=val \
      --model_variant=xception_65 --atrous_rates=6 --atrous_rates=12 --atrous_rates=18 \
      --output_stride=16 --decoder_output_stride=4 --eval_crop_size=513,513 \
      --max_number_of_evaluations=1

`--checkpoint_dir` is a training directory (each new checkpoint is evaluated as training writes
it, until --max_number_of_evaluations; 0 or less = forever), or one fixed checkpoint: a prefix, a
model-zoo .tar.gz or an unpacked one (evaluated once). For our own runs the model flags default
to the run's `model_options.json`; flags given on the command line override it (e.g.
--output_stride=8 at eval time). Results go to --eval_logdir (default <checkpoint_dir>/eval):
results.txt (the table), results.json, confusion_matrix.csv / .png, eval_history.jsonl and
TensorBoard summaries (`eval/miou_1.0_overall`, `eval/miou_1.0_class_<i>`, ...).
"""

from __future__ import annotations

from absl import flags

from deeplab.cli import flags as cli_flags

FLAGS = flags.FLAGS

cli_flags.define_model_flags()
flags.DEFINE_string(
    "checkpoint_dir",
    None,
    "Training directory to evaluate (each new checkpoint), or one checkpoint: "
    "a prefix, a directory holding one official checkpoint, or a .tar.gz.",
)
flags.DEFINE_string(
    "eval_logdir",
    None,
    "Where results and TensorBoard summaries go (default <checkpoint_dir>/eval).",
)
flags.DEFINE_string(
    "dataset",
    None,
    "Dataset name (pascal_voc_seg, cityscapes, ade20k, synthetic, tfds:NAME). "
    "Default: the training run's, else synthetic when --dataset_dir is unset, "
    "else pascal_voc_seg.",
)
flags.DEFINE_string(
    "dataset_dir",
    None,
    "Where the dataset resides (synthetic default: data/synthetic, built when missing).",
)
flags.DEFINE_string("eval_split", "val", "Which split of the dataset is used for evaluation.")
cli_flags.define_int_list(
    "eval_crop_size",
    "513,513",
    "Images are padded to this size (larger images to a larger size; "
    "default 225,225 for the synthetic set).",
)
flags.DEFINE_integer("eval_batch_size", 1, "Images per batch.")
flags.DEFINE_multi_string(
    "eval_scales",
    ["1.0"],
    "Scales for multi-scale inference, e.g. 0.5,0.75,1.0,1.25,1.5,1.75 "
    "(comma list or repeated flag).",
)
flags.DEFINE_boolean(
    "add_flipped_images", False, "Also average the predictions of left-right flipped images."
)
cli_flags.define_resize_flags()
flags.DEFINE_integer(
    "max_number_of_evaluations",
    0,
    "Number of checkpoints to evaluate before stopping (0 or less: keep waiting for new ones).",
)
flags.DEFINE_integer(
    "eval_interval_secs",
    60 * 5,
    "Minimum seconds between two evaluations (polling for new checkpoints).",
)
flags.DEFINE_float(
    "eval_timeout_secs",
    None,
    "Stop after this many seconds without a new checkpoint (default: never).",
)
flags.DEFINE_string(
    "output_json",
    None,
    "Also write the latest results to this JSON file (miou, pixel_accuracy, "
    "per_class_iou in class order, confusion_matrix, ...).",
)
cli_flags.define_skip_bad_examples_flag()
flags.DEFINE_integer("max_eval_batches", None, "Evaluate only this many batches (quick checks).")
cli_flags.define_official_flags("eval")
flags.adopt_module_key_flags(cli_flags)


def config_from_flags(values):
    """Turns parsed flags into a `deeplab.evaluation.EvalConfig` (ValueError or a flag error
    naming the flag if bad)."""
    from deeplab.evaluation import EvalConfig

    return cli_flags.checkpoint_job_config(EvalConfig, values, "eval")


def main():
    """The command line; returns its exit status."""
    from deeplab.evaluation import runner

    return cli_flags.run_checkpoint_job(
        config_from_flags, runner.evaluate_checkpoint, FLAGS, job_errors=(runner.BadEvalDataError,)
    )


def run() -> None:
    """The console script `deeplab-eval` and `python eval.py`: flags, then `main()`."""
    cli_flags.run_command_line(
        main, required_flags=["checkpoint_dir"], usage=__doc__, output_flag="--eval_logdir"
    )


if __name__ == "__main__":
    run()
