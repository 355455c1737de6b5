"""Keras `.weights.h5` files with their model options: the backend-independent form of a
checkpoint (written by `python -m deeplab.convert` on a machine with TensorFlow, read on any
Keras backend, TensorFlow not needed).

Next to `NAME.weights.h5` lies `NAME.options.json`: the ModelOptions fields that rebuild the
architecture the weights belong to.
"""

from __future__ import annotations

import dataclasses
import json
import os

import keras

from deeplab.modeling.options import ModelOptions

WEIGHTS_SUFFIX = ".weights.h5"
OPTIONS_SUFFIX = ".options.json"


def options_path(weights_path: str) -> str:
    """`NAME.options.json` for `NAME.weights.h5`."""
    if not weights_path.endswith(WEIGHTS_SUFFIX):
        raise ValueError(f"{weights_path}: a Keras weights file must end in {WEIGHTS_SUFFIX}")
    return weights_path[: -len(WEIGHTS_SUFFIX)] + OPTIONS_SUFFIX


def save_keras_weights(model: keras.Model, options: ModelOptions, weights_path: str) -> None:
    """Writes the model's weights (`.weights.h5`) and its options (`.options.json`)."""
    json_path = options_path(weights_path)
    os.makedirs(os.path.dirname(os.path.abspath(weights_path)), exist_ok=True)
    model.save_weights(weights_path)
    with open(json_path, "w") as f:
        json.dump(dataclasses.asdict(options), f, indent=2, sort_keys=True, default=list)


def load_model_options(weights_path: str) -> ModelOptions:
    """The ModelOptions saved next to a `.weights.h5` file."""
    json_path = options_path(weights_path)
    if not os.path.isfile(json_path):
        raise FileNotFoundError(f"{json_path} (the model options of {weights_path}) is missing")
    with open(json_path) as f:
        data = json.load(f)
    fields = {f.name for f in dataclasses.fields(ModelOptions)}
    return ModelOptions(**{k: v for k, v in data.items() if k in fields})


def load_keras_model(weights_path: str, options: ModelOptions = None) -> keras.Model:
    """Builds the model of `options` (default: the saved ones) and loads `weights_path`; a file
    of another architecture fails with a ValueError naming the file."""
    from deeplab.modeling.model import build_deeplab_from_options

    if not os.path.isfile(weights_path):
        raise FileNotFoundError(f"{weights_path} does not exist")
    options = options or load_model_options(weights_path)
    model = build_deeplab_from_options(options)
    try:
        model.load_weights(weights_path)
    except ValueError as err:
        first = str(err).strip().splitlines()[0][:300]
        raise ValueError(
            f"{weights_path} does not fit the model of {options.model_variant} with "
            f"{options.num_classes} classes: {first}"
        ) from None
    return model
