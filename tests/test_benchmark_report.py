"""benchmarks: the comparison with the official graph is by fraction of matmul, from the
official timings file, never by absolute times from another machine."""

import json

import pytest

from benchmarks import __main__ as bench
from benchmarks import official


def _case(group, result):
    result = dict(result, n=3072, wall_s_median=0.1, cpu_s_median=0.2, peak_rss_mb=100.0)
    if "float32" in result:
        result["float32"] = dict(result["float32"], wall_s_median=0.3)
    return {"group": group, "label": group, "env": {}, "kwargs": {}, "result": result}


def test_bundled_timings_equal_the_reference_when_present():
    bundled = official.load_timings(official.BUNDLED_PATH)
    assert bundled["inference_513"]["xception_65_os16"]["official_fraction_of_matmul"] > 0
    if official.timings_path() != official.BUNDLED_PATH:
        assert official.load_timings() == bundled


def test_annotate_normalizes_by_the_onednn_matmul(tmp_path):
    timings = {
        "inference_513": {"mobilenet_v2_os16": {"official_fraction_of_matmul": 0.4}},
        "training_xception_65_os16_batch4": {
            "crop_321": {"official_fraction_of_matmul_3x_forward": 0.5}
        },
    }
    path = tmp_path / "t.json"
    path.write_text(json.dumps(timings))
    timings = official.load_timings(str(path))
    matmul = {"float32": {"gflops": 100.0, "gflops_per_cpu_s": 50.0}}
    inference = {"variant": "mobilenet_v2", "output_stride": 16, "crop": 513, "batch": 1}
    results = [
        _case("matmul", dict(matmul, onednn=False)),
        _case("matmul", {"onednn": True, "float32": {"gflops": 200.0, "gflops_per_cpu_s": 100.0}}),
        _case("inference", dict(inference, gflops=120.0, gflops_per_cpu_s=70.0)),
        _case(
            "litert",
            dict(
                inference,
                matmul_gflops_in_process=150.0,
                paths={
                    "litert_float32": {
                        "gflops": 160.0,
                        "gflops_per_cpu_s": 80.0,
                        "wall_s_median": 0.05,
                        "cpu_s_median": 0.1,
                    }
                },
            ),
        ),
        _case("inference", dict(inference, crop=321, gflops=120.0, gflops_per_cpu_s=70.0)),
        _case(
            "litert",
            {
                "variant": "mobilenet_v2",
                "argmax_agreement_int8_vs_float32": 0.995,
                "argmax_agreement_float32_vs_keras": 1.0,
                "miou_int8": 0.81,
                "miou_float32": 0.82,
                "images": 80,
                "split": "val",
                "input_size": [225, 225],
            },
        ),
        _case(
            "training",
            {
                "variant": "xception_65",
                "output_stride": 16,
                "crop": 321,
                "batch": 4,
                "gflops": 110.0,
                "gflops_per_cpu_s": 60.0,
            },
        ),
    ]
    bench._annotate(results, timings)
    tf_case, litert_case, other_size, _, training = (c["result"] for c in results[2:])
    assert tf_case["fraction_of_matmul"] == pytest.approx(0.6)
    assert tf_case["fraction_of_matmul_per_cpu_s"] == pytest.approx(0.7)
    assert tf_case["official_fraction_of_matmul"] == 0.4
    assert tf_case["speed_vs_official"] == pytest.approx(1.5)
    assert litert_case["paths"]["litert_float32"]["speed_vs_official"] == pytest.approx(2.0)
    assert "speed_vs_official" not in other_size  # the official graph was timed at 513 only
    assert training["speed_vs_official"] == pytest.approx(0.55 / 0.5)
    report = {
        "machine": {
            "cpu_model": "x",
            "cpu_count": 2,
            "simd": [],
            "avx512_bf16": False,
            "load_start": 0.0,
            "load_end": 0.0,
        },
        "official_timings": str(path),
        "cases": results,
    }
    text = bench.format_report(report)
    assert "speed vs official (normalised by matmul)" in text
    assert " 1.50 " in text and " 2.00 " in text
    assert "agreement 0.9950, mIoU int8 81.00 vs float32 82.00" in text


def test_the_fastest_onednn_matmul_of_the_run_is_the_yardstick():
    def matmul(onednn, gflops):
        return _case("matmul", {"onednn": onednn, "float32": {"gflops": gflops}})

    start, end = matmul(True, 160.0), matmul(True, 210.0)
    assert bench._matmul_reference([matmul(False, 250.0), start, end])["gflops"] == 210.0
    assert bench._matmul_reference([end, start])["gflops"] == 210.0
    assert bench._matmul_reference([matmul(False, 250.0)])["gflops"] == 250.0


@pytest.mark.parametrize("quick", [True, False])
def test_the_yardstick_is_the_official_n_and_measured_again_after_the_models(quick):
    args = bench.argparse.Namespace(
        quick=quick, only="matmul,input", gpu=False, xla=False, demo_run="r", demo_data="d"
    )
    matmuls = [c for c in bench._cases(args) if c["group"] == "matmul"]
    assert [c["label"] for c in matmuls] == [
        "matmul default",
        "matmul oneDNN",
        "matmul oneDNN, at the end",
    ]
    assert {c["kwargs"]["n"] for c in matmuls} == {3072}
    assert bench._cases(args)[-1]["label"] == "matmul oneDNN, at the end"
    args.only = "matmul"
    assert len(bench._cases(args)) == 2


def test_no_absolute_official_times_in_the_report_code():
    source = open(bench.__file__).read()
    assert "OFFICIAL" not in source and "latency_s" not in source


def test_bfloat16_blocker_names_what_is_missing():
    avx512 = ["avx2", "avx512bw", "avx512dq", "avx512f", "avx512vl", "fma"]
    from benchmarks import onednn_bfloat16_blocker

    assert onednn_bfloat16_blocker(avx512, {}) is None
    assert "avx512bw" in onednn_bfloat16_blocker(["avx2", "fma"], {})
    capped = onednn_bfloat16_blocker(avx512, {"ONEDNN_MAX_CPU_ISA": "avx2"})
    assert "ONEDNN_MAX_CPU_ISA=AVX2" in capped
    assert onednn_bfloat16_blocker(avx512, {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_BF16"}) is None


def test_bfloat16_cases_are_skipped_where_onednn_would_abort(monkeypatch):
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    monkeypatch.setattr(bench, "available_memory_mb", lambda: 1e9)
    args = bench.argparse.Namespace(
        quick=False, only="training,inference", gpu=False, xla=False, demo_run="r", demo_data="d"
    )
    cases = bench._cases(args)
    bf16 = [c for c in cases if "bfloat16" in str(c["kwargs"].get("precision", ""))]
    assert {c["group"] for c in bf16} == {"training", "inference"}
    for case in bf16:
        assert "ONEDNN_MAX_CPU_ISA=AVX2" in bench.skip_reason(case)
        assert bench.skip_reason(case, gpu=True) is None
    float32 = [c for c in cases if c not in bf16]
    assert float32 and all(bench.skip_reason(c) is None for c in float32)
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA")
    monkeypatch.setattr(bench, "available_memory_mb", lambda: 100.0)
    assert "needs ~" in bench.skip_reason(next(c for c in cases if c["group"] == "training"))


def test_matmul_records_a_skipped_bfloat16_and_the_report_shows_it(monkeypatch):
    from benchmarks import matmul

    monkeypatch.setattr(matmul, "onednn_bfloat16_blocker", lambda: "no AVX-512 here")
    result = matmul.run(n=64, runs=1, warmup=0)
    assert result["float32"]["gflops"] > 0
    if result["onednn"]:
        assert result["bfloat16"] == {"skipped": "no AVX-512 here"}
        case = {"group": "matmul", "label": "matmul oneDNN", "result": dict(result, peak_rss_mb=1)}
        machine = {"cpu_model": "x", "cpu_count": 2, "simd": [], "avx512_bf16": False}
        text = bench.format_report(
            {"machine": dict(machine, load_start=0.0, load_end=0.0), "cases": [case]}
        )
        assert "skipped: no AVX-512 here" in text
