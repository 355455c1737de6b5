"""Random, well-conditioned BatchNorm statistics for numerical comparisons (the inference
rewrites, bfloat16 and LiteRT against float32; used by tests and benchmarks)."""

from __future__ import annotations

import keras
import numpy as np


def randomize_batch_norms(model, seed: int = 0) -> None:
    """Gives every BatchNorm random but well-conditioned statistics and scales.

    A freshly built model has unit variance / zero mean BatchNorms and logits ~1e-9 that drown
    in rounding; with gamma ~ U(0.5, 1.5), beta ~ N(0, 0.2), mean ~ N(0, 0.2),
    variance ~ U(0.5, 2) the activations stay O(1) through the network, so the folded and
    bfloat16 agreements with float32 are meaningful figures.
    """
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            c = layer.gamma.shape[0]
            layer.gamma.assign(rng.uniform(0.5, 1.5, c).astype(np.float32))
            layer.beta.assign(rng.normal(0.0, 0.2, c).astype(np.float32))
            layer.moving_mean.assign(rng.normal(0.0, 0.2, c).astype(np.float32))
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, c).astype(np.float32))
