"""Export for serving: SavedModel, the official frozen graph, LiteRT float / int8,
numerics-preserving inference rewrites and quantization-aware training."""
