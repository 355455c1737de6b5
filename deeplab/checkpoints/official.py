"""Loads official TF1 DeepLab checkpoints (and our own) into a `build_deeplab` model.

Official variables are matched by name through one rule (see `deeplab.layers`): the Keras
layer `a.b` holds `a/b/weights`, `a/b/biases` or `a/b/depthwise_weights`, and the
BatchNormalization `a.b.BatchNorm` holds `a/b/BatchNorm/{gamma,beta,moving_mean,moving_variance}`.
"""

from __future__ import annotations

import dataclasses
import os
import tarfile
import tempfile
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import keras
import numpy as np
import tensorflow as tf

from deeplab.checkpoints import keras_checkpoints, unreadable
from deeplab.modeling.layers import scope_of
from deeplab.modeling.model import LAST_LAYER_SCOPES, LOGITS_SCOPE

# Checked in this order: DepthwiseConv2D is not a Conv2D subclass in Keras 3, but be explicit.
_LEAF_NAMES = (
    (keras.layers.DepthwiseConv2D, {"kernel": "depthwise_weights"}),
    (keras.layers.Conv2D, {"kernel": "weights", "bias": "biases"}),
    (
        keras.layers.BatchNormalization,
        {
            "gamma": "gamma",
            "beta": "beta",
            "moving_mean": "moving_mean",
            "moving_variance": "moving_variance",
        },
    ),
)


def _leaf_names(layer: keras.layers.Layer) -> Optional[Dict[str, str]]:
    return next((leaves for kind, leaves in _LEAF_NAMES if isinstance(layer, kind)), None)


# Variables of a training run that a weights loader has no use for.
_IGNORED_SUFFIXES = (
    "/Momentum",
    "/Adam",
    "/Adam_1",
    "/ExponentialMovingAverage",
    "/RMSProp",
    "/RMSProp_1",
)
_IGNORED_NAMES = ("global_step", "beta1_power", "beta2_power")
_OBJECT_GRAPH_KEY = "_CHECKPOINTABLE_OBJECT_GRAPH"


class CheckpointError(ValueError):
    """A checkpoint does not fit the model; the message names the variable."""


class CheckpointUnreadableError(CheckpointError):
    """The checkpoint's files are damaged (truncated or garbled); the message names the file."""

    def __init__(self, prefix: str, description: str):
        super().__init__(f"checkpoint {prefix} is unreadable ({description})")
        self.prefix = prefix


class CheckpointMismatchError(CheckpointError):
    """The first model variable whose shape differs from the checkpoint's (or that the
    checkpoint lacks: `checkpoint_shape` None; or that the model lacks: `model_shape` None)."""

    def __init__(self, prefix: str, variable: str, checkpoint_shape, model_shape):
        self.prefix = prefix
        self.variable = variable
        self.checkpoint_shape = None if checkpoint_shape is None else list(checkpoint_shape)
        self.model_shape = None if model_shape is None else list(model_shape)
        if self.checkpoint_shape is None:
            detail = f"model variable {variable} is missing from the checkpoint"
        elif self.model_shape is None:
            detail = f"checkpoint variable {variable} has no counterpart in the model"
        else:
            detail = (
                f"{variable} has shape {self.checkpoint_shape} in the checkpoint, "
                f"{self.model_shape} in the model"
            )
        super().__init__(f"{prefix}: {detail}")


@dataclasses.dataclass
class LoadReport:
    """What a load did: variables loaded, model variables skipped, file variables unused."""

    path: str
    loaded: List[str] = dataclasses.field(default_factory=list)
    skipped: List[str] = dataclasses.field(default_factory=list)
    unused: List[str] = dataclasses.field(default_factory=list)

    def summary(self) -> str:
        lines = [f"Loaded {len(self.loaded)} variables from {self.path}."]
        if self.skipped:
            lines.append(
                f"Skipped {len(self.skipped)} model variables (kept their "
                f"initialisation): "
                + ", ".join(self.skipped[:8])
                + (" ..." if len(self.skipped) > 8 else "")
            )
        if self.unused:
            lines.append(
                f"Ignored {len(self.unused)} checkpoint variables the model does not "
                f"have: " + ", ".join(self.unused[:8]) + (" ..." if len(self.unused) > 8 else "")
            )
        return "\n".join(lines)


def official_variables(model: keras.Model) -> Dict[str, keras.Variable]:
    """Maps every official variable name of the model to its Keras variable."""
    names: Dict[str, keras.Variable] = {}
    for layer in model.layers:
        leaves = _leaf_names(layer)
        if not layer.weights:
            continue
        if leaves is None:
            raise CheckpointError(
                f"layer {layer.name} ({type(layer).__name__}) has no official variable mapping"
            )
        scope = scope_of(layer.name)
        for weight in layer.weights:
            leaf = weight.path.split("/")[-1]
            names[f"{scope}/{leaves[leaf]}"] = weight
    return names


def _extract_archive(path: str) -> str:
    target = tempfile.mkdtemp(prefix="deeplab_ckpt_")
    try:
        with tarfile.open(path) as archive:
            archive.extractall(target, filter="data")
    except (tarfile.TarError, OSError) as err:
        raise CheckpointError(f"cannot unpack checkpoint archive {path}: {err}") from None
    return target


def resolve_checkpoint_prefix(path: str) -> str:
    """A checkpoint prefix from a prefix, a directory (its latest checkpoint: a TensorFlow
    prefix, or the JAX trainer's `.weights.h5`), or a model-zoo .tar.gz archive; a Keras
    `.weights.h5` file is returned as it is."""
    path = os.fspath(path)
    if keras_checkpoints.is_keras_weights(path):
        return path
    if path.endswith((".tar.gz", ".tgz", ".tar")) and os.path.isfile(path):
        path = _extract_archive(path)
    if os.path.isdir(path):
        # As polling.latest_checkpoint (which imports this module): TensorFlow's, else Keras's.
        latest = tf.train.latest_checkpoint(path) or keras_checkpoints.latest_checkpoint(path)
        if latest:
            return latest
        indexes = sorted(
            os.path.join(root, f)
            for root, _, files in os.walk(path)
            for f in files
            if f.endswith(".index")
        )
        if len(indexes) != 1:
            raise CheckpointError(
                f"{path}: expected exactly one checkpoint (*.index) in the "
                f"directory, found {len(indexes)}"
            )
        return indexes[0][: -len(".index")]
    if os.path.isfile(path + ".index"):
        return path
    if path.endswith(".index") and os.path.isfile(path):
        return path[: -len(".index")]
    raise CheckpointError(f"checkpoint not found: {path} (no {path}.index)")


def is_object_based(prefix: str) -> bool:
    """True for checkpoints written by tf.train.Checkpoint (ours), False for TF1 Saver ones."""
    return _OBJECT_GRAPH_KEY in tf.train.load_checkpoint(prefix).get_variable_to_shape_map()


def _ignored(name: str) -> bool:
    return name in _IGNORED_NAMES or name.endswith(_IGNORED_SUFFIXES)


def _starts_with_scope(name: str, scopes: Iterable[str]) -> bool:
    return any(
        name == s
        or name.startswith(s.rstrip("/") + "/")
        or (not s.endswith("/") and name.startswith(s))
        for s in scopes
    )


def load_official_checkpoint(
    model: keras.Model,
    path: str,
    *,
    skip_logits: bool = False,
    exclude_scopes: Sequence[str] = (),
    backbone_only: Optional[bool] = None,
) -> LoadReport:
    """Loads an official TF1 checkpoint into `model` by variable name.

    `path`: a `model.ckpt` prefix, a directory holding one, or a model-zoo `.tar.gz`.
    `skip_logits`: leave `logits/*` at their initialisation (e.g. another class count).
    `exclude_scopes`: further official scopes to leave alone (prefix match, as the official
    exclude list). `backbone_only`: the file holds only backbone variables (an ImageNet
    checkpoint); None detects it. Optimizer slots and `global_step` are ignored. Any other
    missing or mis-shaped variable raises CheckpointError naming it; nothing is assigned then.
    """
    prefix = resolve_checkpoint_prefix(path)
    reader = tf.train.load_checkpoint(prefix)
    shapes = reader.get_variable_to_shape_map()
    if _OBJECT_GRAPH_KEY in shapes:
        raise CheckpointError(
            f"{prefix} is an object-based (TF2) checkpoint, not an official TF1 "
            f"one; use deeplab.checkpoints.load_checkpoint"
        )
    targets = official_variables(model)
    exclude = list(exclude_scopes) + ([LOGITS_SCOPE] if skip_logits else [])
    if backbone_only is None:
        backbone_only = not any(_starts_with_scope(n, LAST_LAYER_SCOPES) for n in shapes)
    report = LoadReport(path=prefix)
    assignments: List[Tuple[keras.Variable, np.ndarray]] = []
    missing, mismatched = [], []
    for name, variable in targets.items():
        if _starts_with_scope(name, exclude):
            report.skipped.append(name)
            continue
        if name not in shapes:
            if backbone_only and _starts_with_scope(name, LAST_LAYER_SCOPES):
                report.skipped.append(name)
            else:
                missing.append(name)
            continue
        if list(shapes[name]) != list(variable.shape):
            mismatched.append(
                f"{name}: checkpoint {list(shapes[name])}, model {list(variable.shape)}"
            )
            continue
        assignments.append((variable, reader.get_tensor(name)))
        report.loaded.append(name)
    if mismatched or (missing and not report.loaded):
        first = next(
            n for n in targets if n in set(missing) | {m.split(":")[0] for m in mismatched}
        )
        raise CheckpointMismatchError(prefix, first, shapes.get(first), list(targets[first].shape))
    problems = []
    if missing:
        problems.append(
            f"{len(missing)} model variables are missing from the checkpoint, e.g. "
            f"{missing[0]}" + (f" ({', '.join(missing[1:4])}, ...)" if len(missing) > 1 else "")
        )
    if mismatched:
        problems.append(
            f"{len(mismatched)} variables have the wrong shape: " + "; ".join(mismatched[:5])
        )
        if any(m.startswith(LOGITS_SCOPE + "/") for m in mismatched):
            problems.append(
                "pass skip_logits=True (--initialize_last_layer=false) to start "
                "new logits for another class count"
            )
    if problems:
        raise CheckpointError(f"{prefix}: " + "; ".join(problems))
    for variable, value in assignments:
        variable.assign(value.astype(variable.dtype))
    used = set(report.loaded)
    report.unused = sorted(
        n for n in shapes if n not in used and n not in targets and not _ignored(n)
    )
    return report


def load_checkpoint(model: keras.Model, path: str, **options) -> LoadReport:
    """Loads our own (tf.train.Checkpoint, model under the key `model`; or the JAX trainer's
    Keras `.weights.h5`) or an official TF1 checkpoint, whichever `path` holds (prefix, weights
    file, directory -> latest, or .tar.gz).

    `options`: `skip_logits`, `exclude_scopes` and (official checkpoints only)
    `backbone_only`, as in `load_official_checkpoint`.
    """
    unknown = set(options) - {"skip_logits", "exclude_scopes", "backbone_only"}
    if unknown:
        raise TypeError(f"load_checkpoint got unexpected keyword arguments {sorted(unknown)}")
    prefix = resolve_checkpoint_prefix(path)
    if keras_checkpoints.is_keras_weights(prefix):
        return _load_keras_weights(model, prefix, **options)
    try:
        return _load_prefix(model, prefix, **options)
    except CheckpointError:
        raise
    except (tf.errors.OpError, IndexError, ValueError) as err:
        if not unreadable.unreadable_checkpoint(err):
            raise
        raise CheckpointUnreadableError(
            prefix, unreadable.describe_unreadable(prefix, err)
        ) from None


def _load_keras_weights(model: keras.Model, path: str, **options) -> LoadReport:
    """`load_checkpoint` of a Keras `.weights.h5` (the whole model: `options` must be empty)."""
    if options.get("skip_logits") or options.get("exclude_scopes"):
        raise CheckpointError(
            f"{path}: a Keras .weights.h5 loads whole; skipping the logits or other scopes "
            "needs a TensorFlow checkpoint"
        )
    try:
        model.load_weights(path)
    except OSError as err:  # h5py: a truncated or garbled file
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise CheckpointUnreadableError(path, f"{path}: {first}") from None
    except ValueError as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:300]
        raise CheckpointError(f"{path} does not match the model: {first}") from None
    return LoadReport(path=path, loaded=list(official_variables(model)))


def _load_prefix(model: keras.Model, prefix: str, **options) -> LoadReport:
    """`load_checkpoint` of a resolved checkpoint prefix."""
    if not is_object_based(prefix):
        return load_official_checkpoint(model, prefix, **options)
    exclude = list(options.get("exclude_scopes", ()))
    exclude += [LOGITS_SCOPE] if options.get("skip_logits") else []
    if exclude:
        return _load_object_based_partial(model, prefix, exclude)
    check_checkpoint_fits(model, prefix)
    try:
        status = tf.train.Checkpoint(model=model).restore(prefix)
    except ValueError as err:  # a shape differs (checkpoint layouts check_checkpoint_fits skips)
        raise CheckpointError(
            f"{prefix} does not match the model: {str(err).splitlines()[-1]}"
        ) from None
    status.expect_partial()
    try:
        status.assert_existing_objects_matched()
    except AssertionError as err:
        raise CheckpointError(f"{prefix} does not match the model: {err}") from None
    names = list(official_variables(model))
    return LoadReport(path=prefix, loaded=names)


def _object_keys(model: keras.Model) -> Dict[str, Tuple[str, ...]]:
    """Official name -> candidate keys in a `tf.train.Checkpoint(model=model)` file.

    Keras 3 functional models store layer `i`'s variables as `model/_operations/i/<attr>`, where
    the attribute is the weight's name, sometimes with a leading underscore (`_kernel`).
    """
    index = {id(layer): i for i, layer in enumerate(model.layers)}
    keys: Dict[str, Tuple[str, ...]] = {}
    for name, variable in official_variables(model).items():
        layer = next(layer for layer in model.layers if any(w is variable for w in layer.weights))
        base = f"model/_operations/{index[id(layer)]}/"
        keys[name] = tuple(
            base + attr + "/.ATTRIBUTES/VARIABLE_VALUE"
            for attr in (variable.name, "_" + variable.name)
        )
    return keys


def _model_variable_keys(reader) -> Dict[str, str]:
    """`model/_operations/<i>/<attr>/.ATTRIBUTES/VARIABLE_VALUE` -> the key that holds that
    variable in the checkpoint (the same unless another path reaches it first, e.g. an
    optimizer tracked next to the model), from the checkpoint's object graph."""
    from tensorflow.core.protobuf import trackable_object_graph_pb2

    graph = trackable_object_graph_pb2.TrackableObjectGraph()
    graph.ParseFromString(reader.get_tensor(_OBJECT_GRAPH_KEY))

    def children(node_id):
        return {c.local_name: c.node_id for c in graph.nodes[node_id].children}

    keys = {}
    model = children(0).get("model")
    operations = children(model).get("_operations") if model is not None else None
    if operations is None:
        return keys
    for index, layer in children(operations).items():
        for attr, node in children(layer).items():
            for attribute in graph.nodes[node].attributes:
                if attribute.name == "VARIABLE_VALUE":
                    path = f"model/_operations/{index}/{attr}/.ATTRIBUTES/VARIABLE_VALUE"
                    keys[path] = attribute.checkpoint_key
    return keys


def check_checkpoint_fits(model: keras.Model, prefix: str) -> None:
    """Raises CheckpointMismatchError for the first model variable that one of our checkpoints
    lacks or holds with another shape, or for a model variable of the checkpoint that the
    model lacks (a checkpoint of a larger model). Restoring then would fail with a traceback
    and hundreds of warnings, or silently leave part of the checkpoint unused."""
    reader = tf.train.load_checkpoint(prefix)
    available = reader.get_variable_to_shape_map()
    stored = _model_variable_keys(reader)
    if not stored:
        return  # not a `tf.train.Checkpoint(model=...)` file: the restore checks it
    targets = official_variables(model)
    expected = set()
    for name, keys in _object_keys(model).items():
        key = next((stored[k] for k in keys if k in stored), None)
        if key is None:
            raise CheckpointMismatchError(prefix, name, None, targets[name].shape)
        if list(available[key]) != list(targets[name].shape):
            raise CheckpointMismatchError(prefix, name, available[key], targets[name].shape)
        expected.add(key)
    extra = sorted(path for path, key in stored.items() if key not in expected)
    if extra:
        layer = extra[0][len("model/_operations/") :].split("/")[0]
        raise CheckpointMismatchError(
            prefix, f"layer #{layer} ({extra[0]})", available[stored[extra[0]]], None
        )


def _load_object_based_partial(
    model: keras.Model, prefix: str, exclude: Sequence[str]
) -> LoadReport:
    """Copies all variables but the excluded scopes from one of our checkpoints.

    An object-based restore matches whole objects (a logits layer of another class count would
    fail it), so the variables are read by their checkpoint keys instead.
    """
    reader = tf.train.load_checkpoint(prefix)
    available = reader.get_variable_to_shape_map()
    targets = official_variables(model)
    report = LoadReport(path=prefix)
    assignments = []
    for name, keys in _object_keys(model).items():
        if _starts_with_scope(name, exclude):
            report.skipped.append(name)
            continue
        key = next((k for k in keys if k in available), None)
        if key is None:
            raise CheckpointMismatchError(prefix, name, None, targets[name].shape)
        if list(available[key]) != list(targets[name].shape):
            raise CheckpointMismatchError(prefix, name, available[key], targets[name].shape)
        assignments.append((targets[name], reader.get_tensor(key)))
        report.loaded.append(name)
    for variable, value in assignments:
        variable.assign(value.astype(variable.dtype))
    return report
