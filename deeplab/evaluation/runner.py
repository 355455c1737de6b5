"""`evaluate_checkpoint(EvalConfig)`: the evaluation job of eval.py as one library call.

Evaluates each checkpoint of `checkpoint_dir` as training writes it (or one fixed checkpoint)
on the evaluation DataConfig, with the InferenceSettings, and writes the results: results.txt,
results.json, confusion_matrix.csv / .png, eval_history.jsonl and TensorBoard summaries in
`eval_logdir`.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Dict, List, Optional

from deeplab.data.config import DataConfig
from deeplab.modeling.inference import InferenceSettings
from deeplab.modeling.options import ModelOptions


class BadEvalDataError(RuntimeError):
    """A bad example stopped the evaluation of a checkpoint (nothing written for it); the
    message names the example's file, the problem and the fix."""


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    """An evaluation job (field names are eval.py's flags). `model_options` are the inference
    model's (`inference.inference_options`); `data` is an evaluation DataConfig;
    `eval_logdir` defaults to `<checkpoint_dir>/eval`."""

    checkpoint_dir: str
    model_options: ModelOptions
    data: DataConfig
    settings: InferenceSettings = InferenceSettings()
    eval_logdir: Optional[str] = None
    eval_interval_secs: float = 300
    max_number_of_evaluations: int = 0
    eval_timeout_secs: Optional[float] = None
    output_json: Optional[str] = None
    max_eval_batches: Optional[int] = None

    def __post_init__(self):
        if not self.checkpoint_dir:
            raise ValueError("--checkpoint_dir is required")
        if self.data.is_training:
            raise ValueError("EvalConfig.data must be an evaluation DataConfig (is_training=False)")
        if self.eval_logdir is None:
            from deeplab.modeling.inference import default_output_dir

            logdir = default_output_dir(self.checkpoint_dir, "eval")
            object.__setattr__(self, "eval_logdir", logdir)


def evaluate_checkpoint(config: EvalConfig) -> List[Dict[str, object]]:
    """Runs the evaluation job of `config`; returns the results of each checkpoint evaluated
    (`loop.evaluate`). Raises `deeplab.checkpoints.CheckpointError` for a checkpoint that
    cannot be loaded into the model (a damaged one of a training dir falls back to the one
    before it, `polling.load_readable`) and BadEvalDataError for a bad example."""
    import tensorflow as tf

    from deeplab.data.pipeline import build_dataset, split_size
    from deeplab.data.validate import stopped_by_bad_example
    from deeplab.evaluation import loop
    from deeplab.evaluation import results as results_lib
    from deeplab.evaluation.checkpoint_loop import each_checkpoint
    from deeplab.evaluation.metrics import format_iou_table

    options, data, settings = config.model_options, config.data, config.settings
    info = data.dataset_info()
    num_images = split_size(data.dataset_name, data.dataset_dir, data.split)
    writer = None  # created with the first results: nothing is written before
    tag = results_lib.metric_tag(settings.eval_scales, settings.add_flipped_images)
    class_names = None
    if info is not None and len(info.class_names) >= options.num_classes:
        class_names = info.class_names[: options.num_classes]
    all_results = []
    step_fn = None  # the eval step, traced once for the model of every checkpoint
    for model, prefix, step in each_checkpoint(config, config.max_number_of_evaluations):
        if step_fn is None:
            step_fn = loop.make_eval_step(model, options.num_classes, data.ignore_label, settings)
        try:
            results = loop.evaluate(
                model,
                build_dataset(data),
                options.num_classes,
                data.ignore_label,
                settings,
                class_names=class_names,
                max_batches=config.max_eval_batches,
                step_fn=step_fn,
                num_batches=-(-num_images // data.batch_size) if num_images else None,
            )
        except tf.errors.OpError as err:
            stopped = f"Evaluation of {prefix} stopped; nothing was written for it."
            message = stopped_by_bad_example(err, data, options.num_classes, stopped)
            if message is None:
                raise
            raise BadEvalDataError(message) from None
        extra = dict(
            checkpoint=prefix,
            step=step,
            dataset=data.dataset_name,
            eval_split=data.split,
            eval_crop_size=list(data.crop_size),
            metric_tag=tag,
        )
        paths = results_lib.write_result_files(
            results, config.eval_logdir, output_json=config.output_json, **extra
        )
        writer = writer or tf.summary.create_file_writer(config.eval_logdir)
        results_lib.write_summaries(writer, results, step)
        with open(os.path.join(config.eval_logdir, "eval_history.jsonl"), "a") as f:
            record = results_lib.results_to_json(
                {k: v for k, v in results.items() if k != "confusion_matrix"}, **extra
            )
            f.write(json.dumps(record, allow_nan=False) + "\n")
        print(
            format_iou_table(
                results,
                results["class_names"],
                title=f"{data.dataset_name}/{data.split}, {prefix} (step {step}), "
                f"{results['num_images']} images, scales {list(settings.eval_scales)}"
                + (", flipped" if settings.add_flipped_images else ""),
            )
        )
        print(
            f"eval/{tag}_overall: {100 * results['miou']:.2f}%  results: "
            f"{paths['json']}, {paths['confusion_png']}",
            flush=True,
        )
        all_results.append(results)
    return all_results
