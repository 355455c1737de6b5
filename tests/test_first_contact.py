"""What a user of the official code meets first, through the command lines: a missing dataset
dir named in one line, and the log filter that keeps the start-up quiet (the tests on a trained
run: short errors for checkpoints that do not fit the flags, the official frozen-graph export,
eval and vis progress, are in test_quiet_command_lines, on its tiny run)."""

import pytest

from tests import helpers


@pytest.mark.slow
def test_missing_dataset_dir_gives_one_error_line(tmp_path):
    missing = str(tmp_path / "nowhere")
    out = helpers.run_cli_in_process(
        "train.py",
        *[f for f in helpers.TINY_FLAGS if not f.startswith(("--dataset=", "--seed="))],
        "--dataset=pascal_voc_seg",
        f"--dataset_dir={missing}",
        f"--train_logdir={tmp_path / 'run'}",
    )
    lines = helpers.printed_lines(out)
    assert out.returncode == 2  # a flag error, as every other
    assert len(lines) <= 10, "\n".join(lines)
    assert [
        line
        for line in lines
        if line.startswith("FATAL Flags parsing error: --dataset_dir=") and missing in line
    ]
    assert not [line for line in lines if "Traceback" in line]


def test_log_filter_drops_only_the_known_start_up_noise():
    from deeplab.cli.logs import LineFilter

    lines = [
        b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
        b"I0000 port.cc:153] oneDNN custom operations are on. You may see ...",
        b"I0000 cudart_stub.cc:31] Could not find cuda drivers on your machine, GPU will not be used.",
        b"I0000 cpu_feature_guard.cc:227] This TensorFlow binary is optimized to use available CPU "
        b"instructions in performance-critical operations.",
        b"To enable the following instructions: AVX2 FMA, in other operations, rebuild TensorFlow",
        b"I0000 port.cc:153] oneDNN custom operations are on. You may see ...",
        b"E0000 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error (303)",
        b"E0000 some_op.cc:1] a real error",
        b"To enable the following instructions: a line of ours",
    ]
    line_filter = LineFilter()
    assert [line for line in lines if line_filter.keep(line)] == [lines[1], lines[2], *lines[7:]]
    # Without TensorFlow's no-driver notice the cuInit error is a real one and stays.
    assert LineFilter().keep(lines[6])
