r"""Converts ADE20K (ADEChallengeData2016) to official DeepLab TFRecords.

  python -m deeplab.cli.build_ade20k_data --ade20k_root=ADEChallengeData2016 \
      --output_dir=tfrecord
or with the official flags --train_image_folder, --train_image_label_folder,
--val_image_folder, --val_image_label_folder.
"""

from absl import app, flags

from deeplab.cli import flags as cli_flags
from deeplab.data import descriptors

FLAGS = flags.FLAGS
flags.DEFINE_string("ade20k_root", None, "ADEChallengeData2016 folder (images/, annotations/).")
flags.DEFINE_string("train_image_folder", None, "Official: training images.")
flags.DEFINE_string("train_image_label_folder", None, "Official: training labels.")
flags.DEFINE_string("val_image_folder", None, "Official: validation images.")
flags.DEFINE_string("val_image_label_folder", None, "Official: validation labels.")
flags.DEFINE_integer("num_shards", descriptors.ADE20K_NUM_SHARDS, "Shards per split.")
flags.DEFINE_string("output_dir", "./tfrecord", "Where to write TFRecords.")


def main(unused_argv):
    """Converts the dataset; TensorFlow is imported here, after the quiet-log filter."""
    from deeplab.data import builders

    if FLAGS.ade20k_root:
        paths = builders.build_ade20k(FLAGS.ade20k_root, FLAGS.output_dir, FLAGS.num_shards)
    else:
        paths = []
        for split, images, labels in (
            ("train", FLAGS.train_image_folder, FLAGS.train_image_label_folder),
            ("val", FLAGS.val_image_folder, FLAGS.val_image_label_folder),
        ):
            if images and labels:
                paths += builders.build_ade20k_split(
                    images, labels, FLAGS.output_dir, split, FLAGS.num_shards
                )
        if not paths:
            raise app.UsageError("Give --ade20k_root or the official image/label folder flags.")
    print(f"Wrote {len(paths)} shards to {FLAGS.output_dir}")


def run() -> None:
    """The console script `deeplab-build-ade20k` and `python datasets/build_ade20k_data.py`."""
    cli_flags.run_command_line(lambda: main([]), usage=__doc__)


if __name__ == "__main__":
    run()
