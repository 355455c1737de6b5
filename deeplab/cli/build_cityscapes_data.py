r"""Converts Cityscapes to official DeepLab TFRecords ({split}_fine-*).

  python -m deeplab.cli.build_cityscapes_data --cityscapes_root=cityscapes \
      --output_dir=tfrecord
Reads leftImg8bit/{split}/*/*_leftImg8bit.png and gtFine labels; labelIds are
converted to trainIds when no *_labelTrainIds.png is present.
"""

from absl import flags

from deeplab.cli import flags as cli_flags
from deeplab.data import descriptors

FLAGS = flags.FLAGS
flags.DEFINE_string("cityscapes_root", "./cityscapes", "Folder holding leftImg8bit/ and gtFine/.")
flags.DEFINE_list("splits", ["train", "val", "test"], "Splits to convert.")
flags.DEFINE_integer("num_shards", descriptors.CITYSCAPES_NUM_SHARDS, "Shards per split.")
flags.DEFINE_string("output_dir", "./tfrecord", "Where to write TFRecords.")


def main(unused_argv):
    """Converts the dataset; TensorFlow is imported here, after the quiet-log filter."""
    from deeplab.data import builders

    paths = builders.build_cityscapes(
        FLAGS.cityscapes_root, FLAGS.output_dir, FLAGS.splits, FLAGS.num_shards
    )
    print(f"Wrote {len(paths)} shards to {FLAGS.output_dir}")


def run() -> None:
    """The console script `deeplab-build-cityscapes` and `python datasets/build_cityscapes_data.py`."""
    cli_flags.run_command_line(lambda: main([]), usage=__doc__)


if __name__ == "__main__":
    run()
