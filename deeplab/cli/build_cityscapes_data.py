"""Converts Cityscapes to official DeepLab TFRecords ({split}_fine-*).

  python datasets/build_cityscapes_data.py --cityscapes_root=cityscapes \
      --output_dir=tfrecord
Reads leftImg8bit/{split}/*/*_leftImg8bit.png and gtFine labels; labelIds are
converted to trainIds when no *_labelTrainIds.png is present.
"""

import os
import sys

from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from deeplab.data import builders  # pylint: disable=g-import-not-at-top

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


if __name__ == "__main__":
    app.run(main)
