"""Decoding and validation of (image, label) pairs, with errors that name the file.

Every decoded element carries an 'error' string: empty when the example is
good, otherwise a sentence naming the file and the problem. Decoding failures
(corrupt JPEG/PNG, unreadable file) cannot be caught inside a tf.data map, so
each example is decoded in a one-element dataset with ``ignore_errors`` and a
fallback element that carries the error (see decode_dataset).
"""

import os
import re
import sys

import numpy as np
import tensorflow as tf

_EMPTY_IMAGE = tf.zeros([0, 0, 3], tf.uint8)
# How the error of a bad example starts (see validate).
BAD_EXAMPLE = "bad example "
# "<N> " + this in the error of a broken TFRecord shard: the records lost, counted as skipped.
LOST_RECORDS = "record(s) from there on cannot be read"


class BadExampleError(ValueError):
    """A bad example stopped the input pipeline; the message names its file and the problem."""


def bad_example_error(err: Exception):
    """The BadExampleError that a TensorFlow error raised by `raise_or_skip` carries (its
    first line, without TensorFlow's framing), else None."""
    text = str(err)
    start = text.find(BAD_EXAMPLE)
    if start < 0:
        return None
    line = text[start:].splitlines()[0].rstrip().replace("\\'", "'")  # as Assert quotes it
    return BadExampleError(line[:-1] if line.endswith("]") else line)


def decode_image(data):
    """Decodes JPEG/PNG/BMP/GIF bytes to uint8 RGB [H, W, 3].

    Grayscale is replicated to RGB and an alpha channel is dropped (decode with
    channels=3 does both).
    """
    image = tf.io.decode_image(data, channels=3, expand_animations=False)
    image.set_shape([None, None, 3])
    return image


def palette_lookup_table(palette):
    """Returns a hash table: packed RGB colour -> first palette index (-1 if none)."""
    palette = np.asarray(palette, dtype=np.int64)[:256]
    codes = palette[:, 0] * 65536 + palette[:, 1] * 256 + palette[:, 2]
    _, first = np.unique(codes, return_index=True)
    return tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(
            tf.constant(codes[first], tf.int64), tf.constant(first.astype(np.int64), tf.int64)
        ),
        default_value=-1,
    )


def decode_label(data, color_table=None):
    """Decodes a label PNG to int32 [H, W, 1] and an error string.

    A single-channel PNG (the official format) gives its values. A colour label
    (RGB, or a palette PNG that the decoder expands to RGB) is mapped back to
    indices through ``colour_table`` (see palette_lookup_table); colours not in
    the palette become -1, which validation reports. Without a table a colour
    label is an error.
    """
    raw = tf.io.decode_image(data, channels=0, expand_animations=False)
    channels = tf.shape(raw)[-1]

    def single():
        return tf.cast(raw[..., :1], tf.int32), tf.constant("")

    def color():
        if color_table is None:
            return (
                tf.zeros_like(tf.cast(raw[..., :1], tf.int32)),
                tf.constant(
                    "label is a colour image; expected single-channel "
                    "class indices (remove the colour map first)"
                ),
            )
        rgb = tf.cast(raw[..., :3], tf.int64)
        codes = rgb[..., 0] * 65536 + rgb[..., 1] * 256 + rgb[..., 2]
        return tf.cast(color_table.lookup(codes), tf.int32)[..., tf.newaxis], tf.constant("")

    label, error = tf.cond(channels >= 3, color, single)
    label.set_shape([None, None, 1])
    return label, error


def read_and_decode(raw, color_table=None):
    """Turns a raw element into a decoded one (may raise on corrupt data).

    raw: dict with 'image_name', 'source' and either 'image_bytes' /
    'label_bytes' or 'image_path' / 'label_path'. An empty label (a test split)
    becomes all ignore later, marked by 'has_label' False.
    """
    if "image_path" in raw:
        image_bytes = tf.io.read_file(raw["image_path"])
        label_bytes = tf.cond(
            tf.equal(raw["label_path"], ""),
            lambda: tf.constant(""),
            lambda: tf.io.read_file(raw["label_path"]),
        )
    else:
        image_bytes, label_bytes = raw["image_bytes"], raw["label_bytes"]
    image = decode_image(image_bytes)
    has_label = tf.not_equal(label_bytes, "")
    label, error = tf.cond(
        has_label,
        lambda: decode_label(label_bytes, color_table),
        lambda: (tf.zeros([0, 0, 1], tf.int32), tf.constant("")),
    )
    return {
        "image": image,
        "label": label,
        "has_label": has_label,
        "image_name": raw["image_name"],
        "source": raw["source"],
        "error": error,
    }


def _failed(raw):
    generic = tf.constant(
        "could not read or decode the image or label (missing, corrupt or unsupported data)"
    )
    # A reader's own error (e.g. a truncated TFRecord shard) says more than the generic one.
    error = tf.where(raw["error"] != "", raw["error"], generic) if "error" in raw else generic
    return {
        "image": _EMPTY_IMAGE,
        "label": tf.zeros([0, 0, 1], tf.int32),
        "has_label": tf.constant(False),
        "image_name": raw["image_name"],
        "source": raw["source"],
        "error": error,
    }


def decode_dataset(raw_dataset, color_table=None, deterministic=True, parallelism=tf.data.AUTOTUNE):
    """Decodes a dataset of raw elements; failures become elements with 'error'."""

    def safe_decode(raw):
        good = (
            tf.data.Dataset.from_tensors(raw)
            .map(lambda r: read_and_decode(r, color_table))
            .ignore_errors()
        )
        fallback = tf.data.Dataset.from_tensors(raw).map(_failed)
        return good.concatenate(fallback).take(1)

    return raw_dataset.interleave(
        safe_decode,
        cycle_length=max(2, os.cpu_count() or 2),
        block_length=1,
        num_parallel_calls=parallelism,
        deterministic=deterministic,
    )


def validate(example, num_classes, ignore_label):
    """Adds checks to a decoded element: missing labels become all-ignore,
    then size mismatch and label values outside 0..num_classes-1 (other than the
    ignore label) set 'error'. The final 'error' names the file.
    """
    image, label = example["image"], example["label"]
    image_hw = tf.shape(image)[:2]
    label = tf.cond(
        example["has_label"],
        lambda: label,
        lambda: tf.fill(tf.concat([image_hw, [1]], 0), ignore_label),
    )
    label_hw = tf.shape(label)[:2]
    error = example["error"]
    size_error = tf.strings.format(
        "label size {}x{} differs from image size {}x{}",
        (label_hw[0], label_hw[1], image_hw[0], image_hw[1]),
    )
    error = tf.where(
        tf.logical_and(tf.equal(error, ""), tf.reduce_any(tf.not_equal(label_hw, image_hw))),
        size_error,
        error,
    )
    if num_classes is not None:
        bad_values = tf.logical_and(
            tf.logical_or(label < 0, label >= num_classes), tf.not_equal(label, ignore_label)
        )
        first_bad = tf.cond(
            tf.reduce_any(bad_values),
            lambda: tf.boolean_mask(label, bad_values)[0],
            lambda: tf.constant(0),
        )
        value_error = tf.strings.format(
            "label value {} outside 0..{} and not the ignore label {}",
            (first_bad, num_classes - 1, ignore_label),
        )
        error = tf.where(
            tf.logical_and(tf.equal(error, ""), tf.reduce_any(bad_values)), value_error, error
        )
    full_error = tf.where(
        tf.equal(error, ""),
        error,
        tf.strings.join([BAD_EXAMPLE, example["source"], ": ", error]),
    )
    out = dict(example)
    out.pop("has_label")
    out.update(label=label, error=full_error)
    return out


def raise_or_skip(dataset, skip_bad_examples, deterministic=True):
    """Raises InvalidArgumentError on the first bad element (its message names
    the file), or with skip_bad_examples drops bad elements and logs each one
    with a running count of skipped examples (a broken TFRecord shard counts the records
    lost from the break on).
    """
    if not skip_bad_examples:

        def check(example):
            ok = tf.debugging.Assert(
                tf.equal(example["error"], ""), [example["error"]], summarize=1
            )
            with tf.control_dependencies([ok]):
                example = dict(example, image=tf.identity(example["image"]))
            return example

        return dataset.map(check, num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)

    lost = rf"^.*: (\d+) {re.escape(LOST_RECORDS)}.*$"

    def count(skipped, example):
        error = example["error"]
        bad = tf.not_equal(error, "")
        digits = tf.where(
            tf.strings.regex_full_match(error, lost),
            tf.strings.regex_replace(error, lost, r"\1"),
            "1",
        )
        records = tf.strings.to_number(digits, tf.int64)
        skipped += tf.where(bad, records, tf.constant(0, tf.int64))

        def log():
            # Standard output, not a log stream: TF_CPP_MIN_LOG_LEVEL>=1 would hide
            # tf.print's stderr/log outputs, and a skipped file must never go unseen.
            tf.print(
                "WARNING: skipping",
                example["error"],
                "; skipped so far:",
                skipped,
                output_stream=sys.stdout,
            )
            return tf.constant(True)

        logged = tf.cond(bad, log, lambda: tf.constant(False))
        return skipped, dict(example, skipped=logged)

    dataset = dataset.scan(tf.constant(0, tf.int64), count)
    dataset = dataset.filter(lambda e: tf.equal(e["error"], ""))
    return dataset.map(lambda e: {k: v for k, v in e.items() if k != "skipped"})
