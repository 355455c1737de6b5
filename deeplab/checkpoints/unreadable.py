"""Damaged checkpoint files (a truncated `.index` or `.data`, e.g. a full disk or a copy cut
short): recognising the error a read raises, and naming the file."""

from __future__ import annotations

import tensorflow as tf


def unreadable_checkpoint(err: Exception) -> bool:
    """Whether `err`, raised by a restore, means the checkpoint files are damaged (as opposed
    to a checkpoint that does not match the model)."""
    if isinstance(err, (tf.errors.DataLossError, tf.errors.NotFoundError, IndexError)):
        return True
    text = str(err)
    return any(
        marker in text
        for marker in (
            "Read less bytes",
            "corrupted",
            "truncated",
            "Unable to open table file",
            "not an sstable",  # a truncated or garbled .index file
            "bad magic number",
            "Checksum does not match",
        )
    )


def describe_unreadable(path: str, err: Exception) -> str:
    """`<file>: <first line of the error>`, naming the damaged file of checkpoint `path`."""
    first = (str(err).strip().splitlines() or [type(err).__name__])[0]
    try:
        tf.train.load_checkpoint(path)  # reads the .index file only
        damaged = sorted(tf.io.gfile.glob(path + ".data-*")) or [path + ".data-*"]
        return f"{', '.join(damaged)}: {first}"
    except (tf.errors.OpError, ValueError):
        return f"{path}.index: {first}"
