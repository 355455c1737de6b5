"""Checking a whole split before training on it: every example decoded and validated (image
and label readable, same size, label values classes or the ignore label), every problem
reported at once. The command line is `deeplab/cli/validate_data.py`."""

from __future__ import annotations

import dataclasses
import sys
from typing import List, Optional

import keras

from deeplab.data import pipeline

COMMAND = "python -m deeplab.cli.validate_data"


@dataclasses.dataclass
class SplitReport:
    """What `check_split` found: how many examples it read and each bad one's message."""

    examples: int
    problems: List[str]

    def summary(self) -> str:
        """One line: the count of examples and of problems."""
        if not self.problems:
            return f"All {self.examples} examples are good."
        return f"{len(self.problems)} of {self.examples} examples are bad."


def check_split(
    dataset: str,
    dataset_dir: Optional[str],
    split: str,
    num_classes: Optional[int] = None,
    progress: bool = True,
) -> SplitReport:
    """Reads every example of a split (no crop, no augmentation) and returns the report;
    `num_classes`: the model's class count, when labels must be below it (default: the
    dataset's). A broken TFRecord shard is one problem (it names the records lost)."""
    examples = pipeline.example_problems(dataset, dataset_dir, split, num_classes)
    target = pipeline.split_size(dataset, dataset_dir, split, from_files=True)
    bar = None
    if progress:
        bar = keras.utils.Progbar(
            target,
            unit_name="example",
            verbose=1 if sys.stdout.isatty() else 2,
            stateful_metrics=["bad"],
        )
    problems, count = [], 0
    for example in examples.as_numpy_iterator():
        count += 1
        if example["error"]:
            problems.append(example["error"].decode("utf-8", "replace"))
        if bar is not None:
            bar.update(count, values=[("bad", len(problems))], finalize=False)
    if bar is not None:
        bar.update(count, finalize=True)
    return SplitReport(count, problems)


def stopped_by_bad_example(err: Exception, data, num_classes: Optional[int], stopped: str):
    """What a command stopped by a bad example of `data` (a DataConfig; `err` raised by its
    input pipeline) prints: the example and its file, `stopped` (what was and was not written)
    and the advice (`bad_data_advice`). None when `err` is not a bad example."""
    from deeplab.data.decode import bad_example_error  # creates tensors on import

    bad = bad_example_error(err)
    if bad is None:
        return None
    advice = bad_data_advice(data.dataset_name, data.dataset_dir, data.split, num_classes)
    return f"{bad}\n{stopped}\n{advice}"


def bad_data_advice(
    dataset: str, dataset_dir: Optional[str], split: str, num_classes: Optional[int]
) -> str:
    """What a command line stopped by a bad example tells the user to do (two lines)."""
    classes = f" --num_classes={num_classes}" if num_classes else ""
    return (
        "Fix or remove that example, or pass --skip_bad_examples (bad examples are then "
        "skipped, each logged and counted), and run again.\n"
        f"To list every problem of the split at once: {COMMAND} --dataset={dataset} "
        f"--dataset_dir={dataset_dir} --split={split}{classes}"
    )
