"""Peak memory of a benchmark case: each case runs in a child process, and the parent reads the
child's peak resident set size (ru_maxrss) from `os.wait4`.

A case is a function `module:function` called with JSON keyword arguments in a child
`python -m benchmarks.memory module:function '<json kwargs>'`, which prints one line
`BENCHMARK_RESULT <json>` with the function's dict (see `emit`).
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from typing import Dict, Optional

MARKER = "BENCHMARK_RESULT "


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, MiB (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def emit(result: Dict[str, object]) -> None:
    """Prints a child's result line (with its own peak RSS)."""
    result = dict(result, peak_rss_mb_self=round(peak_rss_mb(), 1))
    print(MARKER + json.dumps(result), flush=True)


def run_case(
    target: str,
    kwargs: Dict[str, object],
    env: Optional[Dict[str, str]] = None,
    timeout: Optional[float] = None,
) -> Dict[str, object]:
    """Runs `target` ("module:function") in a child; returns its dict plus `peak_rss_mb`.

    On failure the result has `error` (the tail of the child's output).
    """
    child_env = dict(os.environ)
    child_env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    child_env.update(env or {})
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    child_env["PYTHONPATH"] = root + os.pathsep + child_env.get("PYTHONPATH", "")
    with tempfile.TemporaryFile(mode="w+") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.memory", target, json.dumps(kwargs)],
            cwd=root,
            env=child_env,
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )
        start = time.monotonic()
        while True:  # os.wait4 (not Popen.wait) so that the child's rusage is ours to read
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if timeout is not None and time.monotonic() - start > timeout:
                proc.kill()
                _, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.2)
        proc.returncode = os.waitstatus_to_exitcode(status)
        log.seek(0)
        output = log.read()
    result: Dict[str, object] = {}
    for line in output.splitlines():
        if line.startswith(MARKER):
            result = json.loads(line[len(MARKER) :])
    if not result:
        result = {"error": f"exit {proc.returncode}: " + output[-1500:]}
    result["peak_rss_mb"] = round(usage.ru_maxrss / 1024.0, 1)
    return result


def _child_main(argv) -> None:
    import importlib

    module, function = argv[1].split(":")
    kwargs = json.loads(argv[2]) if len(argv) > 2 else {}
    emit(getattr(importlib.import_module(module), function)(**kwargs))


if __name__ == "__main__":
    _child_main(sys.argv)
