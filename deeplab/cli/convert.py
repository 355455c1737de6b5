r"""Converts a DeepLab checkpoint (ours or an official TF1 one) into a Keras `.weights.h5` file
that loads on every Keras backend (JAX, PyTorch, TensorFlow) without TensorFlow installed:

  python -m deeplab.convert --checkpoint_path=deeplabv3_pascal_trainval/model.ckpt \
      --output_path=weights/voc.weights.h5 --model_variant=xception_65 \
      --atrous_rates=6,12,18 --output_stride=16 --decoder_output_stride=4

The model options go next to it (`voc.options.json`); on the other machine
`deeplab.checkpoints.keras_weights.load_keras_model("weights/voc.weights.h5")` rebuilds the
model and loads the weights. Reading the checkpoint needs TensorFlow (this side only).
"""

from __future__ import annotations

import sys

from absl import flags, logging

from deeplab.cli import flags as cli_flags

FLAGS = flags.FLAGS

cli_flags.define_model_flags()
flags.DEFINE_string(
    "checkpoint_path",
    None,
    "Checkpoint to convert: our training dir or ckpt prefix, or an official TF1 "
    "checkpoint (prefix, directory or model-zoo .tar.gz).",
)
flags.DEFINE_string("output_path", None, "Keras weights file to write; must end in .weights.h5.")
flags.DEFINE_string(
    "dataset", None, "Dataset name, for the class count (default: the training run's)."
)
flags.adopt_module_key_flags(cli_flags)


def main():
    """The command line; returns its exit status."""
    from deeplab.checkpoints import keras_weights, run_options
    from deeplab.checkpoints.mismatch import cli_checkpoint_error
    from deeplab.checkpoints.official import CheckpointError
    from deeplab.data import descriptors
    from deeplab.modeling import inference

    path = FLAGS.checkpoint_path
    try:
        keras_weights.options_path(FLAGS.output_path)
        _, saved = run_options.saved_run_info(path)
        dataset = FLAGS.dataset or saved.get("dataset")
        info = descriptors.get_dataset_info(dataset) if dataset else None
        num_classes = (
            (info.num_classes if info else None) or inference.checkpoint_num_classes(path) or 21
        )
        options = cli_flags.options_from_flags(FLAGS, path, num_classes)
    except (flags.ValidationError, ValueError) as err:
        cli_flags.print_flags_error(err)
        return 2
    try:
        model, _ = inference.build_inference_model(options, path)
    except CheckpointError as err:
        print(cli_checkpoint_error(err, options, path), file=sys.stderr)
        return 1
    keras_weights.save_keras_weights(model, options, FLAGS.output_path)
    logging.info("Converted %s", path)
    print(
        f"Keras weights written to {FLAGS.output_path} (options: "
        f"{keras_weights.options_path(FLAGS.output_path)}; {options.model_variant}, "
        f"{options.num_classes} classes)"
    )
    return 0


def run() -> None:
    """The console script `deeplab-convert` and `python -m deeplab.convert`."""
    cli_flags.run_command_line(
        main, required_flags=["checkpoint_path", "output_path"], usage=__doc__
    )


if __name__ == "__main__":
    run()
