"""Dense matmul speed of this machine through TensorFlow: the yardstick for model figures.

GFLOP/s = 2 n^3 / t for an n x n by n x n `tf.matmul` in a tf.function (float32, and
bfloat16: fast only where the CPU has AVX512_BF16 / AMX or on a GPU; skipped, with the reason,
where oneDNN is on and the CPU has no AVX-512, since oneDNN aborts there).

    python -m benchmarks.matmul '{"n": 2048}'
"""

from __future__ import annotations

import json
import sys
from typing import Dict, Sequence

from benchmarks import load_average, onednn_bfloat16_blocker, timed_runs
from benchmarks.memory import emit


def run(
    n: int = 2048, dtypes: Sequence[str] = ("float32", "bfloat16"), runs: int = 5, warmup: int = 2
) -> Dict[str, object]:
    import tensorflow as tf
    from tensorflow.python.util import _pywrap_util_port

    result: Dict[str, object] = {
        "n": n,
        "load_before": load_average(),
        "onednn": bool(_pywrap_util_port.IsMklEnabled()),
        "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
        "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads(),
        "device": "GPU" if tf.config.list_physical_devices("GPU") else "CPU",
    }
    flops = 2.0 * n**3
    on_cpu = result["device"] == "CPU"
    blocker = onednn_bfloat16_blocker() if result["onednn"] and on_cpu else None
    for name in dtypes:
        if name == "bfloat16" and blocker:
            result[name] = {"skipped": blocker}
            continue
        dtype = tf.as_dtype(name)
        a = tf.cast(tf.random.normal([n, n]), dtype)
        b = tf.cast(tf.random.normal([n, n]), dtype)
        matmul = tf.function(lambda x, y: tf.reduce_sum(tf.matmul(x, y)[:1, :1]))
        timing = timed_runs(lambda: matmul(a, b).numpy(), runs, warmup)
        result[name] = {
            "gflops": flops / timing["wall_s_median"] / 1e9,
            "gflops_best": flops / timing["wall_s_min"] / 1e9,
            "gflops_per_cpu_s": flops / timing["cpu_s_median"] / 1e9,
            "wall_s_median": timing["wall_s_median"],
        }
    result["load_after"] = load_average()
    return result


if __name__ == "__main__":
    emit(run(**(json.loads(sys.argv[1]) if len(sys.argv) > 1 else {})))
