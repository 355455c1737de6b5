"""Speed and memory benchmarks: `python -m benchmarks` (see benchmarks/__main__.py).

Helpers shared by the benchmark modules. Light on purpose (no TensorFlow import here): every
case runs in its own subprocess so that its peak memory and its oneDNN setting are its own.

Timing: each case reports the wall-clock median and minimum over several runs after warm-up,
and the process CPU time per run. On a shared machine the wall time grows with other load;
the CPU time hardly does, so the speed ratios to the matmul figure are given both ways.
"""

from __future__ import annotations

import os
import statistics
import time
from typing import Callable, Dict, Iterable, Mapping, Optional, Tuple


def timed_call(fn: Callable[[], object]) -> Tuple[float, float]:
    """(wall seconds, process CPU seconds) of one call of `fn`."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def timed_runs(fn: Callable[[], object], runs: int, warmup: int = 1) -> Dict[str, float]:
    """Calls `fn` `warmup` times, then `runs` times; wall and CPU seconds per call."""
    for _ in range(warmup):
        fn()
    walls, cpus = [], []
    for _ in range(runs):
        wall, cpu = timed_call(fn)
        walls.append(wall)
        cpus.append(cpu)
    return {
        "wall_s_median": statistics.median(walls),
        "wall_s_min": min(walls),
        "cpu_s_median": statistics.median(cpus),
        "runs": runs,
        "walls": walls,
    }


def profile_calls(fn: Callable[[], object], profile_dir: str, calls: int = 1) -> None:
    """Calls `fn` `calls` times under the TensorFlow profiler, writing a trace to `profile_dir`
    (TensorBoard's Profile tab or XProf; `python -m benchmarks.op_profile DIR` sums it up)."""
    import tensorflow as tf

    tf.profiler.experimental.start(profile_dir)
    try:
        for _ in range(calls):
            fn()
    finally:
        tf.profiler.experimental.stop()


# oneDNN ISA caps (ONEDNN_MAX_CPU_ISA, formerly DNNL_MAX_CPU_ISA) below AVX-512.
_ISA_CAPS_BELOW_AVX512 = ("SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2")


def onednn_bfloat16_blocker(
    simd: Optional[Iterable[str]] = None, environ: Optional[Mapping[str, str]] = None
) -> Optional[str]:
    """Why oneDNN cannot run bfloat16 kernels on this CPU, or None when it can.

    oneDNN's bfloat16 kernels need AVX-512 (avx512bw/vl/dq). Without it, creating a bfloat16
    primitive aborts the whole process (an uncatchable C++ error), so on an AVX2 machine,
    such as this project's reference machine kind, bfloat16 cases are skipped, not tried.
    `simd` defaults to this CPU's flags (`cpu_info()["simd"]`), `environ` to os.environ.
    """
    simd = set(cpu_info()["simd"] if simd is None else simd)
    environ = os.environ if environ is None else environ
    for var in ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA"):
        cap = environ.get(var, "").strip().upper()
        if cap in _ISA_CAPS_BELOW_AVX512:
            return f"{var}={cap} keeps oneDNN below AVX-512, which its bfloat16 kernels need"
    missing = sorted({"avx512bw", "avx512vl", "avx512dq"} - simd)
    if missing:
        return f"oneDNN's bfloat16 kernels need AVX-512; this CPU lacks {' '.join(missing)}"
    return None


def load_average() -> float:
    """1-minute load average (how busy the machine was)."""
    try:
        return os.getloadavg()[0]
    except OSError:
        return float("nan")


def cpu_info() -> Dict[str, object]:
    """CPU model, core count and the SIMD features that matter for TF kernels."""
    model, flags = "unknown", set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and model == "unknown":
                    model = line.split(":", 1)[1].strip()
                elif line.startswith("flags") and not flags:
                    flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    wanted = sorted(f for f in flags if f.startswith(("avx512", "amx")) or f in ("avx2", "fma"))
    return {
        "cpu_model": model,
        "cpu_count": os.cpu_count(),
        "simd": wanted,
        "avx512_bf16": "avx512_bf16" in flags,
        "amx_bf16": "amx_bf16" in flags,
    }
