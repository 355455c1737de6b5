r"""Trains DeepLab with the official research/deeplab recipe (TF2 / Keras 3, tf.distribute).

Official command lines keep working, e.g.

  python train.py --model_variant=xception_65 --atrous_rates=6 --atrous_rates=12 \
      --atrous_rates=18 --output_stride=16 --decoder_output_stride=4 \
      --train_crop_size=513,513 --train_batch_size=8 --training_number_of_steps=30000 \
      --fine_tune_batch_norm=true --tf_initial_checkpoint=PATH/model.ckpt \
      --dataset=pascal_voc_seg --dataset_dir=PATH/tfrecord --train_logdir=runs/voc

With no dataset flags (`python train.py --train_logdir=runs/demo`) it trains on the
built-in synthetic dataset (built into `data/synthetic` when missing) with a demo preset
for every flag left unset (see `SYNTHETIC_PRESET`). Killed runs resume from the latest
checkpoint in --train_logdir when started again with the same command.
"""

from __future__ import annotations

import dataclasses
import sys

from absl import flags

from deeplab.cli import flags as cli_flags

FLAGS = flags.FLAGS

# Flag values used for the synthetic dataset when the flag is not given on the command line
# (the official defaults are for fine-tuning a pretrained model on PASCAL VOC at 513x513; the
# demo trains a small model from scratch in a few minutes on a CPU).
SYNTHETIC_PRESET = {
    "train_crop_size": ["129,129"],
    "train_batch_size": 8,
    "training_number_of_steps": 1500,
    "base_learning_rate": 0.1,
    "min_scale_factor": 0.75,
    "max_scale_factor": 1.5,
    "save_interval_steps": 200,
    "log_steps": 25,
    # The official decays (0.997 / 0.9997) leave the moving statistics behind the weights in a
    # run this short from scratch, and evaluation then predicts background only.
    "batch_norm_decay": 0.99,
}

cli_flags.define_model_flags()
# Model options that the official train.py defines itself (weight_decay, fine_tune_batch_norm,
# upsample_logits).
cli_flags.define_option_flags("train")

# Logging and checkpoints.
flags.DEFINE_string("train_logdir", None, "Where the checkpoint and logs are stored.")
flags.DEFINE_integer("log_steps", 10, "Display logging information at every log_steps.")
flags.DEFINE_integer(
    "save_interval_secs", 1200, "How often, in seconds, we save the model to disk."
)
flags.DEFINE_integer(
    "save_interval_steps", 0, "Save every this many steps instead (0: use --save_interval_secs)."
)
flags.DEFINE_integer("max_checkpoints_to_keep", 5, "How many recent checkpoints to keep.")
flags.DEFINE_integer(
    "save_summaries_secs",
    600,
    "How often, in seconds, image summaries are written (scalars: every --log_steps).",
)
flags.DEFINE_boolean(
    "save_summaries_images",
    False,
    "Save sample inputs, labels, and semantic predictions as images to summary.",
)

# Learning rate and optimizer.
flags.DEFINE_enum("learning_policy", "poly", ["poly", "step"], "Learning rate policy for training.")
flags.DEFINE_float("base_learning_rate", 1e-4, "The base learning rate for model training.")
flags.DEFINE_float("learning_rate_decay_factor", 0.1, "The rate to decay the base learning rate.")
flags.DEFINE_integer(
    "learning_rate_decay_step", 2000, "Decay the base learning rate at a fixed step."
)
flags.DEFINE_float("learning_power", 0.9, "The power value used in the poly learning policy.")
flags.DEFINE_integer("training_number_of_steps", 30000, "The number of steps used for training.")
flags.DEFINE_float("end_learning_rate", 0.0, "End learning rate for the poly learning policy.")
flags.DEFINE_float(
    "decay_steps",
    0.0,
    "Decay steps for the poly policy (0: training_number_of_steps - slow_start_step).",
)
flags.DEFINE_integer("slow_start_step", 0, "Training model with small learning rate for few steps.")
flags.DEFINE_float("slow_start_learning_rate", 1e-4, "Learning rate employed during slow start.")
flags.DEFINE_enum("optimizer", "momentum", ["momentum", "adam"], "Which optimizer to use.")
flags.DEFINE_float("momentum", 0.9, "The momentum value to use.")
flags.DEFINE_float("adam_learning_rate", 0.001, "Learning rate for the adam optimizer.")
flags.DEFINE_float("adam_epsilon", 1e-08, "Adam optimizer epsilon.")

# Fine-tuning and the loss.
flags.DEFINE_string(
    "tf_initial_checkpoint",
    None,
    "The initial checkpoint: one of ours or an official TF1 one (prefix, "
    "directory or model-zoo .tar.gz).",
)
flags.DEFINE_boolean("initialize_last_layer", True, "Initialize the last layer.")
flags.DEFINE_boolean(
    "last_layers_contain_logits_only", False, "Only consider logits as last layers or not."
)
flags.DEFINE_float(
    "last_layer_gradient_multiplier",
    1.0,
    "The gradient multiplier for last layers, which is used to boost the "
    "gradient of last layers if the value > 1.",
)
flags.DEFINE_float(
    "top_k_percent_pixels",
    1.0,
    "The top k percent pixels (in terms of the loss values) used to compute "
    "loss during training. This is useful for hard pixel mining.",
)
flags.DEFINE_integer(
    "hard_example_mining_step",
    0,
    "The training step in which exact hard example mining kicks off; the "
    "mining percent goes down linearly from 100% to --top_k_percent_pixels "
    "until this step.",
)
flags.DEFINE_multi_string(
    "label_weights",
    None,
    "Loss weight of each label (comma list or repeated flag), e.g. "
    "0.1,0.5 weighs label 0 by 0.1 and label 1 by 0.5; unset: all 1.",
)

# Data.
flags.DEFINE_string(
    "dataset",
    None,
    "Name of the segmentation dataset (pascal_voc_seg, cityscapes, ade20k, "
    "synthetic, tfds:NAME). Default: synthetic when --dataset_dir is unset, "
    "else pascal_voc_seg (the official default).",
)
flags.DEFINE_string(
    "dataset_dir",
    None,
    "Where the dataset resides (default for synthetic: data/synthetic, built when missing).",
)
flags.DEFINE_string("train_split", "train", "Which split of the dataset to be used for training.")
cli_flags.define_int_list(
    "train_crop_size", "513,513", "Image crop size [height, width] during training."
)
flags.DEFINE_integer(
    "train_batch_size",
    8,
    "The number of images in each batch during training (global: split over the replicas).",
)
cli_flags.define_skip_bad_examples_flag()
cli_flags.define_resize_flags()
flags.DEFINE_float("min_scale_factor", 0.5, "Mininum scale factor for data augmentation.")
flags.DEFINE_float("max_scale_factor", 2.0, "Maximum scale factor for data augmentation.")
flags.DEFINE_float("scale_factor_step_size", 0.25, "Scale factor step size for data augmentation.")

# Execution (ours).
cli_flags.define_cluster_flags()
flags.DEFINE_float(
    "worker_connect_timeout_secs",
    600,
    "--strategy=multi_worker: stop (with a line saying so) when the other workers of TF_CONFIG "
    "have not connected within this many seconds.",
)
flags.DEFINE_string(
    "profile_logdir",
    None,
    "Write a TensorFlow profiler trace of 5 training steps (after 2 warm-up steps) here "
    "(TensorBoard's Profile tab).",
)
flags.DEFINE_float(
    "drop_path_keep_prob",
    1.0,
    "Official NAS flag: path keep probability of NAS cells (no NAS backbone here; ignored).",
)
flags.DEFINE_enum(
    "mixed_precision",
    "none",
    ["none", "float16", "bfloat16"],
    "Mixed precision policy (float16 adds dynamic loss scaling).",
)
flags.DEFINE_boolean("jit_compile", False, "XLA-compile the forward/backward pass.")
flags.DEFINE_integer(
    "quantize_delay_step",
    -1,
    "Steps to start quantized training. If < 0, will not quantize model. (From this global "
    "step on, weights and activations are fake-quantized to int8 with batch norm folded; "
    "export such a run with export.py --tflite for an int8 LiteRT model.)",
)
flags.DEFINE_integer("seed", None, "Random seed (weights, data order and augmentation).")
cli_flags.define_official_flags("train")
# `--help` lists the model flags of cli_flags too, not only those defined here.
flags.adopt_module_key_flags(cli_flags)


def flag_values(values, preset=None) -> dict:
    """{flag name: value} of the parsed flags, with `preset` values for the flags not given on
    the command line (the flags themselves are left as they are)."""
    out = {name: values[name].value for name in values}
    for name, value in (preset or {}).items():
        if not values[name].present:
            out[name] = value
    return out


def _by_field_name(cls, values: dict, **explicit):
    """`cls(**kwargs)` with every field of the dataclass `cls` that has a flag of the same name
    taken from `values`, then `explicit`."""
    kwargs = {f.name: values[f.name] for f in dataclasses.fields(cls) if f.name in values}
    kwargs.update(explicit)
    return cls(**kwargs)


# DataConfig fields whose train.py flag has another name (the official flag names).
DATA_FLAGS = {
    "dataset_name": "dataset",
    "split": "train_split",
    "crop_size": "train_crop_size",
    "batch_size": "train_batch_size",
}


def config_from_flags(values):
    """Turns parsed flags into a `deeplab.training.TrainConfig` (ValidationError if bad).

    TrainConfig, its DataConfig and LearningRateConfig fields take the flag of the same name
    (DataConfig: or of `DATA_FLAGS`); the dataclasses validate them.
    """
    from deeplab.data import descriptors
    from deeplab.data.config import DataConfig, DataConfigError
    from deeplab.training import LearningRateConfig, TrainConfig
    from deeplab.training import losses as losses_lib

    strategy, tpu, _ = cli_flags.cluster_strategy(values)
    pyramid = cli_flags.float_list_flag(values, "image_pyramid")
    if pyramid and pyramid != [1.0]:
        raise flags.ValidationError(
            f"--image_pyramid={','.join(map(str, pyramid))}: multi-scale feature extraction "
            "is not supported in training yet (eval.py, vis.py and export.py take it)"
        )
    dataset, dataset_dir = cli_flags.resolve_dataset(values.dataset, values.dataset_dir)
    if dataset != "synthetic" and dataset_dir is None:
        raise flags.ValidationError(f"--dataset_dir is required for --dataset={dataset}")
    if dataset != "synthetic":  # the synthetic set is built on the first run
        cli_flags.check_dataset_dir(dataset, dataset_dir)
    flat = flag_values(values, SYNTHETIC_PRESET if dataset == "synthetic" else None)
    try:
        info = descriptors.get_dataset_info(dataset)
    except ValueError as err:
        raise flags.ValidationError(f"--dataset: {err}") from None
    crop = cli_flags.parse_int_list(flat["train_crop_size"], "train_crop_size")
    crop = tuple(crop) if crop else ()
    model_options = cli_flags.model_options_from_flags(
        values,
        num_classes=info.num_classes,
        crop_size=crop if len(crop) == 2 else None,
        preset=SYNTHETIC_PRESET if dataset == "synthetic" else None,
    )
    try:
        label_weights = losses_lib.parse_label_weights(
            cli_flags.parse_float_list(flat["label_weights"], "label_weights"),
            model_options.num_classes,
        )
        data = _by_field_name(
            DataConfig,
            {**flat, **{field: flat[flag] for field, flag in DATA_FLAGS.items()}},
            dataset_name=dataset,
            dataset_dir=dataset_dir,
            crop_size=crop,
            is_training=True,
            model_variant=model_options.model_variant,
            num_classes=model_options.num_classes,
        )
        return _by_field_name(
            TrainConfig,
            flat,
            model_options=model_options,
            data=data,
            learning_rate=_by_field_name(LearningRateConfig, flat),
            label_weights=label_weights,
            strategy=strategy,
            tpu=tpu,
        )
    except DataConfigError as err:
        raise flags.ValidationError(
            f"--{DATA_FLAGS.get(err.field, err.field)}: {err.reason}"
        ) from None
    except ValueError as err:
        raise flags.ValidationError(str(err)) from None


def main():
    """The command line; returns its exit status."""
    try:
        for note in cli_flags.cluster_strategy(FLAGS)[2]:
            print(note, file=sys.stderr)
        if FLAGS.drop_path_keep_prob != 1.0:
            print(
                "--drop_path_keep_prob: only NAS cells use it (none here); ignored", file=sys.stderr
            )
        config = config_from_flags(FLAGS)
    except flags.ValidationError as err:
        cli_flags.print_flags_error(err)
        return 2
    import keras
    import tensorflow as tf

    from deeplab.checkpoints.mismatch import cli_checkpoint_error
    from deeplab.checkpoints.official import CheckpointError
    from deeplab.training import (
        BadDataError,
        LogdirLockedError,
        NonFiniteLossError,
        peer_wait,
        train,
    )

    backend = keras.backend.backend()
    if backend != "tensorflow":
        from deeplab.training import jax_trainer

        feature = jax_trainer.unsupported_feature(config)
        if backend != "jax" or feature is not None:
            what = feature or "train.py"
            print(f"FATAL: {what} is not available on KERAS_BACKEND={backend}", file=sys.stderr)
            return 2
        train = jax_trainer.train
    if config.data.dataset_name == "synthetic":
        from deeplab.data import synthetic

        try:
            if not synthetic.is_built(config.data.dataset_dir):
                print(f"Building the synthetic dataset in {config.data.dataset_dir}", flush=True)
            synthetic.ensure_synthetic_dataset(config.data.dataset_dir)
        except synthetic.NotASyntheticDirError as err:
            print(f"FATAL Flags parsing error: {err}", file=sys.stderr)
            return 2
    try:
        result = train(config)
    except CheckpointError as err:
        print(
            cli_checkpoint_error(
                err, config.model_options, getattr(err, "prefix", config.train_logdir)
            ),
            file=sys.stderr,
        )
        return 1
    except (LogdirLockedError, BadDataError, peer_wait.PeersNotConnectedError) as err:
        print(f"ERROR: {err}", file=sys.stderr)
        return 1
    except peer_wait.WaitInterrupted as err:
        print(err, file=sys.stderr)
        return 128 + err.signum
    except tf.errors.OpError as err:
        lost = peer_wait.lost_peer_message(err, config.train_logdir)
        if lost is None:
            raise
        print(lost, file=sys.stderr)
        return 1
    except NonFiniteLossError as err:
        print(f"ERROR: {err}", file=sys.stderr)
        return 3
    if result.get("already_done"):
        print(
            f"Nothing to do: {config.train_logdir} is already at step {result['step']} "
            f"(--training_number_of_steps={config.learning_rate.training_number_of_steps})."
        )
    else:
        print(
            f"Finished at step {result['step']}: loss {result['total_loss']:.4f}, "
            f"{result['images_per_second']:.1f} images/s on average over "
            f"{result['steps_run']} steps; checkpoints in "
            f"{config.train_logdir}"
        )
    return 0


def run() -> None:
    """The console script `deeplab-train` and `python train.py`: flags, then `main()`."""
    cli_flags.run_command_line(
        main, required_flags=["train_logdir"], usage=__doc__, output_flag="--train_logdir"
    )


if __name__ == "__main__":
    run()
