"""Decode + augment throughput of the input pipeline at crop 513 (images/s).

  python benchmarks/input_pipeline.py [--data_dir=DIR --dataset=pascal_voc_seg]

Without --data_dir, a temporary set of VOC-sized synthetic JPEG/PNG records
(375..500 px sides) is written first. The pipeline runs with the official VOC
training augmentation (scale 0.5..2.0 step 0.25, crop, flip); the figure
excludes any model work.
"""

import os
import sys
import tempfile
import time

from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from deeplab.data import pipeline, synthetic  # noqa: E402
from deeplab.data.config import DataConfig  # noqa: E402


def run(
    crop_size=513,
    batch_size=8,
    num_batches=30,
    warmup_batches=5,
    data_dir=None,
    dataset_name="synthetic",
    split="train",
    num_images=64,
):
    """Times the training input pipeline; returns a dict of figures.

    Keys: 'images_per_s', 'batches_per_s', 'crop_size', 'batch_size',
    'num_batches', 'dataset', 'cpu_count'.
    """
    with tempfile.TemporaryDirectory() as tmp:
        if data_dir is None:
            data_dir = tmp
            synthetic.build_synthetic_dataset(
                tmp, num_train=num_images, num_val=0, min_size=375, max_size=500
            )
        ds = pipeline.build_dataset(
            DataConfig(
                dataset_name,
                data_dir,
                split,
                crop_size=(crop_size, crop_size),
                batch_size=batch_size,
                is_training=True,
                min_scale_factor=0.5,
                max_scale_factor=2.0,
                scale_factor_step_size=0.25,
                seed=0,
            )
        )
        iterator = iter(ds)
        for _ in range(warmup_batches):
            next(iterator)
        start = time.perf_counter()
        for _ in range(num_batches):
            batch = next(iterator)
        batch["image"].numpy()
        elapsed = time.perf_counter() - start
    return {
        "images_per_s": num_batches * batch_size / elapsed,
        "batches_per_s": num_batches / elapsed,
        "crop_size": crop_size,
        "batch_size": batch_size,
        "num_batches": num_batches,
        "dataset": dataset_name,
        "cpu_count": os.cpu_count(),
    }


FLAGS = flags.FLAGS
flags.DEFINE_integer("crop_size", 513, "Square crop size.")
flags.DEFINE_integer("batch_size", 8, "Batch size.")
flags.DEFINE_integer("num_batches", 30, "Timed batches.")
flags.DEFINE_string(
    "data_dir", None, "Dataset folder (default: temporary VOC-sized synthetic records)."
)
flags.DEFINE_string("dataset", "synthetic", "Dataset name for --data_dir.")
flags.DEFINE_string("split", "train", "Split to read.")


def main(unused_argv):
    result = run(
        FLAGS.crop_size,
        FLAGS.batch_size,
        FLAGS.num_batches,
        data_dir=FLAGS.data_dir,
        dataset_name=FLAGS.dataset,
        split=FLAGS.split,
    )
    print(
        f"input pipeline (decode + augment), crop {result['crop_size']}, "
        f"batch {result['batch_size']}, {result['cpu_count']} CPUs: "
        f"{result['images_per_s']:.1f} images/s"
    )


if __name__ == "__main__":
    app.run(main)
