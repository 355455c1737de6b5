"""Where the time goes: TensorFlow op types ranked by their time in a profiler trace.

    python -m benchmarks.training_step '{"crop": 321, "batch": 4, "steps": 1,
                                         "profile_dir": "profiles/train321"}'
    python -m benchmarks.op_profile profiles/train321 [--top=25] [--by_name] [--json]

The benchmark writes one profiled call (a `tf.profiler` trace, the same that TensorBoard's
Profile tab and XProf open: `tensorboard --logdir profiles/train321` with
tensorboard-plugin-profile installed). This script reads the newest `*.xplane.pb` under the
directory and sums, per op type, the time of the op kernels on the host threads (op events
are named `op_name:OpType`, oneDNN kernels `_Mkl...`; function-call ops, which contain the
others, are left out). With inter-op parallelism two kernels can run at once, so the total may
exceed the wall time.
"""

from __future__ import annotations

import argparse
import collections
import glob
import json
import os
import re
import sys
from typing import Dict, List, Tuple

# Ops whose events enclose other ops' events (function calls and control flow).
_CONTAINER_OPS = re.compile(
    r"(PartitionedCall|StatefulPartitionedCall|While|If|Case|"
    r"__inference_.*)$"
)
_OP_EVENT = re.compile(r"^(?P<name>[^:]+):(?P<type>_?[A-Z][A-Za-z0-9_]*)$")


def newest_trace(directory: str) -> str:
    """The newest `*.xplane.pb` under `directory` (tf.profiler's plugins/profile/<run>/)."""
    paths = glob.glob(os.path.join(directory, "**", "*.xplane.pb"), recursive=True)
    if not paths:
        raise FileNotFoundError(
            f"no *.xplane.pb under {directory} (write one with a benchmark's profile_dir option)"
        )
    return max(paths, key=os.path.getmtime)


def op_times(path: str, by_name: bool = False) -> Tuple[Dict[str, float], Dict[str, int], float]:
    """(seconds per op type, kernel count per op type, traced span in seconds) of a trace;
    keyed by `op type  op name` instead with by_name."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    space = xplane_pb2.XSpace()
    with open(path, "rb") as f:
        space.ParseFromString(f.read())
    seconds: Dict[str, float] = collections.defaultdict(float)
    counts: Dict[str, int] = collections.defaultdict(int)
    begin, end = float("inf"), 0.0
    for plane in space.planes:
        if not plane.name.startswith("/host:"):
            continue
        for line in plane.lines:
            for event in line.events:
                name = plane.event_metadata[event.metadata_id].name
                match = _OP_EVENT.match(name)
                if not match or _CONTAINER_OPS.match(match.group("type")):
                    continue
                start_ps = line.timestamp_ns * 1000 + event.offset_ps
                begin, end = min(begin, start_ps), max(end, start_ps + event.duration_ps)
                key = match.group("type")
                if by_name:
                    key = f"{key}  {match.group('name')}"
                seconds[key] += event.duration_ps * 1e-12
                counts[key] += 1
    if not seconds:
        raise ValueError(f"{path} holds no TensorFlow op events on a host plane")
    return dict(seconds), dict(counts), (end - begin) * 1e-12


def format_table(seconds: Dict[str, float], counts: Dict[str, int], span: float, top: int) -> str:
    total = sum(seconds.values())
    rows: List[str] = [
        f"op time {total:.3f} s over a traced span of {span:.3f} s",
        f"{'ms':>10} {'share':>7} {'kernels':>8}  op",
    ]
    for op, sec in sorted(seconds.items(), key=lambda kv: -kv[1])[:top]:
        rows.append(f"{1e3 * sec:>10.1f} {100 * sec / total:>6.1f}% {counts[op]:>8}  {op}")
    return "\n".join(rows)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.op_profile",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("directory", help="a profile_dir written by a benchmark")
    parser.add_argument("--top", type=int, default=25, help="rows to print")
    parser.add_argument(
        "--by_name", action="store_true", help="rank single ops (type and name) instead of op types"
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    try:
        path = newest_trace(args.directory)
        seconds, counts, span = op_times(path, by_name=args.by_name)
    except (OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps({"trace": path, "span_s": span, "seconds": seconds, "counts": counts}))
    else:
        print(path)
        print(format_table(seconds, counts, span, args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
