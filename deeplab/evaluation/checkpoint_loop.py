"""`each_checkpoint`: the checkpoint loop that eval.py's and vis.py's jobs share.

Builds the inference model once, then loads each checkpoint to read into it: one fixed
checkpoint, or each new one of a training directory as training writes it (a damaged one falls
back to the one before it, `polling.load_readable`).
"""

from __future__ import annotations

from typing import Iterator, NamedTuple

from absl import logging

from deeplab.modeling.options import options_summary


class LoadedCheckpoint(NamedTuple):
    """The inference model with a checkpoint loaded, the checkpoint's prefix and its step."""

    model: object
    prefix: str
    step: int


def each_checkpoint(job, max_checkpoints: int = 0) -> Iterator[LoadedCheckpoint]:
    """Builds the inference model of `job.model_options` (once), then yields it loaded with
    each checkpoint of `job.checkpoint_dir` (`polling.checkpoints_to_evaluate`: at most one per
    `job.eval_interval_secs`, until `max_checkpoints` (0: no limit) or `job.eval_timeout_secs`
    without a new one). `job` is an EvalConfig or a VisConfig. Raises
    `deeplab.checkpoints.CheckpointError` for a checkpoint that cannot be loaded into the
    model."""
    from deeplab.checkpoints import polling
    from deeplab.checkpoints.official import load_checkpoint, resolve_checkpoint_prefix
    from deeplab.modeling import inference

    logging.info("Model options: %s", options_summary(job.model_options))
    model, _ = inference.build_inference_model(job.model_options)
    for path in polling.checkpoints_to_evaluate(
        job.checkpoint_dir,
        eval_interval_secs=job.eval_interval_secs,
        max_number_of_evaluations=max_checkpoints,
        timeout_secs=job.eval_timeout_secs,
    ):
        path, report = polling.load_readable(
            lambda p: load_checkpoint(model, p), path, job.checkpoint_dir
        )
        logging.info("%s", report.summary())
        prefix = resolve_checkpoint_prefix(path)
        yield LoadedCheckpoint(model, prefix, polling.checkpoint_step(prefix))
