"""Converts Cityscapes to official DeepLab TFRecords ({split}_fine-*).

  python -m deeplab.cli.build_cityscapes_data --cityscapes_root=cityscapes \
      --output_dir=tfrecord
Reads leftImg8bit/{split}/*/*_leftImg8bit.png and gtFine labels; labelIds are
converted to trainIds when no *_labelTrainIds.png is present.
"""

import sys

from absl import app, flags

from deeplab.data import builders

FLAGS = flags.FLAGS
flags.DEFINE_string("cityscapes_root", "./cityscapes", "Folder holding leftImg8bit/ and gtFine/.")
flags.DEFINE_list("splits", ["train", "val", "test"], "Splits to convert.")
flags.DEFINE_integer("num_shards", builders.CITYSCAPES_NUM_SHARDS, "Shards per split.")
flags.DEFINE_string("output_dir", "./tfrecord", "Where to write TFRecords.")


def main(unused_argv):
    paths = builders.build_cityscapes(
        FLAGS.cityscapes_root, FLAGS.output_dir, FLAGS.splits, FLAGS.num_shards
    )
    print(f"Wrote {len(paths)} shards to {FLAGS.output_dir}")


def run() -> None:
    """The console script `deeplab-build-cityscapes` and `python datasets/build_cityscapes_data.py`."""
    sys.modules["__main__"].__doc__ = __doc__  # absl's --help prints __main__'s docstring
    app.run(main)


if __name__ == "__main__":
    run()
