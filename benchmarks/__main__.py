"""`python -m benchmarks`: speed and memory of every path that costs time, in one report.

    python -m benchmarks [--quick] [--only=matmul,inference,training,input,litert]
                         [--output_json=report.json] [--xla] [--gpu]

Prints a readable table and one JSON object (also written to --output_json). Every case runs
in its own subprocess (its peak resident memory is read with wait4, and its oneDNN setting is
its own). "before" is the Keras model as built, under TensorFlow's defaults; "after" is the
optimised path: oneDNN on (TF_ENABLE_ONEDNN_OPTS=1; TF leaves it off by default on CPUs
without AVX512_VNNI / AVX512_BF16 / AMX) and, for inference, BatchNorm folded into the convs
with fused ReLUs (deeplab.optimize), for training the 1x1 convs as MatMuls (the trainer's
default, deeplab.training.pointwise_matmul). Achieved GFLOP/s = 2 x Mult-Adds / time (3x that
for a training step), given as a fraction of the dense float32 matmul GFLOP/s (oneDNN, n=3072,
as in the official timings) measured in the same run, at its start and again at its end (the
faster of the two counts, so a slow moment of the machine cannot flatter the models); "per
CPU-second" figures divide by process CPU time instead of wall time, which holds up when other
work shares the machine.

Against the official TF1 graph: `benchmarks/official.py` reads the official graph's fraction of
matmul (../shared/reference/official_timings.json, else the copy in benchmarks/) from the entry
of this CPU's kind, chosen by its flags (avx512f + avx512_bf16 + avx512_vnni: `avx512_machine`;
avx2 + fma without avx512f: the top level; any other CPU: none, and no "vs official" figures),
and each case shows ours / official, the speed vs official normalised by matmul. The report
names the entry and the flags that chose it. No absolute time from another run is compared.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Dict, List, Optional

from benchmarks import cpu_info, load_average, official, onednn_bfloat16_blocker
from benchmarks.memory import run_case

ONEDNN_ON = {"TF_ENABLE_ONEDNN_OPTS": "1"}
DEFAULT_ENV: Dict[str, str] = {}


def _cases(args) -> List[Dict[str, object]]:
    quick = args.quick
    only = (
        set(args.only.split(","))
        if args.only
        else {"matmul", "inference", "training", "input", "litert"}
    )
    cases: List[Dict[str, object]] = []

    def add(group, label, target, kwargs, env):
        if group in only:
            cases.append(
                {"group": group, "label": label, "target": target, "kwargs": kwargs, "env": env}
            )

    # The official timings file's yardstick is an n=3072 matmul; quick runs use it too (a few
    # seconds): n=2048 runs about 4% slower here and would flatter every fraction of matmul.
    matmul_kwargs = {"n": 3072, "runs": 3 if quick else 5}
    add("matmul", "matmul default", "benchmarks.matmul:run", matmul_kwargs, DEFAULT_ENV)
    add("matmul", "matmul oneDNN", "benchmarks.matmul:run", matmul_kwargs, ONEDNN_ON)
    models = (
        [("xception_65", 16), ("mobilenet_v2", 16)]
        if quick
        else [("xception_65", 16), ("xception_65", 8), ("mobilenet_v2", 16)]
    )
    for variant, stride in models:
        runs = 3 if quick else (2 if stride == 8 else 7)
        if variant == "mobilenet_v2":
            runs = 10 if quick else 20
        base = {"variant": variant, "output_stride": stride, "runs": runs, "warmup": 1}
        add(
            "inference",
            "before: float32 Keras",
            "benchmarks.inference:run",
            {**base, "optimized": False},
            DEFAULT_ENV,
        )
        if not quick and stride == 16:
            add(
                "inference",
                "float32 Keras + oneDNN",
                "benchmarks.inference:run",
                {**base, "optimized": False},
                ONEDNN_ON,
            )
        add(
            "inference",
            "after: float32 folded + oneDNN",
            "benchmarks.inference:run",
            {**base, "optimized": True},
            ONEDNN_ON,
        )
        add(
            "inference",
            "bfloat16 folded + oneDNN",
            "benchmarks.inference:run",
            {**base, "optimized": True, "precision": "bfloat16", "runs": max(2, runs // 2)},
            ONEDNN_ON,
        )
        if args.gpu:
            add(
                "inference",
                "float16 folded",
                "benchmarks.inference:run",
                {**base, "optimized": True, "precision": "float16"},
                ONEDNN_ON,
            )
        if args.xla and stride == 16:
            add(
                "inference",
                "float32 folded + XLA",
                "benchmarks.inference:run",
                {**base, "optimized": True, "jit": True, "runs": 2},
                DEFAULT_ENV,
            )
    trainings = [(321, 4)] if quick else [(321, 4), (321, 8), (513, 4), (513, 8)]
    for crop, batch in trainings:
        # The first call traces; one more untimed step lets oneDNN create its primitives (in a
        # quick run the step right after tracing read 25% slower than later ones).
        base = {"crop": crop, "batch": batch, "steps": 1 if quick else 2, "warmup": 1}
        if batch == 4:
            add(
                "training",
                "before: float32",
                "benchmarks.training_step:run",
                {**base, "pointwise_matmul": False},
                DEFAULT_ENV,
            )
        add("training", "after: float32 + oneDNN", "benchmarks.training_step:run", base, ONEDNN_ON)
        if not quick and crop == 321 and batch == 4:
            add(
                "training",
                "mixed_bfloat16 + oneDNN",
                "benchmarks.training_step:run",
                {**base, "precision": "mixed_bfloat16"},
                ONEDNN_ON,
            )
    # LiteRT (ai-edge-litert, XNNPACK, 2 threads): the exported float32 and int8 models,
    # interleaved with the matmul and the TensorFlow path in one process.
    for variant, rounds in (
        ("mobilenet_v2", 10 if quick else 20),
        ("xception_65", 3 if quick else 5),
    ):
        add(
            "litert",
            "LiteRT XNNPACK",
            "benchmarks.litert:run",
            # Calibration images set the int8 model's ranges only (latency does not depend on
            # them); the int8 accuracy is the demo case's.
            {
                "variant": variant,
                "output_stride": 16,
                "rounds": rounds,
                "num_calibration_images": 4,
            },
            ONEDNN_ON,
        )
    add(
        "litert",
        "int8 vs float32 LiteRT, demo val",
        "benchmarks.litert_accuracy:run",
        {"run_dir": os.path.abspath(args.demo_run), "dataset_dir": os.path.abspath(args.demo_data)},
        ONEDNN_ON,
    )
    input_kwargs = {
        "crop_size": 513,
        "batch_size": 8,
        "num_batches": 5 if quick else 15,
        "warmup_batches": 2,
        "num_images": 32 if quick else 64,
    }
    add(
        "input",
        "decode + augment (crop 513)",
        "benchmarks.input_pipeline:run",
        input_kwargs,
        DEFAULT_ENV,
    )
    if len(cases) > 2:
        # Measured again after the models: the faster of the two is the yardstick.
        add(
            "matmul", "matmul oneDNN, at the end", "benchmarks.matmul:run", matmul_kwargs, ONEDNN_ON
        )
    return cases


# Peak resident memory of xception_65 OS 16 float32 training steps, measured: about 5.2 GB at
# crop 321 batch 4 and 8.4 GB at crop 321 batch 8, so roughly 2 GB fixed plus 7.8 kB per
# input pixel (9.4 GB measured at crop 513 batch 4, where this gives 10.2 GB).
TRAINING_RSS_MB_FIXED = 2000.0
TRAINING_RSS_MB_PER_PIXEL = 7.8e-3


def training_memory_mb(crop: int, batch: int) -> float:
    """Estimated peak RSS of a training case (for skipping what cannot fit)."""
    return TRAINING_RSS_MB_FIXED + TRAINING_RSS_MB_PER_PIXEL * crop * crop * batch


def skip_reason(case: Dict[str, object], gpu: bool = False) -> Optional[str]:
    """Why a case is not run on this machine (None: run it): a training case whose estimated
    memory does not fit, or a bfloat16 case under oneDNN on a CPU without AVX-512."""
    kwargs = case["kwargs"]
    if case["group"] == "training":
        needed, available = (
            training_memory_mb(kwargs["crop"], kwargs["batch"]),
            available_memory_mb(),
        )
        if needed > 0.9 * available:
            return f"skipped: needs ~{needed:.0f} MB, {available:.0f} MB available"
    onednn = case["env"].get("TF_ENABLE_ONEDNN_OPTS") == "1"
    if "bfloat16" in str(kwargs.get("precision", "")) and onednn and not gpu:
        blocker = onednn_bfloat16_blocker()
        if blocker:
            return f"skipped: {blocker}"
    return None


def available_memory_mb() -> float:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return float("inf")


def _input_pipeline_present() -> bool:
    return os.path.exists(os.path.join(os.path.dirname(__file__), "input_pipeline.py"))


def _matmul_reference(results) -> Optional[Dict[str, float]]:
    """The run's float32 matmul figure that model cases are measured against: the oneDNN one
    (as in the official timings file), else TF's default one; of several measurements (at the
    start and the end of a run) the fastest, so that a slow moment of the machine during the
    yardstick cannot inflate the model cases' fractions of matmul."""
    found: Dict[bool, Dict[str, float]] = {}
    for case in results:
        r = case["result"]
        if case["group"] == "matmul" and "float32" in r:
            onednn = bool(r.get("onednn"))
            if onednn not in found or r["float32"]["gflops"] > found[onednn]["gflops"]:
                found[onednn] = r["float32"]
    return found.get(True) or found.get(False)


def _annotate(results, timings) -> None:
    """Adds each model case's fraction of matmul, the official graph's fraction for the same
    case, and their ratio: the speed vs official, normalised by matmul."""
    ref = _matmul_reference(results)
    for case in results:
        r = case["result"]
        if case["group"] not in ("inference", "training", "litert") or "error" in r:
            continue
        if "gflops" not in r and "paths" not in r:  # an accuracy case: no speed figures
            continue
        group = "training" if case["group"] == "training" else "inference"
        off = official.official_fraction(timings, group, r) if timings else None
        # A LiteRT case times several paths of one model (each with its own figures).
        for figures in r["paths"].values() if "paths" in r else [r]:
            if ref:
                figures["fraction_of_matmul"] = figures["gflops"] / ref["gflops"]
                figures["fraction_of_matmul_per_cpu_s"] = (
                    figures["gflops_per_cpu_s"] / ref["gflops_per_cpu_s"]
                )
            if off:
                figures["official_fraction_of_matmul"] = off
                if ref:
                    figures["speed_vs_official"] = figures["fraction_of_matmul"] / off


def _fmt(value, spec):
    return "-" if value is None else format(value, spec)


def _last_line(text: str) -> str:
    """One line of an error: its first line for a skip, the child's last line for a failure."""
    lines = [line for line in str(text).strip().splitlines() if line.strip()]
    if not lines:
        return "error"
    return (lines[0] if len(lines) == 1 else lines[0][:40] + " ... " + lines[-1])[:160]


def _model_label(case) -> str:
    kw = case["kwargs"]
    if case["group"] == "training":
        return f"x65 OS16 crop{kw.get('crop')} b{kw.get('batch')}"
    if case["group"] == "inference":
        return f"{kw.get('variant')} OS{kw.get('output_stride')} 513"
    return ""


def _model_row(group: str, label: str, model: str, r) -> str:
    """One table row of a model case (inference, training, or a LiteRT path)."""
    per_item = r["wall_s_median"] / r.get("batch", 1)
    return (
        f"{group:<9} {label:<32} {model:<22} {per_item:>10.3f} {1 / per_item:>8.2f} "
        f"{r['cpu_s_median']:>7.2f} {r['gflops']:>8.1f} "
        f"{_fmt(r.get('fraction_of_matmul', None) and 100 * r['fraction_of_matmul'], '5.0f')} "
        f"{_fmt(r.get('fraction_of_matmul_per_cpu_s') and 100 * r['fraction_of_matmul_per_cpu_s'], '7.0f')} "
        f"{r.get('peak_rss_mb', 0.0):>7.0f} "
        f"{_fmt(r.get('official_fraction_of_matmul') and 100 * r['official_fraction_of_matmul'], '7.0f')} "
        f"{_fmt(r.get('speed_vs_official'), '6.2f')} "
        f"{_fmt(r.get('argmax_agreement'), '6.4f')}"
    )


def official_entry_line(choice) -> str:
    """The report's line saying which official timings entry the run compares with, and why."""
    if choice["entry"] is None:
        return f"vs official: none ({choice['reason']})"
    return f"vs official: entry {choice['entry']} of the official timings ({choice['reason']})"


def format_report(report) -> str:
    lines = []
    m = report["machine"]
    lines.append(
        f"machine: {m['cpu_model']}, {m['cpu_count']} CPUs, SIMD {' '.join(m['simd'])}"
        f" (AVX512_BF16: {m['avx512_bf16']}), TF {m.get('tensorflow', '?')}, "
        f"load average {m['load_start']:.1f} at start, {m['load_end']:.1f} at end"
    )
    if "official_entry" in report:
        lines.append(official_entry_line(report["official_entry"]))
    header = (
        f"{'group':<9} {'case':<32} {'model':<22} {'time/item':>10} {'items/s':>8} "
        f"{'cpu s':>7} {'GFLOP/s':>8} {'%mm':>5} {'%mm cpu':>7} {'RSS MB':>7} "
        f"{'TF1 %mm':>7} {'vs TF1':>6} {'agree':>6}"
    )
    lines += [header, "-" * len(header)]
    for case in report["cases"]:
        r = case["result"]
        group = case["group"]
        if "error" in r:
            lines.append(
                f"{group:<9} {case['label']:<32} {_model_label(case):<22} {_last_line(r['error'])}"
            )
            continue
        if group == "matmul":
            for dtype in ("float32", "bfloat16"):
                if dtype not in r:
                    continue
                d = r[dtype]
                row = f"{group:<9} {case['label'] + ' ' + dtype:<32} {'n=' + str(r['n']):<22} "
                if "skipped" in d:
                    lines.append(row + f"skipped: {d['skipped']}")
                    continue
                lines.append(
                    row + f"{d['wall_s_median']:>10.3f} {'':>8} {'':>7} {d['gflops']:>8.1f} "
                    f"{'':>5} {'cpu ' + format(d['gflops_per_cpu_s'], '.0f'):>7} "
                    f"{r['peak_rss_mb']:>7.0f}"
                )
            continue
        if group == "input":
            lines.append(
                f"{group:<9} {case['label']:<32} {'batch ' + str(r.get('batch_size')):<22}"
                f" {1 / r['images_per_s']:>10.3f} {r['images_per_s']:>8.2f} {'':>7} "
                f"{'':>8} {'':>5} {'':>7} {r['peak_rss_mb']:>7.0f}"
            )
            continue
        if group == "litert" and "paths" not in r:
            lines.append(
                f"{group:<9} {case['label']:<32} {r['variant'] + ' demo':<22} agreement "
                f"{r['argmax_agreement_int8_vs_float32']:.4f}, mIoU int8 {100 * r['miou_int8']:.2f}"
                f" vs float32 {100 * r['miou_float32']:.2f} ({r['images']} {r['split']} images, "
                f"{r['input_size'][0]}x{r['input_size'][1]}); float32 vs Keras "
                f"{r['argmax_agreement_float32_vs_keras']:.4f}"
            )
            continue
        if group == "litert":
            model = f"{r['variant']} OS{r['output_stride']} {r['crop']}"
            for name, figures in r["paths"].items():
                figures = dict(figures, peak_rss_mb=r["peak_rss_mb"])
                lines.append(_model_row(group, f"{case['label']}: {name}", model, figures))
            extra = [f"in-process matmul {r['matmul_gflops_in_process']:.0f} GFLOP/s"]
            if "int8_speedup_vs_float32" in r:
                extra.append(
                    f"int8 / float32 LiteRT speed {r['int8_speedup_vs_float32']:.2f}x "
                    f"(per CPU-s {r['int8_speedup_vs_float32_cpu']:.2f}x)"
                )
            for name, figures in r["paths"].items():
                if "delegation" in figures:
                    d = figures["delegation"]
                    extra.append(
                        f"{name}: XNNPACK runs {d['delegated_ops']}/{d['ops']} ops (not: "
                        f"{' '.join(d['not_delegated']) or 'none'})"
                    )
            if "litert_speedup_vs_tensorflow" in r:
                extra.append(f"LiteRT / TF speed {r['litert_speedup_vs_tensorflow']:.2f}x")
            lines.append(f"{'':<9} {'':<32} {model:<22} " + "; ".join(extra))
            continue
        if group == "inference":
            model = f"{r['variant']} OS{r['output_stride']} {r['crop']}"
        else:
            model = f"x65 OS{r['output_stride']} crop{r['crop']} b{r['batch']}"
        lines.append(_model_row(group, case["label"], model, r))
    lines.append(
        "time/item: wall-clock median s per image; items/s its inverse; cpu s: process "
        "CPU s per call; %mm: achieved GFLOP/s / the run's float32 oneDNN matmul GFLOP/s; "
        "%mm cpu: the same per CPU-second; TF1 %mm: the official TF1 graph's fraction of its "
        "run's matmul (" + report.get("official_timings", "no official timings") + "); "
        "vs TF1: speed vs official (normalised by matmul) = %mm / TF1 %mm; agree: argmax "
        "agreement with the float32 Keras model"
    )
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="fewer, smaller cases (~3 min)")
    parser.add_argument(
        "--only", default="", help="comma list of groups: matmul,inference,training,input,litert"
    )
    parser.add_argument(
        "--demo_run",
        default="runs/demo",
        help="trained demo run for the int8 accuracy case (the README quickstart's)",
    )
    parser.add_argument(
        "--demo_data", default="data/synthetic", help="the demo run's dataset folder"
    )
    parser.add_argument("--output_json", default="", help="also write the report here")
    parser.add_argument(
        "--xla", action="store_true", help="add XLA (jit_compile) cases (slow to compile on CPU)"
    )
    parser.add_argument("--gpu", action="store_true", help="add float16 cases (for a GPU)")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per case")
    args = parser.parse_args(argv)
    from deeplab.cli import logs as cli_logs

    cli_logs.install()  # the cases run in children; this keeps the report's own stderr quiet
    machine = dict(cpu_info(), load_start=load_average())
    try:
        import importlib.metadata as metadata

        machine["tensorflow"] = metadata.version("tensorflow")
    except Exception:  # pragma: no cover - informational only
        pass
    results = []
    start = time.time()
    for case in _cases(args):
        skipped = skip_reason(case, gpu=args.gpu)
        if case["group"] == "input" and not _input_pipeline_present():
            result = {
                "error": "missing (benchmarks/input_pipeline.py not present)",
                "peak_rss_mb": 0.0,
            }
        elif skipped:
            result = {"error": skipped, "peak_rss_mb": 0.0}
        else:
            result = run_case(case["target"], case["kwargs"], case["env"], timeout=args.timeout)
        result.pop("walls", None)
        case = {
            "group": case["group"],
            "label": case["label"],
            "env": case["env"],
            "kwargs": case["kwargs"],
            "result": result,
        }
        results.append(case)
        brief = {
            k: result.get(k)
            for k in ("wall_s_median", "images_per_s", "peak_rss_mb", "error")
            if k in result
        }
        line = (
            f"[{time.time() - start:6.0f}s] {case['group']}: {case['label']} "
            f"{json.dumps(case['kwargs'])} -> {json.dumps(brief)}"
        )
        print(line if len(line) <= 200 else line[:195] + " ...", file=sys.stderr, flush=True)
    machine["load_end"] = load_average()
    timings_file = official.timings_path()
    timings = official.load_timings(timings_file) if os.path.exists(timings_file) else None
    choice = official.choose_entry(timings, machine["simd"])
    _annotate(results, choice.pop("timings"))
    training = [
        c["result"] for c in results if c["group"] == "training" and "error" not in c["result"]
    ]
    inputs = [c["result"] for c in results if c["group"] == "input" and "error" not in c["result"]]
    summary = {}
    if training and inputs:
        best = max(r["images_per_s"] for r in training)
        summary["input_over_training"] = inputs[0]["images_per_s"] / best
    report = {
        "machine": machine,
        "official_timings": timings_file if timings else "none found",
        "official_entry": choice,
        "elapsed_s": time.time() - start,
        "cases": results,
        "summary": summary,
    }
    print(format_report(report))
    if summary:
        print(f"input pipeline / fastest training step: {summary['input_over_training']:.1f}x")
    print(json.dumps(report))
    if args.output_json:
        with open(args.output_json, "w") as f:
            json.dump(report, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
