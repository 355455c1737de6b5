"""The command-line layer: absl flags shared by train, eval, vis, export and summary, and
everything that reads parsed flags (presence on the command line, flag errors).

Names and defaults follow the official research/deeplab `common.py`. List flags accept both
our comma form (`--atrous_rates=6,12,18`) and the official repeated form
(`--atrous_rates=6 --atrous_rates=12 --atrous_rates=18`). Library code never reads flags:
this module turns them into plain arguments (`model_options_from_flags`, `cli_setup`). It is
the only module under deeplab/ that imports absl.flags.
"""

from __future__ import annotations

import errno
import os
import sys
from types import SimpleNamespace
from typing import List, Optional, Tuple

from absl import app, flags

from deeplab.data import descriptors
from deeplab.data.config import DataConfig
from deeplab.modeling import recipes
from deeplab.modeling.options import OPTION_FIELDS, ModelOptions
from deeplab.modeling.recipes import flag_text

DEFAULT_SYNTHETIC_DIR = os.path.join("data", "synthetic")
# What bad flags raise (absl's flag errors, ValidationError among them).
FlagsError = flags.Error


def define_int_list(name: str, default: Optional[str], help_text: str, values=None) -> None:
    """Defines a list-of-integers flag that takes `a,b,c` and repeated `--name=a --name=b`."""
    flags.DEFINE_multi_string(
        name,
        default,
        help_text + " (comma list or repeated flag)",
        flag_values=flags.FLAGS if values is None else values,
    )


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


def parse_float_list(values, flag_name: str = "eval_scales") -> List[float]:
    """Floats from `a,b,c` strings and / or repeated values (both flag forms); ValueError
    naming the flag on anything else."""
    if values is None:
        return []
    if isinstance(values, (str, float, int)):
        values = [values]
    out = []
    for value in values:
        for part in str(value).split(","):
            part = part.strip()
            if part:
                try:
                    out.append(float(part))
                except ValueError:
                    raise ValueError(f"--{flag_name}: {part!r} is not a number") from None
    return out


def print_flags_error(err) -> None:
    """The one-line report of a bad flag on stderr (absl's own format for flag errors)."""
    print(f"FATAL Flags parsing error: {err}", file=sys.stderr)


_WRITE_ERRNOS = (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT)
_WRITE_REASONS = ("Permission denied", "Read-only file system", "No space left on device")


def describe_write_error(err: BaseException, output_flag: Optional[str]) -> Optional[str]:
    """The one line a command prints when its output cannot be written (no permission, a
    read-only or full disk): the path, the reason and the fix; None for any other error."""
    if isinstance(err, OSError) and err.errno in _WRITE_ERRNOS:
        what = f"{err.filename}: {err.strerror}" if err.filename else str(err)
        full = err.errno in (errno.ENOSPC, errno.EDQUOT)
    else:
        tf = sys.modules.get("tensorflow")
        text = (str(err).strip().splitlines() or [""])[0]
        if tf is None or not isinstance(err, tf.errors.OpError):
            return None
        if not any(reason in text for reason in _WRITE_REASONS):
            return None
        what, full = text, "No space left" in text
    if full:
        fix = "free space on that disk and run again"
        if output_flag == "--train_logdir":
            fix += " (training resumes from its last checkpoint)"
    else:
        fix = (
            f"give {output_flag or 'the output flag'} a folder you can write to "
            "(or fix the permissions of that path)"
        )
    return f"ERROR: {what}; {fix}."


def run_reporting_missing_files(body, output_flag: Optional[str] = None) -> int:
    """Runs a command line's `body()`; a missing dataset, image or checkpoint file, or an
    output it cannot write (`describe_write_error`, naming `output_flag`), ends it with one
    `ERROR:` line and status 1, a flag or usage error with one line and status 2, instead of a
    traceback."""
    try:
        return body()
    except FileNotFoundError as err:
        print(f"ERROR: {err}", file=sys.stderr)
        return 1
    except (app.UsageError, flags.Error) as err:
        print_flags_error(err)
        return 2
    except Exception as err:  # noqa: BLE001 - re-raised unless it is a write failure
        line = describe_write_error(err, output_flag)
        if line is None:
            raise
        print(line, file=sys.stderr)
        return 1


def run_command_line(body, required_flags=(), usage=None, output_flag=None) -> None:
    """Runs a command line (train, eval, vis, export): quiet start-up logs, the flags parsed with
    `required_flags` required (a flag error exits with status 2), INFO logging, then `body()`,
    whose return value is the exit status (`run_reporting_missing_files`; `output_flag`: the
    flag naming where it writes, for the fix of a write failure). `usage` (the command
    module's docstring) is what `--help` prints first, also from a launcher or console script."""
    from absl import logging

    if usage:
        # absl's --help prints the docstring of __main__, which is a thin launcher here.
        sys.modules["__main__"].__doc__ = usage
    show_key_flags_in_help(body.__module__)

    from deeplab.cli import logs as cli_logs

    cli_logs.install()
    flags.mark_flags_as_required(list(required_flags))

    def main(argv):
        del argv
        logging.set_verbosity(logging.INFO)
        return run_reporting_missing_files(body, output_flag)

    app.run(main, flags_parser=parse_flags_exit_2)


def show_key_flags_in_help(command_module: str) -> None:
    """Lists the key flags of `command_module` (its own and the ones it adopts, e.g. the model
    flags) under `--help`, which shows the key flags of the program named by sys.argv[0]: a
    launcher (train.py) or console script (deeplab-train) that defines none itself."""
    if command_module == "__main__":
        return
    for flag in flags.FLAGS.get_key_flags_for_module(command_module):
        flags.FLAGS.register_key_flag_for_module(sys.argv[0], flag)


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
    except SystemExit as done:
        # absl's help flags print the help, then exit with status 1; asking is no error.
        if done.code == 1 and HELP_FLAGS.intersection(arg.split("=")[0] for arg in argv[1:]):
            sys.exit(0)
        raise


# absl's help flags (app.define_help_flags).
HELP_FLAGS = frozenset(("-?", "-h", "--help", "--helpshort", "--helpfull", "--helpxml"))


def define_skip_bad_examples_flag() -> None:
    """--skip_bad_examples of train.py, eval.py and vis.py (`DataConfig.skip_bad_examples`)."""
    flags.DEFINE_boolean(
        "skip_bad_examples",
        False,
        "Skip unreadable or invalid examples (corrupt records, bad labels) and count them "
        "instead of stopping at the first one.",
    )


def define_resize_flags() -> None:
    """The official input resizing flags (`preprocess.resize_to_range`), shared by the CLIs."""
    flags.DEFINE_integer("min_resize_value", None, "Desired size of the smaller image side.")
    flags.DEFINE_integer("max_resize_value", None, "Maximum allowed size of the larger image side.")
    flags.DEFINE_integer(
        "resize_factor", None, "Resized dimensions are a multiple of factor plus one."
    )


_DEFINE_BY_KIND = {
    "int": flags.DEFINE_integer,
    "float": flags.DEFINE_float,
    "bool": flags.DEFINE_boolean,
}


def define_option_flags(scope: str, values=None) -> None:
    """Defines the flag of every ModelOptions field declared for `scope` ("common": the model
    flags of every command line; "train": those only the official train.py has), from the
    field's declaration (`deeplab.modeling.options.option`), in `values` (default
    `flags.FLAGS`)."""
    values = flags.FLAGS if values is None else values
    for field in OPTION_FIELDS:
        meta = field.metadata
        if meta["scope"] != scope:
            continue
        default, kind, text = meta["flag_default"], meta["flag"], meta["help"]
        if kind == "enum":
            flags.DEFINE_enum(field.name, default, list(meta["choices"]), text, flag_values=values)
        elif kind == "int_list":
            define_int_list(
                field.name, None if default is None else flag_text(default), text, values
            )
        elif kind == "string":
            flags.DEFINE_string(field.name, default or "", text, flag_values=values)
        else:
            _DEFINE_BY_KIND[kind](field.name, default, text, flag_values=values)


def define_model_flags(values=None) -> None:
    """Defines the model flags of the official common.py (from the ModelOptions declarations)
    and --recipe, once per process (in `values`, default `flags.FLAGS`)."""
    values = flags.FLAGS if values is None else values
    if "model_variant" in values:
        return
    define_option_flags("common", values)
    flags.DEFINE_enum(
        "recipe",
        None,
        sorted(recipes.RECIPES),
        "A model-zoo configuration (README 'Model zoo'); model flags given on the command line "
        "override it.",
        flag_values=values,
    )
    flags.DEFINE_integer(
        "logits_kernel_size",
        1,
        "Kernel size of the logits conv (1 is the only supported value).",
        flag_values=values,
    )
    # NAS backbones (nas_pnasnet, nas_hnasnet) are not implemented; their options change no
    # other variant, so they are accepted as officially. Bounded activations would change
    # Xception and the heads, so they stop in `model_options_from_flags`.
    flags.DEFINE_integer(
        "nas_stem_output_num_conv_filters",
        20,
        "NAS backbones only (not implemented here).",
        flag_values=values,
    )
    for name in ("nas_use_classification_head", "nas_remove_os32_stride"):
        flags.DEFINE_boolean(
            name, False, "NAS backbones only (not implemented here).", flag_values=values
        )
    flags.DEFINE_boolean(
        "use_bounded_activation",
        False,
        "Bounded ReLU6 activations for quantization (only false is supported).",
        flag_values=values,
    )


def _option_from_flag(field, value):
    """The ModelOptions value of `field` from its flag's parsed value."""
    kind = field.metadata["flag"]
    if kind == "int_list":
        parsed = parse_int_list(value, field.name)
        return tuple(parsed) if parsed else field.metadata["flag_default"]
    if kind == "string":
        return value or None
    return value


def _explicit(values, name: str) -> bool:
    return name in values and values[name].present


def model_options_from_flags(
    values,
    *,
    num_classes: Optional[int] = None,
    crop_size=None,
    saved: Optional[dict] = None,
    preset: Optional[dict] = None,
) -> ModelOptions:
    """The one place a command line's ModelOptions are resolved, from parsed model flags (a
    FlagValues, e.g. `flags.FLAGS`). Each option takes, first to last: its flag when given on
    the command line, the --recipe's flag, the training run's value (`saved`, its
    model_options.json), `preset` (train.py's synthetic demo), the flag's default.

    `num_classes` (the dataset's) is used when neither --num_classes nor `saved` gives one (a
    recipe's class count is its dataset's); `crop_size` (the script's crop) sets the
    image-pooling window when --image_pooling_crop_size is unset, as officially.
    """
    if not values.aspp_with_batch_norm:
        raise flags.ValidationError("--aspp_with_batch_norm=false is not supported")
    if values.logits_kernel_size != 1:
        raise flags.ValidationError("--logits_kernel_size must be 1 (the official ASPP setting)")
    if values.use_bounded_activation:
        raise flags.ValidationError(
            "--use_bounded_activation=true is not supported (only the official unbounded ReLUs)"
        )
    # A recipe is its flags, as if given on the command line.
    recipe = {}
    if "recipe" in values and values.recipe:
        recipe = dict(recipes.get_recipe(values.recipe).flags)
    layers = [recipe, saved or {}, preset or {}]
    kwargs = {}
    for field in OPTION_FIELDS:
        name = field.name
        if _explicit(values, name):
            kwargs[name] = _option_from_flag(field, values[name].value)
            continue
        given = [layer[name] for layer in layers if name in layer]
        if given:
            kwargs[name] = given[0]
        elif name in values:
            kwargs[name] = _option_from_flag(field, values[name].value)
    if "num_classes" not in kwargs or kwargs["num_classes"] is None:
        kwargs["num_classes"] = num_classes
    if kwargs["num_classes"] is None:
        raise flags.ValidationError("--num_classes is required here")
    if crop_size:
        kwargs["crop_size"] = tuple(crop_size)
    try:
        return ModelOptions(**kwargs)
    except ValueError as err:
        raise flags.ValidationError(str(err)) from None


def define_summary_flags() -> None:
    """Flags of `python -m deeplab.summary`: the model flags, --crop_size and --json."""
    define_model_flags()
    flags.DEFINE_list("crop_size", ["513", "513"], "Input size (height,width) to summarise at.")
    flags.DEFINE_boolean("json", False, "Print one JSON object instead of the table.")


def summary_arguments() -> Tuple[ModelOptions, List[int], bool]:
    """(ModelOptions, crop size, JSON output) from the process's parsed `define_summary_flags`
    flags (`python -m deeplab.summary`)."""
    values = flags.FLAGS
    crop = parse_int_list(values.crop_size, "crop_size")
    if not crop or len(crop) != 2:
        raise app.UsageError("--crop_size must be height,width")
    # No dataset here: the recipe's dataset's class count, else PASCAL VOC's.
    num_classes = recipes.get_recipe(values.recipe).num_classes if values.recipe else 21
    return model_options_from_flags(values, num_classes=num_classes), crop, values.json


def resolve_dataset(
    dataset: Optional[str], dataset_dir: Optional[str], saved: Optional[dict] = None
) -> Tuple[str, Optional[str]]:
    """(dataset name, dataset dir): the flags, else what the training run used, else the
    built-in synthetic set in data/synthetic (pascal_voc_seg when only a dir is given)."""
    saved = saved or {}
    if dataset is None:
        if saved.get("dataset"):
            dataset = saved["dataset"]
            if dataset_dir is None:
                dataset_dir = saved.get("dataset_dir")
        else:
            dataset = "synthetic" if dataset_dir is None else "pascal_voc_seg"
    if dataset_dir is None and dataset == "synthetic":
        dataset_dir = DEFAULT_SYNTHETIC_DIR
    return dataset, dataset_dir


def check_dataset_dir(dataset: str, dataset_dir: Optional[str]) -> None:
    """Stops (flags.ValidationError naming --dataset_dir) when the dataset directory does not
    exist; a TensorFlow Datasets source (`tfds:NAME`) may leave it unset. Nothing is built: only
    datasets/build_synthetic_data.py and train.py's first run write a synthetic set."""
    if dataset.startswith(descriptors.TFDS_PREFIX) or dataset_dir is None:
        return
    import tensorflow as tf

    if tf.io.gfile.isdir(dataset_dir):
        return
    hint = ""
    if dataset == "synthetic":
        hint = (
            f"; build the synthetic set with `python datasets/build_synthetic_data.py "
            f"--output_dir={dataset_dir}` (train.py builds it on its first run)"
        )
    raise flags.ValidationError(f"--dataset_dir={dataset_dir}: no such directory{hint}")


def checkpoint_source_problem(path: str) -> Optional[str]:
    """What is wrong with a checkpoint flag's value, or None: a training dir holding a
    checkpoint, a prefix, an archive or an official checkpoint dir are fine."""
    import tensorflow as tf

    from deeplab.checkpoints import polling

    if polling.is_static_checkpoint(path):
        return None
    if not tf.io.gfile.isdir(path):
        return "no such checkpoint, directory or archive"
    return None if polling.latest_checkpoint(path) is not None else "holds no checkpoint"


def check_checkpoint_source(flag_values, script: str) -> None:
    """eval.py / vis.py: stops (flags.ValidationError naming --checkpoint_dir) when
    --checkpoint_dir names nothing, or a directory without a checkpoint, and the run would
    otherwise wait for one: a count of checkpoints to read is set (--max_number_of_evaluations,
    --max_number_of_iterations) and no --eval_timeout_secs asks to wait for training."""
    path = flag_values.checkpoint_dir
    count_flag = "max_number_of_evaluations" if script == "eval" else "max_number_of_iterations"
    if flag_values[count_flag].value <= 0 or flag_values.eval_timeout_secs is not None:
        return  # the official loop: wait for training to write one
    problem = checkpoint_source_problem(path)
    if problem:
        raise flags.ValidationError(
            f"--checkpoint_dir={path}: {problem} (to wait for a training run to write one, "
            "add --eval_timeout_secs=SECONDS)"
        )


def options_from_flags(
    flag_values, checkpoint_path: Optional[str], num_classes: Optional[int]
) -> ModelOptions:
    """Inference ModelOptions for a CLI (`model_options_from_flags` over train.py's
    `model_options.json` next to the checkpoint, when there is one; `num_classes` is the
    dataset's), made the inference model's (`inference.inference_options`): global image
    pooling unless --image_pooling_crop_size is given (on the command line or in the training
    run's options), logits not upsampled in the model, no weight decay.
    """
    from deeplab.checkpoints import run_options
    from deeplab.modeling import inference

    saved, _ = run_options.saved_run_info(checkpoint_path)
    options = model_options_from_flags(flag_values, num_classes=num_classes, saved=saved)
    return inference.inference_options(options)


def inference_settings_from_flags(values, options: ModelOptions, script: str):
    """The inference flags of eval.py, vis.py or export.py (`script`) as the
    `inference.InferenceSettings` of a model built from `options`, checked as the official
    scripts use them (`check_inference_flags`)."""
    from deeplab.modeling import inference

    pyramid = check_inference_flags(values, script)
    scales_flag = "inference_scales" if script == "export" else "eval_scales"
    return inference.InferenceSettings.for_options(
        options,
        eval_scales=float_list_flag(values, scales_flag) or (1.0,),
        add_flipped_images=values.add_flipped_images,
        prediction_with_upsampled_logits=values.prediction_with_upsampled_logits,
        image_pyramid=pyramid,
        merge_method=values.merge_method,
    )


def cli_setup(flag_values, checkpoint_path: str, *, script: str, crop_flag: str):
    """What eval.py and vis.py (`script`) derive from their flags, as a SimpleNamespace:
    `dataset`, `dataset_dir`, `info` (DatasetInfo), `options` (inference ModelOptions),
    `settings` (InferenceSettings) and `crop` (the `crop_flag` size; 225x225 for the synthetic
    set unless given). Builds no data (`check_dataset_dir`). Raises ValueError or absl's
    flags.Error on bad flags."""
    from deeplab.checkpoints import run_options

    check_checkpoint_source(flag_values, script)
    _, saved = run_options.saved_run_info(checkpoint_path)
    dataset, dataset_dir = resolve_dataset(flag_values.dataset, flag_values.dataset_dir, saved)
    if dataset_dir is None:
        raise ValueError(f"--dataset_dir is required for --dataset={dataset}")
    check_dataset_dir(dataset, dataset_dir)
    info = descriptors.get_dataset_info(dataset)
    options = options_from_flags(flag_values, checkpoint_path, info.num_classes)
    settings = inference_settings_from_flags(flag_values, options, script)
    if dataset == "synthetic" and not flag_values[crop_flag].present:
        crop = (225, 225)  # the synthetic images are at most 224 pixels
    else:
        crop = parse_int_list(flag_values[crop_flag].value, crop_flag)
        if not crop or len(crop) != 2 or min(crop) < 1:
            raise ValueError(
                f"--{crop_flag} must be two positive integers (height,width), "
                f"got {flag_values[crop_flag].value}"
            )
    return SimpleNamespace(
        dataset=dataset,
        dataset_dir=dataset_dir,
        info=info,
        options=options,
        settings=settings,
        crop=tuple(crop),
    )


def eval_data_config(flag_values, setup, *, split: str, batch_size: int) -> DataConfig:
    """The evaluation input pipeline of eval.py and vis.py: `split` of the dataset of `setup`
    (`cli_setup`) at its crop, with the resize flags."""
    return DataConfig(
        setup.dataset,
        setup.dataset_dir,
        split,
        crop_size=setup.crop,
        batch_size=batch_size,
        is_training=False,
        min_resize_value=flag_values.min_resize_value,
        max_resize_value=flag_values.max_resize_value,
        resize_factor=flag_values.resize_factor,
        keep_aspect_ratio=flag_values.keep_aspect_ratio,
        model_variant=setup.options.model_variant,
        num_classes=setup.options.num_classes,
        skip_bad_examples="skip_bad_examples" in flag_values and flag_values.skip_bad_examples,
    )


def checkpoint_job_fields(flag_values, script: str) -> dict:
    """The fields that eval.py's EvalConfig and vis.py's VisConfig (`script`) share, from the
    flags: `checkpoint_dir`, `model_options`, `settings` and `data` (the evaluation
    DataConfig of --<script>_split, --<script>_crop_size, --<script>_batch_size). Raises
    ValueError or absl's flags.Error on bad flags (`cli_setup`)."""
    from deeplab.data.config import DataConfigError

    checkpoint_dir = flag_values.checkpoint_dir
    setup = cli_setup(flag_values, checkpoint_dir, script=script, crop_flag=f"{script}_crop_size")
    try:
        data = eval_data_config(
            flag_values,
            setup,
            split=flag_values[f"{script}_split"].value,
            batch_size=flag_values[f"{script}_batch_size"].value,
        )
    except DataConfigError as err:  # named by the flag, not the DataConfig field
        per_script = ("batch_size", "crop_size", "split")  # --eval_batch_size, --vis_split, ...
        flag = f"{script}_{err.field}" if err.field in per_script else err.field
        raise flags.ValidationError(f"--{flag}: {err.reason}") from None
    return dict(
        checkpoint_dir=checkpoint_dir,
        model_options=setup.options,
        settings=setup.settings,
        data=data,
    )


def checkpoint_job_config(config_class, flag_values, script: str):
    """eval.py's EvalConfig or vis.py's VisConfig (`config_class`, of `script`) from the flags:
    the fields they share (`checkpoint_job_fields`), and each other field from the flag of
    its name. Raises ValueError or absl's flags.Error naming the flag of a bad value."""
    import dataclasses

    fields = checkpoint_job_fields(flag_values, script)
    for field in dataclasses.fields(config_class):
        if field.name not in fields and field.name in flag_values:
            fields[field.name] = flag_values[field.name].value
    return config_class(**fields)


def run_checkpoint_job(config_from_flags, job, flag_values, job_errors=()) -> int:
    """The main() of eval.py and vis.py: `job(config_from_flags(flag_values))`; returns the
    exit status. A bad flag prints one line and gives 2; a checkpoint that cannot be loaded
    into the model (its mismatch explained), or one of `job_errors` (printed as is), gives 1."""
    from deeplab.checkpoints.mismatch import cli_checkpoint_error
    from deeplab.checkpoints.official import CheckpointError

    try:
        config = config_from_flags(flag_values)
    except (ValueError, flags.Error) as err:
        print_flags_error(err)
        return 2
    try:
        job(config)
    except tuple(job_errors) as err:
        print(f"ERROR: {err}", file=sys.stderr)
        return 1
    except CheckpointError as err:
        path = getattr(err, "prefix", None) or config.checkpoint_dir
        print(cli_checkpoint_error(err, config.model_options, path), file=sys.stderr)
        return 1
    return 0


# ----------------------------------------------------------------------------------------------
# Official command lines: every flag of the official research/deeplab scripts is accepted (the
# official names are test data: tests/data/official_flags.json).


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
    try:
        return parse_float_list(values[flag_name].value, flag_name) or None
    except ValueError as err:
        raise flags.ValidationError(str(err)) from None


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
    return pyramid


def checkpoint_dataset_classes(flag_values, checkpoint_path: str, saved: dict):
    """(dataset name, its info (None without a dataset), class count) of the model to rebuild
    from `checkpoint_path`:
    the dataset of --dataset or of the run's model_options.json (`saved`), else the class
    count of the checkpoint's logits, else 21 (PASCAL VOC)."""
    from deeplab.data import descriptors
    from deeplab.modeling import inference

    dataset = flag_values.dataset or saved.get("dataset")
    info = descriptors.get_dataset_info(dataset) if dataset else None
    num_classes = (
        (info.num_classes if info else None)
        or inference.checkpoint_num_classes(checkpoint_path)
        or 21
    )
    return dataset, info, num_classes
