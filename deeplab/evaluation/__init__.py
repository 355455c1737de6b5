"""Evaluation: the loop over an eval set, streaming metrics (mIoU), results (table, JSON,
confusion matrix, TensorBoard), visualisation and label colour maps; the jobs of eval.py and
vis.py as library calls: `evaluate_checkpoint(EvalConfig)` (deeplab.evaluation.runner) and
`visualize_checkpoint(VisConfig)` (deeplab.evaluation.vis_runner), which share the checkpoint
loop (deeplab.evaluation.checkpoint_loop)."""

# The public names and the module that defines each.
_EXPORTS = {
    "EvalConfig": "runner",
    "evaluate_checkpoint": "runner",
    "VisConfig": "vis_runner",
    "visualize_checkpoint": "vis_runner",
}
__all__ = list(_EXPORTS)


def __getattr__(name):
    # Lazily: deeplab.data imports the colour maps of this package, and the runners import
    # deeplab.data.
    if name in _EXPORTS:
        import importlib

        module = importlib.import_module(f"deeplab.evaluation.{_EXPORTS[name]}")
        return getattr(module, name)
    raise AttributeError(f"module 'deeplab.evaluation' has no attribute {name!r}")
