"""Writes the built-in synthetic dataset as official DeepLab TFRecords.

  python -m deeplab.cli.build_synthetic_data --output_dir=/tmp/synthetic
writes train-0000x-of-00004.tfrecord and val-... shards (dataset 'synthetic') into a new or
empty folder, or one it built before (replacing only the files it wrote); any other folder is
refused (exit 2), so a user's data is never overwritten.
"""

from absl import flags

from deeplab.cli import flags as cli_flags
from deeplab.data import descriptors

FLAGS = flags.FLAGS
flags.DEFINE_string("output_dir", None, "Where to write the TFRecords.")
flags.DEFINE_integer("seed", 0, "Dataset seed (same seed, same dataset).")
flags.DEFINE_integer("num_train", descriptors.SYNTHETIC_NUM_TRAIN, "Training images.")
flags.DEFINE_integer("num_val", descriptors.SYNTHETIC_NUM_VAL, "Validation images.")
flags.DEFINE_integer("min_size", 112, "Smallest image side.")
flags.DEFINE_integer("max_size", 224, "Largest image side.")
flags.DEFINE_integer("num_shards", 4, "Shards per split.")
flags.mark_flag_as_required("output_dir")


def main(unused_argv):
    """Builds the set; TensorFlow is imported here, after the quiet-log filter is in place."""
    from deeplab.data import synthetic

    try:
        paths = synthetic.ensure_synthetic_dataset(
            FLAGS.output_dir,
            rebuild=True,
            flag="--output_dir",
            seed=FLAGS.seed,
            num_train=FLAGS.num_train,
            num_val=FLAGS.num_val,
            num_shards=FLAGS.num_shards,
            min_size=FLAGS.min_size,
            max_size=FLAGS.max_size,
        )
    except synthetic.NotASyntheticDirError as err:
        cli_flags.print_flags_error(err)
        return 2
    print(f"Wrote {len(paths)} shards to {FLAGS.output_dir}")


def run() -> None:
    """The console script `deeplab-build-synthetic` and `python datasets/build_synthetic_data.py`."""
    cli_flags.run_command_line(lambda: main([]), usage=__doc__)


if __name__ == "__main__":
    run()
