"""The official TF1 graph's speed, as a fraction of the dense matmul speed of its own run.

`official_timings.json` (a copy of the project's reference file; the file in
`../shared/reference/` is preferred when it exists) holds the official research/deeplab graph's
times on the two CPU kinds this project runs on, each with the float32 matmul GFLOP/s of the same
run: at its top level an AVX2 AMD EPYC Zen 3, under `avx512_machine` an AMD EPYC with AVX-512,
AVX512_BF16 and VNNI. A figure from one machine compares with another only that way: our
fraction of matmul over the official fraction is our speed relative to the official graph's,
normalised by matmul. Both fractions use the oneDNN float32 matmul (the faster yardstick) as the
reference. Fractions of matmul differ between the two kinds (the official graph reaches more of
matmul on AVX-512), so a run compares with the entry of its own CPU kind (`choose_entry`), and
with none on a CPU of neither kind.
"""

from __future__ import annotations

import json
import os
from typing import Dict, Iterable, Optional

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


AVX512_ENTRY = "avx512_machine"
TOP_LEVEL_ENTRY = "top level (AVX2)"
# The CPU flags that make a CPU of each kind (as /proc/cpuinfo spells them).
AVX512_KIND_FLAGS = ("avx512f", "avx512_bf16", "avx512_vnni")
AVX2_KIND_FLAGS = ("avx2", "fma")


def choose_entry(timings: Optional[Dict[str, object]], simd: Iterable[str]) -> Dict[str, object]:
    """The entry of the official timings that a run on a CPU with the flags `simd` compares with.

    avx512f + avx512_bf16 + avx512_vnni: `avx512_machine`; avx2 + fma without avx512f: the top
    level (AVX2). Any other CPU (AVX-512 without BF16 or VNNI, or no AVX2) is of neither kind:
    no entry, because fractions of matmul do not carry over between CPU kinds. Returns
    {"entry": the entry's name or None, "reason": one line naming the flags, "flags": the
    deciding flags this CPU has, "timings": the entry's figures or None}.
    """
    simd = set(simd)
    flags = [f for f in AVX2_KIND_FLAGS + AVX512_KIND_FLAGS if f in simd]
    have = " ".join(flags) or "none of " + " ".join(AVX2_KIND_FLAGS + AVX512_KIND_FLAGS)
    entry, reason = None, ""
    if set(AVX512_KIND_FLAGS) <= simd:
        entry, reason = AVX512_ENTRY, f"this CPU has {have}: the AVX-512 BF16/VNNI kind"
    elif "avx512f" in simd:
        missing = " ".join(f for f in AVX512_KIND_FLAGS if f not in simd)
        reason = (
            f"this CPU has {have} but not {missing}: AVX-512 of neither timed kind "
            "(AVX2 Zen 3; AVX-512 with BF16 and VNNI), so no speed vs official"
        )
    elif set(AVX2_KIND_FLAGS) <= simd:
        entry, reason = TOP_LEVEL_ENTRY, f"this CPU has {have} and no avx512f: the AVX2 kind"
    else:
        reason = (
            f"this CPU has {have}: neither timed kind (AVX2 Zen 3; AVX-512 with BF16 and "
            "VNNI), so no speed vs official"
        )
    figures = None
    if timings is None:
        entry, reason = None, "no official timings file found, so no speed vs official"
    elif entry == AVX512_ENTRY:
        figures = timings.get(AVX512_ENTRY)
        if figures is None:
            entry, reason = (
                None,
                f"{reason}, but the timings file has no {AVX512_ENTRY} entry, so no speed vs official",
            )
    elif entry == TOP_LEVEL_ENTRY:
        figures = timings
    return {"entry": entry, "reason": reason, "flags": flags, "timings": figures}


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
