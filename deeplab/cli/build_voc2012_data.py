r"""Converts PASCAL VOC 2012 to official DeepLab TFRecords.

  python -m deeplab.cli.build_voc2012_data --voc_root=VOCdevkit/VOC2012 \
      --output_dir=tfrecord
or with the official flags --image_folder, --semantic_segmentation_folder,
--list_folder. Palette labels (SegmentationClass/) lose their colour map.
"""

from absl import app, flags

from deeplab.cli import flags as cli_flags
from deeplab.data import descriptors

FLAGS = flags.FLAGS
flags.DEFINE_string("voc_root", None, "VOC2012 folder (JPEGImages/, ...).")
flags.DEFINE_string("image_folder", None, "Official: folder of JPEG images.")
flags.DEFINE_string(
    "semantic_segmentation_folder", None, "Official: folder of label PNGs (raw or palette)."
)
flags.DEFINE_string("list_folder", None, "Official: folder of {split}.txt lists.")
flags.DEFINE_list("splits", None, "Splits to convert (default: all lists).")
flags.DEFINE_integer("num_shards", descriptors.VOC_NUM_SHARDS, "Shards per split.")
flags.DEFINE_string("output_dir", "./tfrecord", "Where to write TFRecords.")


def main(unused_argv):
    """Converts the dataset; TensorFlow is imported here, after the quiet-log filter."""
    from deeplab.data import builders

    if FLAGS.voc_root:
        paths = builders.build_voc2012(
            FLAGS.voc_root, FLAGS.output_dir, FLAGS.splits, FLAGS.num_shards
        )
    elif FLAGS.image_folder and FLAGS.semantic_segmentation_folder and FLAGS.list_folder:
        paths = builders.build_voc2012_from_folders(
            FLAGS.image_folder,
            FLAGS.semantic_segmentation_folder,
            FLAGS.list_folder,
            FLAGS.output_dir,
            FLAGS.splits,
            FLAGS.num_shards,
        )
    else:
        raise app.UsageError(
            "Give --voc_root, or --image_folder, --semantic_segmentation_folder and --list_folder."
        )
    print(f"Wrote {len(paths)} shards to {FLAGS.output_dir}")


def run() -> None:
    """The console script `deeplab-build-voc2012` and `python datasets/build_voc2012_data.py`."""
    cli_flags.run_command_line(lambda: main([]), usage=__doc__)


if __name__ == "__main__":
    run()
