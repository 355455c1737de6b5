"""Explains, in at most 10 lines, a checkpoint that does not fit the model built from the flags.

The command lines print this instead of a traceback: the first differing variable, its two
shapes, and the flag that most likely differs, with the value the training run recorded in its
`model_options.json` (for official checkpoints: what the checkpoint's variables say).
"""

from __future__ import annotations

from typing import List, Optional

from deeplab.checkpoints.official import CheckpointMismatchError
from deeplab.modeling.options import MODEL_VARIANTS, SHAPE_FIELDS, ModelOptions
from deeplab.modeling.recipes import flag_text

# Official checkpoint scopes of each model variant.
_VARIANT_SCOPES = {"MobilenetV2": "mobilenet_v2", **{v: v for v in MODEL_VARIANTS}}


def _plain(value):
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _flag_value(value) -> str:
    return "(unset)" if value is None else flag_text(value)


def likely_field(
    error: CheckpointMismatchError, options: ModelOptions, saved: Optional[dict]
) -> Optional[str]:
    """The ModelOptions field whose flag most likely differs from the run's, or None."""
    if not saved:
        return None
    differing = [
        f
        for f in SHAPE_FIELDS
        if f in saved and _plain(saved[f]) != _plain(getattr(options, f, None))
    ]
    if "num_classes" in differing and "logits" in error.variable:
        return "num_classes"
    return differing[0] if differing else None


def _official_hint(error: CheckpointMismatchError, options: ModelOptions) -> Optional[str]:
    """What an official checkpoint's variables say about the flags (no model_options.json)."""
    import tensorflow as tf

    try:
        names = tf.train.load_checkpoint(error.prefix).get_variable_to_shape_map()
    except (ValueError, tf.errors.OpError):
        return None
    variants = sorted({_VARIANT_SCOPES.get(n.split("/")[0]) for n in names} - {None})
    if variants and options.model_variant not in variants:
        return (
            f"likely flag: --model_variant={options.model_variant} here; the checkpoint holds "
            f"{variants[0]} variables"
        )
    classes = names.get("logits/semantic/biases")
    if classes and classes[0] != options.num_classes:
        return (
            f"likely flag: --num_classes={options.num_classes} here; the checkpoint has "
            f"{classes[0]} classes"
        )
    return None


def explain(
    error: CheckpointMismatchError,
    options: ModelOptions,
    saved: Optional[dict] = None,
    options_file: Optional[str] = None,
) -> List[str]:
    """The lines (at most 10) that describe `error` for a model built with `options`;
    `saved` is the run's model_options.json (`options_file`), None for official checkpoints."""

    def shape(value):
        return "absent" if value is None else str(value)

    lines = [
        f"ERROR: checkpoint {error.prefix} does not fit the model built from the flags.",
        f"  first differing variable: {error.variable}",
        f"  shape in the checkpoint: {shape(error.checkpoint_shape)}, "
        f"in the model: {shape(error.model_shape)}",
    ]
    field = likely_field(error, options, saved)
    if field is not None:
        flag = "--" + field
        here, there = _flag_value(getattr(options, field)), _flag_value(saved[field])
        lines.append(f"  likely flag: {flag}={here} here, {there} in {options_file}")
        lines.append(f"  drop {flag} (the run's value is the default) or pass {flag}={there}")
    elif saved is None:
        hint = _official_hint(error, options)
        if hint:
            lines.append("  " + hint)
    return lines[:10]


def describe(error: CheckpointMismatchError, options: ModelOptions, checkpoint_path: str) -> str:
    """`explain` with the model_options.json found next to `checkpoint_path` (if any)."""
    import json

    from deeplab.checkpoints.run_options import find_model_options_file

    options_file = find_model_options_file(checkpoint_path)
    saved = None
    if options_file:
        with open(options_file) as f:
            data = json.load(f)
        saved = data.get("model_options", data) if isinstance(data, dict) else None
    return "\n".join(explain(error, options, saved, options_file))


def cli_checkpoint_error(error: Exception, options: ModelOptions, checkpoint_path: str) -> str:
    """What a command line prints for a CheckpointError: `describe` for a mismatch, else the
    one-line error (e.g. a missing checkpoint)."""
    if isinstance(error, CheckpointMismatchError):
        return describe(error, options, checkpoint_path)
    return f"ERROR: {error}"
