"""Export for serving: SavedModel, the official frozen graph, LiteRT float / int8,
numerics-preserving inference rewrites and quantization-aware training; `export(ExportConfig)`
(deeplab.export.runner) is the export job of export.py."""

__all__ = ["ExportConfig", "export"]


def __getattr__(name):
    # Lazily, so that importing one export module does not import them all.
    if name in __all__:
        from deeplab.export import runner

        return getattr(runner, name)
    raise AttributeError(f"module 'deeplab.export' has no attribute {name!r}")
