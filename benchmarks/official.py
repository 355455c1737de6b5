"""The official TF1 graph's speed, as a fraction of the dense matmul speed of its own run.

`official_timings.json` (a copy of the project's reference file; the file in
`../shared/reference/` is preferred when it exists) holds the official research/deeplab graph's
times on this project's machine kind, each with the float32 matmul GFLOP/s of the same run. A
figure from one machine compares with another only that way: our fraction of matmul over the
official fraction is our speed relative to the official graph's, normalised by matmul.
Both fractions use the oneDNN float32 matmul (the faster yardstick) as the reference.
"""

from __future__ import annotations

import json
import os
from typing import Dict, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
FILENAME = "official_timings.json"
SHARED_PATH = os.path.join(HERE, "..", "..", "shared", "reference", FILENAME)
BUNDLED_PATH = os.path.join(HERE, FILENAME)


def timings_path() -> str:
    """../shared/reference/official_timings.json when present, else the copy in benchmarks/."""
    return os.path.normpath(SHARED_PATH if os.path.exists(SHARED_PATH) else BUNDLED_PATH)


def load_timings(path: Optional[str] = None) -> Dict[str, object]:
    """The official timings (see the module docstring); `path` overrides the lookup."""
    with open(path or timings_path()) as f:
        return json.load(f)


def official_fraction(
    timings: Dict[str, object], group: str, result: Dict[str, object]
) -> Optional[float]:
    """The official graph's fraction of matmul for the case a benchmark result measured.

    group "inference": `variant`, `output_stride`, `crop` 513, `batch` 1. group "training":
    xception_65 OS 16, `batch` 4, `crop` 321 or 513 (3x the forward Mult-Adds, as ours).
    None where the official graph was not timed.
    """
    if group == "inference":
        if result.get("crop") != 513 or result.get("batch", 1) != 1:
            return None
        key = f"{result.get('variant')}_os{result.get('output_stride')}"
        entry = timings.get("inference_513", {}).get(key)
        return entry["official_fraction_of_matmul"] if entry else None
    if group == "training":
        if (result.get("variant"), result.get("output_stride"), result.get("batch")) != (
            "xception_65",
            16,
            4,
        ):
            return None
        entries = timings.get("training_xception_65_os16_batch4", {})
        entry = entries.get(f"crop_{result.get('crop')}")
        return entry["official_fraction_of_matmul_3x_forward"] if entry else None
    return None
