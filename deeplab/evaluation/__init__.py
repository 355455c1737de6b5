"""Evaluation: the loop over an eval set, streaming metrics (mIoU), results (table, JSON,
confusion matrix, TensorBoard), visualisation and label colour maps; `evaluate_checkpoint(
EvalConfig)` (deeplab.evaluation.runner) is the evaluation job of eval.py."""

__all__ = ["EvalConfig", "evaluate_checkpoint"]


def __getattr__(name):
    # Lazily: deeplab.data imports the colour maps of this package, and the runner imports
    # deeplab.data.
    if name in __all__:
        from deeplab.evaluation import runner

        return getattr(runner, name)
    raise AttributeError(f"module 'deeplab.evaluation' has no attribute {name!r}")
