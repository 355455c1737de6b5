"""absl flag definitions shared by the command lines (train, eval, vis, export, summary).

Names and defaults follow the official research/deeplab `common.py`. List flags accept both
our comma form (`--atrous_rates=6,12,18`) and the official repeated form
(`--atrous_rates=6 --atrous_rates=12 --atrous_rates=18`). Library code never reads flags:
the CLIs turn them into plain arguments with `model_options_from_flags`.
"""

from __future__ import annotations

import sys
from typing import List, Optional, Tuple

from absl import flags

from deeplab.config import MODEL_VARIANTS, ModelOptions


def define_int_list(name: str, default: Optional[str], help_text: str) -> None:
    """Defines a list-of-integers flag that takes `a,b,c` and repeated `--name=a --name=b`."""
    flags.DEFINE_multi_string(name, default, help_text + " (comma list or repeated flag)")


def parse_int_list(values, flag_name: str) -> Optional[List[int]]:
    """Turns the values of a `define_int_list` flag into integers; None when unset."""
    if values is None:
        return None
    if isinstance(values, str):
        values = [values]
    out: List[int] = []
    for value in values:
        for part in str(value).split(","):
            part = part.strip()
            if not part:
                continue
            try:
                out.append(int(part))
            except ValueError:
                raise flags.ValidationError(
                    f"--{flag_name}: {part!r} is not an integer (got {list(values)})"
                ) from None
    return out or None


def run_reporting_missing_files(body) -> int:
    """Runs a command line's `body()`; a missing dataset, image or checkpoint file ends it with
    one `ERROR:` line and status 1 instead of a traceback."""
    try:
        return body()
    except FileNotFoundError as err:
        print(f"ERROR: {err}", file=sys.stderr)
        return 1


def parse_flags_exit_2(argv):
    """`app.run(main, flags_parser=parse_flags_exit_2)`: like absl's default parser, but a flag
    error (unknown flag, bad value, failed validator, missing required flag) exits with
    status 2, as every other flag error of the command lines does."""
    try:
        return flags.FLAGS(argv)
    except flags.Error as err:
        print(f"FATAL Flags parsing error: {err}", file=sys.stderr)
        print("Pass --helpshort or --helpfull to see help on flags.", file=sys.stderr)
        sys.exit(2)


def define_resize_flags() -> None:
    """The official input resizing flags (`preprocess.resize_to_range`), shared by the CLIs."""
    flags.DEFINE_integer("min_resize_value", None, "Desired size of the smaller image side.")
    flags.DEFINE_integer("max_resize_value", None, "Maximum allowed size of the larger image side.")
    flags.DEFINE_integer(
        "resize_factor", None, "Resized dimensions are a multiple of factor plus one."
    )


def define_model_flags() -> None:
    """Defines the model flags of the official common.py, once per process."""
    if "model_variant" in flags.FLAGS:
        return
    flags.DEFINE_enum(
        "model_variant", "mobilenet_v2", list(MODEL_VARIANTS), "DeepLab model variant."
    )
    flags.DEFINE_integer(
        "num_classes", None, "Number of classes; default: the dataset's number of classes."
    )
    flags.DEFINE_integer(
        "output_stride", 16, "Ratio of input to output spatial resolution (8, 16 or 32)."
    )
    define_int_list("atrous_rates", None, "Atrous rates of the ASPP branches, e.g. 6,12,18.")
    define_int_list(
        "decoder_output_stride",
        None,
        "Output stride of the low-level features the decoder uses (4 or 8); unset: no decoder.",
    )
    define_int_list(
        "multi_grid", None, "Unit rates of the last Xception / ResNet block, e.g. 1,2,4."
    )
    define_int_list(
        "image_pooling_crop_size",
        None,
        "Crop size (h,w) that sets the image-pooling window; unset: global pooling.",
    )
    flags.DEFINE_boolean("add_image_level_feature", True, "Add the image-pooling ASPP branch.")
    flags.DEFINE_boolean(
        "aspp_with_batch_norm",
        True,
        "Use batch norm in ASPP (the only setting this implementation supports).",
    )
    flags.DEFINE_boolean("aspp_with_separable_conv", True, "Separable convs in the ASPP branches.")
    flags.DEFINE_boolean("decoder_use_separable_conv", True, "Separable convs in the decoder.")
    flags.DEFINE_float("depth_multiplier", 1.0, "Channel multiplier of MobileNetV2.")
    flags.DEFINE_integer(
        "divisible_by",
        None,
        "MobileNetV2 channels are rounded to a multiple of this (default 8 at "
        "depth_multiplier 1, else 1).",
    )
    flags.DEFINE_float(
        "batch_norm_decay",
        None,
        "BatchNorm moving-average decay; unset keeps the official ones (0.9997, "
        "MobileNetV2 and MobileNetV3 0.997, ResNet 0.95).",
    )
    flags.DEFINE_integer(
        "logits_kernel_size", 1, "Kernel size of the logits conv (1 is the only supported value)."
    )
    define_head_flags()


def define_head_flags() -> None:
    """The official ASPP / decoder options of the MobileNetV3 (LR-ASPP-like) recipes."""
    define_int_list(
        "image_pooling_stride", "1,1", "Stride (h,w) of the ASPP image-pooling average pool."
    )
    flags.DEFINE_integer("aspp_convs_filters", 256, "Channels of the ASPP convolutions.")
    flags.DEFINE_boolean(
        "aspp_with_concat_projection", True, "Project the concatenated ASPP branches (1x1 conv)."
    )
    flags.DEFINE_boolean(
        "aspp_with_squeeze_and_excitation",
        False,
        "Use the image-pooling feature as a sigmoid gate on the ASPP output instead of a branch.",
    )
    flags.DEFINE_boolean(
        "image_se_uses_qsigmoid",
        False,
        "The image-pooling gate uses the hard sigmoid relu6(x + 3) * 0.16667.",
    )
    flags.DEFINE_boolean(
        "decoder_use_sum_merge",
        False,
        "Merge the decoder's two inputs by a sum (one conv) instead of a concatenation.",
    )
    flags.DEFINE_integer("decoder_filters", 256, "Channels of the decoder convolutions.")
    flags.DEFINE_boolean(
        "decoder_output_is_logits",
        False,
        "The decoder output is the logits (no logits layer); needs decoder_filters=num_classes.",
    )
    flags.DEFINE_string(
        "dense_prediction_cell_json",
        "",
        "A JSON file that specifies the dense prediction cell (replaces ASPP); the official "
        "deeplab/core/dense_prediction_cell_branch5_top1_cityscapes.json resolves to the "
        "packaged copy.",
    )
    # NAS backbones (nas_pnasnet, nas_hnasnet) are not implemented; their options change no
    # other variant, so they are accepted as officially. Bounded activations would change
    # Xception and the heads, so they stop in `model_options_from_flags`.
    flags.DEFINE_integer(
        "nas_stem_output_num_conv_filters", 20, "NAS backbones only (not implemented here)."
    )
    flags.DEFINE_boolean(
        "nas_use_classification_head", False, "NAS backbones only (not implemented here)."
    )
    flags.DEFINE_boolean(
        "nas_remove_os32_stride", False, "NAS backbones only (not implemented here)."
    )
    flags.DEFINE_boolean(
        "use_bounded_activation",
        False,
        "Bounded ReLU6 activations for quantization (only false is supported).",
    )


def model_options_from_flags(
    values=None, *, num_classes: Optional[int] = None, crop_size=None, **overrides
) -> ModelOptions:
    """Builds ModelOptions from parsed model flags.

    `num_classes` is used when `--num_classes` is unset; `crop_size` (the official crop size) sets
    the image-pooling window when `--image_pooling_crop_size` is unset, as officially.
    """
    values = values or flags.FLAGS
    if not values.aspp_with_batch_norm:
        raise flags.ValidationError("--aspp_with_batch_norm=false is not supported")
    if values.logits_kernel_size != 1:
        raise flags.ValidationError("--logits_kernel_size must be 1 (the official ASPP setting)")
    if values.use_bounded_activation:
        raise flags.ValidationError(
            "--use_bounded_activation=true is not supported (only the official unbounded ReLUs)"
        )
    pooling = parse_int_list(values.image_pooling_crop_size, "image_pooling_crop_size")
    pooling_stride = parse_int_list(values.image_pooling_stride, "image_pooling_stride")
    decoder = parse_int_list(values.decoder_output_stride, "decoder_output_stride")
    n = values.num_classes if values.num_classes is not None else num_classes
    if n is None:
        raise flags.ValidationError("--num_classes is required here")
    kwargs = dict(
        model_variant=values.model_variant,
        num_classes=n,
        output_stride=values.output_stride,
        atrous_rates=parse_int_list(values.atrous_rates, "atrous_rates"),
        decoder_output_stride=decoder,
        crop_size=tuple(crop_size) if crop_size else None,
        image_pooling_crop_size=tuple(pooling) if pooling else None,
        image_pooling_stride=tuple(pooling_stride or (1, 1)),
        aspp_convs_filters=values.aspp_convs_filters,
        aspp_with_concat_projection=values.aspp_with_concat_projection,
        aspp_with_squeeze_and_excitation=values.aspp_with_squeeze_and_excitation,
        image_se_uses_qsigmoid=values.image_se_uses_qsigmoid,
        decoder_use_sum_merge=values.decoder_use_sum_merge,
        decoder_filters=values.decoder_filters,
        decoder_output_is_logits=values.decoder_output_is_logits,
        add_image_level_feature=values.add_image_level_feature,
        aspp_with_separable_conv=values.aspp_with_separable_conv,
        decoder_use_separable_conv=values.decoder_use_separable_conv,
        multi_grid=parse_int_list(values.multi_grid, "multi_grid"),
        depth_multiplier=values.depth_multiplier,
        divisible_by=values.divisible_by,
        batch_norm_decay=values.batch_norm_decay,
        dense_prediction_cell_json=values.dense_prediction_cell_json or None,
    )
    kwargs.update(overrides)
    try:
        return ModelOptions(**kwargs)
    except ValueError as err:
        raise flags.ValidationError(str(err)) from None


# ----------------------------------------------------------------------------------------------
# Official command lines: every flag of the official research/deeplab scripts is accepted.

# The flags of the official scripts (tensorflow/models research/deeplab, last TF1 version).
# Each official script also reads the flags of common.py.
OFFICIAL_COMMON_FLAGS = (
    "min_resize_value",
    "max_resize_value",
    "resize_factor",
    "keep_aspect_ratio",
    "logits_kernel_size",
    "model_variant",
    "image_pyramid",
    "add_image_level_feature",
    "image_pooling_crop_size",
    "image_pooling_stride",
    "aspp_with_batch_norm",
    "aspp_with_separable_conv",
    "multi_grid",
    "depth_multiplier",
    "divisible_by",
    "decoder_output_stride",
    "decoder_use_separable_conv",
    "merge_method",
    "prediction_with_upsampled_logits",
    "dense_prediction_cell_json",
    "nas_stem_output_num_conv_filters",
    "nas_use_classification_head",
    "nas_remove_os32_stride",
    "use_bounded_activation",
    "aspp_with_concat_projection",
    "aspp_with_squeeze_and_excitation",
    "aspp_convs_filters",
    "decoder_use_sum_merge",
    "decoder_filters",
    "decoder_output_is_logits",
    "image_se_uses_qsigmoid",
    "label_weights",
    "batch_norm_decay",
)
# The TF1 cluster flags: each maps to a tf.distribute setting or stops with its replacement.
OFFICIAL_CLUSTER_FLAGS = (
    "num_clones",
    "clone_on_cpu",
    "num_replicas",
    "startup_delay_steps",
    "num_ps_tasks",
    "master",
    "task",
)
OFFICIAL_SCRIPT_FLAGS = {
    "train": OFFICIAL_CLUSTER_FLAGS
    + (
        "train_logdir",
        "log_steps",
        "save_interval_secs",
        "save_summaries_secs",
        "save_summaries_images",
        "profile_logdir",
        "optimizer",
        "learning_policy",
        "base_learning_rate",
        "decay_steps",
        "end_learning_rate",
        "learning_rate_decay_factor",
        "learning_rate_decay_step",
        "learning_power",
        "training_number_of_steps",
        "momentum",
        "adam_learning_rate",
        "adam_epsilon",
        "train_batch_size",
        "weight_decay",
        "train_crop_size",
        "last_layer_gradient_multiplier",
        "upsample_logits",
        "drop_path_keep_prob",
        "tf_initial_checkpoint",
        "initialize_last_layer",
        "last_layers_contain_logits_only",
        "slow_start_step",
        "slow_start_learning_rate",
        "fine_tune_batch_norm",
        "min_scale_factor",
        "max_scale_factor",
        "scale_factor_step_size",
        "atrous_rates",
        "output_stride",
        "hard_example_mining_step",
        "top_k_percent_pixels",
        "quantize_delay_step",
        "dataset",
        "train_split",
        "dataset_dir",
    ),
    "eval": (
        "master",
        "eval_logdir",
        "checkpoint_dir",
        "eval_batch_size",
        "eval_crop_size",
        "eval_interval_secs",
        "atrous_rates",
        "output_stride",
        "eval_scales",
        "add_flipped_images",
        "quantize_delay_step",
        "dataset",
        "eval_split",
        "dataset_dir",
        "max_number_of_evaluations",
    ),
    "vis": (
        "master",
        "vis_logdir",
        "checkpoint_dir",
        "vis_batch_size",
        "vis_crop_size",
        "eval_interval_secs",
        "atrous_rates",
        "output_stride",
        "eval_scales",
        "add_flipped_images",
        "quantize_delay_step",
        "dataset",
        "vis_split",
        "dataset_dir",
        "colormap_type",
        "also_save_raw_predictions",
        "max_number_of_iterations",
    ),
    # export_model.py
    "export": (
        "checkpoint_path",
        "export_path",
        "num_classes",
        "crop_size",
        "atrous_rates",
        "output_stride",
        "inference_scales",
        "add_flipped_images",
        "quantize_delay_step",
        "save_inference_graph",
    ),
}


def define_official_flags(script: str) -> None:
    """Defines the official flags of `script` ("train", "eval", "vis", "export") that the
    script has not defined itself: the input and inference flags of common.py, `master` and
    `quantize_delay_step`. Call it after the script's own flag definitions."""

    def undefined(name):
        return name not in flags.FLAGS

    if undefined("min_resize_value"):
        define_resize_flags()
    if undefined("keep_aspect_ratio"):
        flags.DEFINE_boolean(
            "keep_aspect_ratio",
            True,
            "With --min_resize_value: keep the aspect ratio (false: resize to a square of the "
            "longer resized side).",
        )
    if undefined("image_pyramid"):
        flags.DEFINE_multi_string(
            "image_pyramid",
            None,
            "Input scales for multi-scale feature extraction, e.g. 0.5,1.0 (comma list or "
            "repeated flag; unset: one scale).",
        )
    if undefined("merge_method"):
        flags.DEFINE_enum(
            "merge_method", "max", ["max", "avg"], "How --image_pyramid logits are merged."
        )
    if undefined("prediction_with_upsampled_logits"):
        flags.DEFINE_boolean(
            "prediction_with_upsampled_logits",
            True,
            "Predict by upsampling the logits, then argmax (false: argmax at the logits "
            "resolution, then nearest-neighbour upsampling of the labels).",
        )
    if undefined("label_weights"):
        flags.DEFINE_multi_string(
            "label_weights", None, "Loss weight of each label (training only; ignored here)."
        )
    if undefined("quantize_delay_step"):
        flags.DEFINE_integer(
            "quantize_delay_step",
            -1,
            "Step at which quantization-aware training starts (< 0: no quantization).",
        )
    if script in ("train", "eval", "vis") and undefined("master"):
        flags.DEFINE_string(
            "master", "", "TF1 session target (replaced by --strategy / TF_CONFIG; see --help)."
        )
    if script == "export" and undefined("save_inference_graph"):
        flags.DEFINE_boolean(
            "save_inference_graph",
            False,
            "With a .pb --export_path: also write the graph (before freezing) as "
            "inference_graph.pbtxt next to it.",
        )


def check_quantize_delay_step(values=None, script: str = "eval") -> None:
    """eval.py and vis.py do not run the fake-quantized model of a quantization-aware training
    run (train.py and export.py do): they stop naming the flag."""
    values = flags.FLAGS if values is None else values
    if values.quantize_delay_step is not None and values.quantize_delay_step >= 0:
        raise flags.ValidationError(
            f"--quantize_delay_step={values.quantize_delay_step}: {script}.py does not run the "
            "fake-quantized model; export the run with export.py (SavedModel of the "
            "fake-quantized model, --tflite for int8 LiteRT) or leave it at -1"
        )


def check_master(values=None, script: str = "train") -> None:
    """`--master` (a TF1 session target) has no TF2 equivalent: stops naming the replacement."""
    values = flags.FLAGS if values is None else values
    if not values.master:
        return
    if script == "train":
        replacement = (
            "use --strategy=tpu --tpu=ADDRESS for a TPU, or TF_CONFIG with "
            "--strategy=multi_worker for a cluster"
        )
    else:
        replacement = f"run {script}.py on the machine that has the accelerator"
    raise flags.ValidationError(
        f"--master={values.master}: TF1 session targets are gone; {replacement}"
    )


def float_list_flag(values, flag_name: str) -> Optional[List[float]]:
    """Floats of a multi-string flag holding `a,b` and / or repeated values; None when unset."""
    raw = values[flag_name].value
    if not raw:
        return None
    out: List[float] = []
    for value in [raw] if isinstance(raw, str) else raw:
        for part in str(value).split(","):
            if part.strip():
                try:
                    out.append(float(part))
                except ValueError:
                    raise flags.ValidationError(
                        f"--{flag_name}: {part.strip()!r} is not a number"
                    ) from None
    return out or None


def define_cluster_flags(values=None) -> None:
    """Defines --strategy, --tpu and the official TF1 cluster flags (`num_clones`,
    `clone_on_cpu`, `num_replicas`, `startup_delay_steps`, `num_ps_tasks`, `master`, `task`);
    `cluster_strategy` maps them onto a strategy."""
    values = flags.FLAGS if values is None else values
    flags.DEFINE_enum(
        "strategy",
        "default",
        ["default", "mirrored", "multi_worker", "tpu"],
        "tf.distribute strategy: default (one device), mirrored (local GPUs), "
        "multi_worker (from TF_CONFIG), tpu (--tpu).",
        flag_values=values,
    )
    flags.DEFINE_integer(
        "num_clones",
        1,
        "Official multi-GPU flag, kept so old command lines work: > 1 with "
        "--strategy=default means --strategy=mirrored.",
        flag_values=values,
    )
    flags.DEFINE_string(
        "tpu", None, "TPU name or grpc:// address for --strategy=tpu.", flag_values=values
    )
    flags.DEFINE_boolean(
        "clone_on_cpu", False, "Official flag: train on the CPU (GPUs hidden).", flag_values=values
    )
    flags.DEFINE_integer(
        "num_replicas",
        1,
        "Official flag: number of workers (> 1: --strategy=multi_worker).",
        flag_values=values,
    )
    flags.DEFINE_integer(
        "startup_delay_steps",
        15,
        "Official flag; synchronous multi-worker training needs no delay.",
        flag_values=values,
    )
    flags.DEFINE_integer(
        "num_ps_tasks",
        0,
        "Official flag: parameter servers (not supported; use multi_worker).",
        flag_values=values,
    )
    flags.DEFINE_integer(
        "task", 0, "Official flag: this worker's index (must match TF_CONFIG).", flag_values=values
    )
    flags.DEFINE_string(
        "master", "", "Official TF1 session target (see --strategy, TF_CONFIG).", flag_values=values
    )


def cluster_strategy(values=None, environ=None) -> Tuple[str, Optional[str], List[str]]:
    """Maps the official TF1 cluster flags of train.py onto our tf.distribute settings.

    Returns (strategy, tpu, notes): `notes` holds one line per cluster flag that maps to
    something (print them). A flag with no equivalent raises flags.ValidationError naming
    the replacement.
    """
    import json
    import os

    values = flags.FLAGS if values is None else values
    environ = os.environ if environ is None else environ
    strategy, tpu, notes = values.strategy, values.tpu, []
    check_master(values, "train")
    if values.num_ps_tasks > 0:
        raise flags.ValidationError(
            f"--num_ps_tasks={values.num_ps_tasks}: parameter servers are not supported; use "
            "--strategy=multi_worker (synchronous all-reduce, workers from TF_CONFIG)"
        )
    tf_config = environ.get("TF_CONFIG")
    cluster = {}
    if tf_config:
        try:
            cluster = json.loads(tf_config)
        except ValueError:
            raise flags.ValidationError("TF_CONFIG is not valid JSON") from None
    if values.num_replicas > 1:
        workers = cluster.get("cluster", {}).get("worker", []) + cluster.get("cluster", {}).get(
            "chief", []
        )
        if not tf_config:
            raise flags.ValidationError(
                f"--num_replicas={values.num_replicas}: set TF_CONFIG on each of the "
                f"{values.num_replicas} workers and pass --strategy=multi_worker"
            )
        if len(workers) != values.num_replicas:
            raise flags.ValidationError(
                f"--num_replicas={values.num_replicas} but TF_CONFIG lists {len(workers)} workers"
            )
        strategy = "multi_worker"
        notes.append(
            f"--num_replicas={values.num_replicas} -> --strategy=multi_worker "
            "(the workers of TF_CONFIG)"
        )
    if values["task"].present or values.task:
        index = cluster.get("task", {}).get("index")
        if not tf_config:
            if values.task:
                raise flags.ValidationError(
                    f"--task={values.task}: set TF_CONFIG with "
                    f'"task": {{"type": "worker", "index": {values.task}}} and pass '
                    "--strategy=multi_worker"
                )
        elif index != values.task:
            raise flags.ValidationError(
                f"--task={values.task} but TF_CONFIG says task index {index}"
            )
        else:
            notes.append(f"--task={values.task} -> TF_CONFIG task index {index}")
    if values["startup_delay_steps"].present:
        notes.append(
            f"--startup_delay_steps={values.startup_delay_steps} -> nothing to delay: "
            "--strategy=multi_worker trains synchronously, workers start together"
        )
    if values.clone_on_cpu:
        environ["CUDA_VISIBLE_DEVICES"] = "-1"
        notes.append("--clone_on_cpu -> GPUs hidden (CUDA_VISIBLE_DEVICES=-1), training on CPU")
    if values.num_clones > 1 and strategy == "default":
        strategy = "mirrored"
        notes.append(
            f"--num_clones={values.num_clones} -> --strategy=mirrored (one replica per local "
            "GPU; --train_batch_size stays the global batch)"
        )
    return strategy, tpu, notes


def check_inference_flags(values=None, script: str = "eval") -> Optional[List[float]]:
    """Checks the official flags of eval.py, vis.py and export.py that only apply in some
    settings, as the official scripts use them: stops with one line naming the flag
    (flags.ValidationError). Returns the --image_pyramid scales (None: one scale)."""
    values = flags.FLAGS if values is None else values
    if script != "export":
        check_quantize_delay_step(values, script)
        check_master(values, script)
    scales_flag = "inference_scales" if script == "export" else "eval_scales"
    multi_scale = float_list_flag(values, scales_flag) not in (None, [1.0])
    multi_scale = multi_scale or values.add_flipped_images
    pyramid = float_list_flag(values, "image_pyramid")
    if pyramid == [1.0]:
        pyramid = None
    # As the official predict_labels: both apply to single-scale inference only.
    for name, given in (
        ("image_pyramid", pyramid is not None),
        ("prediction_with_upsampled_logits", not values.prediction_with_upsampled_logits),
    ):
        if given and multi_scale:
            raise flags.ValidationError(
                f"--{name} applies to single-scale inference only (as in the official "
                f"scripts); drop --{scales_flag} / --add_flipped_images or --{name}"
            )
    saved_model = script == "export" and not values.export_path.endswith(".pb")
    if saved_model and (pyramid is not None or not values.prediction_with_upsampled_logits):
        raise flags.ValidationError(
            "--image_pyramid and --prediction_with_upsampled_logits=false are supported by the "
            "frozen-graph export only (an --export_path ending in .pb)"
        )
    return pyramid
