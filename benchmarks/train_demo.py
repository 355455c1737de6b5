"""Runs the README demo end to end and prints its wall time and val mIoU as JSON.

The demo is the quickstart's main job, three commands run from a fresh working directory:

  python datasets/build_synthetic_data.py --output_dir=data/synthetic
  python train.py --train_logdir=runs/demo
  python eval.py --checkpoint_dir=runs/demo --max_number_of_evaluations=1

(train.py's defaults for the synthetic dataset: MobileNetV2, 129x129 crops, batch 8, see
`train.SYNTHETIC_PRESET`.) Usage:

  python benchmarks/train_demo.py [--workdir=DIR] [--extra_train_flags="--seed=1 ..."]

`run(...)` returns the same figures as a dict. Nothing here is used by the tests.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Dict, Optional, Sequence

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def demo_commands(extra_train_flags: Sequence[str] = ()) -> Dict[str, list]:
    """The three README commands (relative paths, run from the working directory)."""
    return {
        "build": ["datasets/build_synthetic_data.py", "--output_dir=data/synthetic"],
        "train": ["train.py", "--train_logdir=runs/demo"] + list(extra_train_flags),
        "eval": [
            "eval.py",
            "--checkpoint_dir=runs/demo",
            "--max_number_of_evaluations=1",
            "--output_json=runs/demo/eval/demo_results.json",
        ],
    }


def _run(script_and_args, cwd, env, log):
    script, *args = script_and_args
    cmd = [sys.executable, os.path.join(ROOT, script)] + args
    start = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.run(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        with open(log) as f:
            tail = f.read()[-4000:]
        raise RuntimeError(
            f"{' '.join(shlex.quote(c) for c in cmd)} failed ({proc.returncode}):\n{tail}"
        )
    return seconds


def run(
    workdir: Optional[str] = None, extra_train_flags: Sequence[str] = (), keep: bool = False
) -> Dict[str, object]:
    """Builds the data, trains and evaluates in `workdir` (a fresh temp dir by default)."""
    own = workdir is None
    workdir = workdir or tempfile.mkdtemp(prefix="deeplab_demo_")
    os.makedirs(workdir, exist_ok=True)
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    commands = demo_commands(extra_train_flags)
    times = {}
    try:
        for name in ("build", "train", "eval"):
            times[name] = _run(commands[name], workdir, env, os.path.join(workdir, f"{name}.log"))
        with open(os.path.join(workdir, "runs", "demo", "eval", "demo_results.json")) as f:
            results = json.load(f)
    finally:
        if own and not keep:
            shutil.rmtree(workdir, ignore_errors=True)
    return {
        "wall_seconds": round(sum(times.values()), 1),
        "build_seconds": round(times["build"], 1),
        "train_seconds": round(times["train"], 1),
        "eval_seconds": round(times["eval"], 1),
        "val_miou": round(float(results["miou"]), 4),
        "val_pixel_accuracy": round(float(results["pixel_accuracy"]), 4),
        "step": results.get("step"),
        "cpu_count": os.cpu_count(),
        "commands": [" ".join(["python"] + c) for c in commands.values()],
        "workdir": workdir if (keep or not own) else None,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--workdir",
        default=None,
        help="working directory (default: a temp dir, removed afterwards)",
    )
    parser.add_argument(
        "--extra_train_flags", default="", help="more train.py flags, e.g. '--seed=1'"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temp working directory")
    args = parser.parse_args(argv)
    result = run(args.workdir, shlex.split(args.extra_train_flags), keep=args.keep)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
