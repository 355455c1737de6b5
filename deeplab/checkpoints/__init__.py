"""Checkpoints: official TF1 loading (and our own), the mismatch explanation, which checkpoint
eval/vis read, and the run's `model_options.json`.

The public API of the official loader is available here:
`from deeplab.checkpoints import load_official_checkpoint`. It is loaded on first use, so
`deeplab.checkpoints.run_options` and `.polling` stay importable without TensorFlow.
"""

_OFFICIAL = (
    "CheckpointError",
    "CheckpointMismatchError",
    "CheckpointUnreadableError",
    "LoadReport",
    "load_checkpoint",
    "load_official_checkpoint",
    "official_variables",
    "resolve_checkpoint_prefix",
)
__all__ = list(_OFFICIAL)


def __getattr__(name):
    if name in _OFFICIAL:
        from deeplab.checkpoints import official

        return getattr(official, name)
    raise AttributeError(f"module 'deeplab.checkpoints' has no attribute {name!r}")
