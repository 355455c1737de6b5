r"""Evaluates DeepLab checkpoints: mIoU, per-class IoU, pixel accuracy, confusion matrix.

Official command lines keep working, e.g. the model zoo's PASCAL VOC check (82.20%):

  python eval.py --checkpoint_dir=deeplabv3_pascal_trainval_2018_01_04.tar.gz \
      --dataset=pascal_voc_seg --dataset_dir=PATH/tfrecord --eval_split=val \
      --model_variant=xception_65 --atrous_rates=6 --atrous_rates=12 --atrous_rates=18 \
      --output_stride=16 --decoder_output_stride=4 --eval_crop_size=513,513 \
      --max_number_of_evaluations=1

`--checkpoint_dir` is a training directory (each new checkpoint is evaluated as training writes
it, until --max_number_of_evaluations; 0 = forever), or one fixed checkpoint: a prefix, a
model-zoo .tar.gz or an unpacked one (evaluated once). For our own runs the model flags default
to the run's `model_options.json`; flags given on the command line override it (e.g.
--output_stride=8 at eval time). Results go to --eval_logdir (default <checkpoint_dir>/eval):
results.txt (the table), results.json, confusion_matrix.csv / .png, eval_history.jsonl and
TensorBoard summaries (`eval/miou_1.0_overall`, `eval/miou_1.0_class_<i>`, ...).
"""

from __future__ import annotations

import json
import os
import sys

from absl import flags, logging

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
    "Number of checkpoints to evaluate before stopping (0: keep waiting for new ones).",
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
flags.DEFINE_boolean(
    "skip_bad_examples",
    False,
    "Skip unreadable or invalid examples (corrupt records, bad labels) and count them "
    "instead of stopping at the first one.",
)
flags.DEFINE_integer("max_eval_batches", None, "Evaluate only this many batches (quick checks).")
cli_flags.define_official_flags("eval")
flags.adopt_module_key_flags(cli_flags)


def main():
    """The command line; returns its exit status."""
    from deeplab.checkpoints import polling as checkpoint_polling
    from deeplab.checkpoints.mismatch import cli_checkpoint_error
    from deeplab.checkpoints.official import (
        CheckpointError,
        load_checkpoint,
        resolve_checkpoint_prefix,
    )
    from deeplab.data.decode import bad_example_error
    from deeplab.data.pipeline import build_dataset
    from deeplab.data.validate import bad_data_advice
    from deeplab.evaluation import loop as evaluation
    from deeplab.evaluation import results as eval_results
    from deeplab.modeling import inference

    checkpoint_dir = FLAGS.checkpoint_dir
    setup = cli_flags.cli_model_setup(
        FLAGS, checkpoint_dir, script="eval", crop_flag="eval_crop_size", scales_flag="eval_scales"
    )
    if setup is None:
        return 2
    dataset, dataset_dir = setup.dataset, setup.dataset_dir
    info, options = setup.info, setup.options
    crop, scales, model, stride = setup.crop, setup.scales, setup.model, setup.stride
    eval_logdir = FLAGS.eval_logdir or inference.default_output_dir(checkpoint_dir, "eval")
    from deeplab.modeling.options import options_summary

    logging.info("Model options: %s", options_summary(options))
    step_fn = evaluation.make_eval_step(
        setup.predictor,
        options.num_classes,
        info.ignore_label,
        scales,
        FLAGS.add_flipped_images,
        stride,
        prediction_with_upsampled_logits=FLAGS.prediction_with_upsampled_logits,
    )
    import tensorflow as tf

    from deeplab.data.pipeline import split_size

    num_images = split_size(dataset, dataset_dir, FLAGS.eval_split)
    writer = None  # created with the first results: nothing is written before
    tag = eval_results.metric_tag(scales, FLAGS.add_flipped_images)
    for path in checkpoint_polling.checkpoints_to_evaluate(
        checkpoint_dir,
        eval_interval_secs=FLAGS.eval_interval_secs,
        max_number_of_evaluations=FLAGS.max_number_of_evaluations,
        timeout_secs=FLAGS.eval_timeout_secs,
    ):
        try:
            path, report = checkpoint_polling.load_readable(
                lambda p: load_checkpoint(model, p), path, checkpoint_dir
            )
        except CheckpointError as err:
            print(cli_checkpoint_error(err, options, path), file=sys.stderr)
            return 1
        logging.info("%s", report.summary())
        prefix = resolve_checkpoint_prefix(path)
        step = checkpoint_polling.checkpoint_step(prefix)
        data = build_dataset(
            cli_flags.eval_data_config(
                FLAGS, setup, split=FLAGS.eval_split, batch_size=FLAGS.eval_batch_size
            )
        )
        try:
            results = evaluation.evaluate(
                model,
                data,
                options.num_classes,
                info.ignore_label,
                scales,
                FLAGS.add_flipped_images,
                logits_output_stride=stride,
                class_names=info.class_names[: options.num_classes]
                if len(info.class_names) >= options.num_classes
                else None,
                max_batches=FLAGS.max_eval_batches,
                step_fn=step_fn,
                num_batches=-(-num_images // FLAGS.eval_batch_size) if num_images else None,
            )
        except tf.errors.OpError as err:
            bad = bad_example_error(err)
            if bad is None:
                raise
            print(
                f"ERROR: {bad}\nEvaluation of {prefix} stopped; nothing was written for it.\n"
                + bad_data_advice(dataset, dataset_dir, FLAGS.eval_split, options.num_classes),
                file=sys.stderr,
            )
            return 1
        extra = dict(
            checkpoint=prefix,
            step=step,
            dataset=dataset,
            eval_split=FLAGS.eval_split,
            eval_crop_size=list(crop),
            metric_tag=tag,
        )
        paths = eval_results.write_result_files(
            results, eval_logdir, output_json=FLAGS.output_json, **extra
        )
        writer = writer or tf.summary.create_file_writer(eval_logdir)
        eval_results.write_summaries(writer, results, step)
        with open(os.path.join(eval_logdir, "eval_history.jsonl"), "a") as f:
            record = eval_results.results_to_json(
                {k: v for k, v in results.items() if k != "confusion_matrix"}, **extra
            )
            f.write(json.dumps(record, allow_nan=False) + "\n")
        from deeplab.evaluation.metrics import format_iou_table

        print(
            format_iou_table(
                results,
                results["class_names"],
                title=f"{dataset}/{FLAGS.eval_split}, {prefix} (step {step}), "
                f"{results['num_images']} images, scales {scales}"
                + (", flipped" if FLAGS.add_flipped_images else ""),
            )
        )
        print(
            f"eval/{tag}_overall: {100 * results['miou']:.2f}%  results: "
            f"{paths['json']}, {paths['confusion_png']}",
            flush=True,
        )
    return 0


def run() -> None:
    """The console script `deeplab-eval` and `python eval.py`: flags, then `main()`."""
    cli_flags.run_command_line(
        main, required_flags=["checkpoint_dir"], usage=__doc__, output_flag="--eval_logdir"
    )


if __name__ == "__main__":
    run()
