"""benchmarks: the official timings entry is chosen by the CPU's flags (AVX2 Zen 3 or AVX-512 with
BF16/VNNI), a CPU of neither kind gets no "vs official" figure, and the report names the entry."""

import pytest

from benchmarks import __main__ as bench
from benchmarks import official

AVX2 = ["avx2", "fma"]
AVX512_BF16 = AVX2 + ["avx512f", "avx512bw", "avx512dq", "avx512vl", "avx512_bf16", "avx512_vnni"]
TIMINGS = {
    "inference_513": {"mobilenet_v2_os16": {"official_fraction_of_matmul": 0.4}},
    "avx512_machine": {
        "inference_513": {"mobilenet_v2_os16": {"official_fraction_of_matmul": 0.5}}
    },
}
INFERENCE = {"variant": "mobilenet_v2", "output_stride": 16, "crop": 513, "batch": 1}


def _report(simd):
    """A report of one matmul and one mobilenet_v2 inference case, annotated as main() does."""
    matmul = {"onednn": True, "n": 3072, "peak_rss_mb": 1.0}
    matmul["float32"] = {"gflops": 200.0, "gflops_per_cpu_s": 100.0, "wall_s_median": 0.3}
    inference = dict(INFERENCE, gflops=120.0, gflops_per_cpu_s=70.0, wall_s_median=0.1)
    inference.update(cpu_s_median=0.2, peak_rss_mb=1.0)
    cases = [
        {"group": "matmul", "label": "matmul oneDNN", "result": matmul},
        {"group": "inference", "label": "after", "kwargs": {}, "result": inference},
    ]
    choice = official.choose_entry(TIMINGS, simd)
    bench._annotate(cases, choice.pop("timings"))
    machine = {"cpu_model": "x", "cpu_count": 2, "simd": simd, "avx512_bf16": False}
    return {
        "machine": dict(machine, load_start=0.0, load_end=0.0),
        "official_entry": choice,
        "cases": cases,
    }


@pytest.mark.parametrize(
    "simd, entry, vs_official",
    [(AVX512_BF16, "avx512_machine", 0.6 / 0.5), (AVX2, "top level (AVX2)", 0.6 / 0.4)],
)
def test_each_cpu_kind_compares_with_its_own_entry(simd, entry, vs_official):
    report = _report(simd)
    assert report["official_entry"]["entry"] == entry
    result = report["cases"][1]["result"]
    assert result["speed_vs_official"] == pytest.approx(vs_official)
    line = bench.format_report(report).splitlines()[1]
    assert line.startswith(f"vs official: entry {entry} ")
    assert all(flag in line for flag in report["official_entry"]["flags"])


@pytest.mark.parametrize(
    "simd, named",
    [
        (AVX2 + ["avx512f", "avx512bw", "avx512vl"], "but not avx512_bf16 avx512_vnni"),
        (AVX2 + ["avx512f", "avx512_vnni"], "but not avx512_bf16"),
        (["sse4_2"], "none of avx2 fma"),
    ],
)
def test_a_cpu_of_neither_kind_gets_no_vs_official_figure(simd, named):
    report = _report(simd)
    assert report["official_entry"]["entry"] is None
    result = report["cases"][1]["result"]
    assert "speed_vs_official" not in result and result["fraction_of_matmul"] == 0.6
    line = bench.format_report(report).splitlines()[1]
    assert line.startswith("vs official: none (") and named in line
    assert "no speed vs official" in line


def test_missing_timings_or_entry_say_so():
    assert "no official timings file" in official.choose_entry(None, AVX2)["reason"]
    choice = official.choose_entry({"inference_513": {}}, AVX512_BF16)
    assert choice["entry"] is None and "no avx512_machine entry" in choice["reason"]


def test_the_bundled_file_has_both_entries():
    timings = official.load_timings(official.BUNDLED_PATH)
    for simd in (AVX2, AVX512_BF16):
        figures = official.choose_entry(timings, simd)["timings"]
        fraction = official.official_fraction(figures, "inference", dict(INFERENCE))
        assert 0 < fraction < 1
