"""Paths to the official reference facts and fixtures used by the model tests.

The small official-format fixture (checkpoint, input, pre-upsampling logits) and the variable
lists are copied into tests/fixtures so a user's clone can run them; the large upsampled-logits
array is read from ../shared/reference when that checkout exists.
"""

import json
import os

import tensorflow as tf

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "fixtures")
REFERENCE = os.path.join(FIXTURES, "reference")
MOBILENET_FIXTURE = os.path.join(FIXTURES, "mobilenet_v2_os8")
SHARED_REFERENCE = os.path.normpath(os.path.join(HERE, "..", "..", "shared", "reference"))


def facts():
    """The official parameter counts and Mult-Adds (facts.json)."""
    with open(os.path.join(REFERENCE, "facts.json")) as f:
        return json.load(f)


def official_variables(filename):
    """{name: shape} of an official checkpoint's variable list."""
    shapes = {}
    with open(os.path.join(REFERENCE, filename)) as f:
        for line in f:
            name, shape = line.rstrip("\n").split("\t")
            shapes[name] = json.loads(shape)
    return shapes


def fixture_flags():
    """build_deeplab kwargs of the mobilenet_v2 OS 8 fixture."""
    with open(os.path.join(MOBILENET_FIXTURE, "flags.json")) as f:
        return json.load(f)["build_deeplab"]


def official_fixture(name):
    """(directory, flags.json) of an official-format fixture in tests/fixtures, e.g.
    `mobilenet_v3_large_seg`."""
    folder = os.path.join(FIXTURES, name)
    with open(os.path.join(folder, "flags.json")) as f:
        return folder, json.load(f)


def write_tf1_checkpoint(prefix, tensors):
    """Writes {name: array} as a TF1 Saver (name-based) checkpoint at `prefix`."""
    names = sorted(tensors)
    tf.raw_ops.SaveV2(
        prefix=prefix,
        tensor_names=names,
        shape_and_slices=[""] * len(names),
        tensors=[tf.constant(tensors[n]) for n in names],
    )
