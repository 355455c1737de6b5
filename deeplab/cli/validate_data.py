r"""Checks every example of a dataset split and reports all problems at once (run it on new
data before training):

  python -m deeplab.cli.validate_data --dataset=pascal_voc_seg --dataset_dir=tfrecord \
      --split=train --num_classes=21

Each example is decoded; its label must have the image's size and hold only class indices
below --num_classes (default: the dataset's) or the ignore label. Prints one line per bad
example (the file, the record or image name and the problem); exit status 1 when any is bad.
"""

from absl import flags

from deeplab.cli import flags as cli_flags

FLAGS = flags.FLAGS
flags.DEFINE_string("dataset", None, "Dataset name (pascal_voc_seg, cityscapes, ade20k, ...).")
flags.DEFINE_string("dataset_dir", None, "Where the dataset resides.")
flags.DEFINE_string("split", "train", "The split to check.")
flags.DEFINE_integer("num_classes", None, "The model's class count (default: the dataset's).")


def main() -> int:
    """The command line; returns its exit status."""
    from deeplab.data import validate

    try:
        report = validate.check_split(
            FLAGS.dataset, FLAGS.dataset_dir, FLAGS.split, FLAGS.num_classes
        )
    except ValueError as err:
        cli_flags.print_flags_error(err)
        return 2
    for problem in report.problems:
        print(problem)
    print(report.summary())
    return 1 if report.problems else 0


def run() -> None:
    """The console script `deeplab-validate-data`: flags, then `main()`."""
    cli_flags.run_command_line(main, required_flags=["dataset", "dataset_dir"], usage=__doc__)


if __name__ == "__main__":
    run()
