"""Quiet logs for the command lines (train, eval, vis, export, summary, the dataset builders).

TensorFlow 2.21 writes native (C++) log lines straight to file descriptor 2, where Python's
logging cannot reach them. On a machine without an NVIDIA driver it logs "Could not find cuda
drivers on your machine, GPU will not be used" and then, when it lists devices, an error line
`E... failed call to cuInit: ... UNKNOWN ERROR (303)` that only repeats that news; its start-up
notices (oneDNN, CUDA stub, CPU features) come twice, once per copy of its logging library.

`install()` routes the process's stderr through a thread that drops exactly these lines: the
cuInit error only after TensorFlow's own no-driver notice, each notice after its first
occurrence, and the NOISE lines that never ask anything of a user (how absl logs before it is
initialised, which CPU instructions a rebuilt TensorFlow could use, TFRecord buffer sizes, the
duration of each checkpoint's sharding callback, SavedModel input renaming, the LiteRT
converter's internals and its raw `fully_quantize: 0, inference_type: 6` line); the oneDNN
notice is shortened (REWRITES). Every other line passes unchanged. Python log records longer
than WRAP characters are wrapped onto indented lines and cut after MAX_MESSAGE characters, so
a log line stays under 200 characters. Set DEEPLAB_RAW_LOGS=1 to turn all of it off.
"""

from __future__ import annotations

import atexit
import logging
import os
import select
import sys
import textwrap
import threading

# Native start-up notices that TensorFlow prints twice: kept the first time only.
NOTICES = (
    b"oneDNN custom operations are on",
    b"Could not find cuda drivers on your machine",
    b"] Estimated count of arithmetic ops: ",  # once per LiteRT conversion
)
# Dropped every time (with a continuation line: the CPU-instructions notice's, a Python
# warning's source line).
NOISE = (
    b"WARNING: All log messages before absl::InitializeLog() is called",
    b"] This TensorFlow binary is optimized to use available CPU instructions",
    b"tf_record_dataset_op.cc",
    # Each checkpoint save (tf.train.Checkpoint).
    b"] Sharding callback duration: ",
    # SavedModel export: TensorFlow renames captured-variable inputs (thousands of characters).
    b"contains input name(s) ",
    # The LiteRT converter (export.py --tflite): internals, nothing a user can act on.
    b"Please consider providing the trackable_obj argument",
    b"] Using new converter: If you encounter a problem",
    b"] Number of eligible GPUs (core count",
    b"single_machine.cc:",
    b"] Ignored output_format.",
    b"] Ignored drop_control_dependency.",
    b"] Skipping runtime version metadata in the model.",
    b"UserWarning: Statistics for quantized inputs were expected",
    b"fully_quantize: 0, inference_type: 6, ",
    b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.",
)
CONTINUATIONS = (b"To enable the following instructions:", b"  warnings.warn(")
# Kept once, in these words (the originals pass 200 characters or repeat per conversion).
REWRITES = {
    b"oneDNN custom operations are on.": b"oneDNN custom operations are on "
    b"(TF_ENABLE_ONEDNN_OPTS=0 turns them off; results may differ in the last bits).",
}
NO_DRIVER = b"Could not find cuda drivers on your machine"
CUINIT_ERROR = b"failed call to cuInit"

# Python log records longer than WRAP characters are wrapped onto indented lines (the log
# prefix adds about 75 characters, so lines stay under 200), and cut after MAX_MESSAGE.
WRAP = 120
MAX_MESSAGE = 1000

_installed = False


# NOISE as Python log messages (without the log prefix).
RECORD_NOISE = tuple(noise.decode().lstrip("] ") for noise in NOISE)


class ShortRecords(logging.Filter):
    """Cuts log messages longer than MAX_MESSAGE characters (and says so) and wraps those
    longer than WRAP onto indented lines."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if any(noise in message for noise in RECORD_NOISE):
            return False  # before wrapping: the line filter would only see its first line
        if len(message) > WRAP and "\n" not in message:
            if len(message) > MAX_MESSAGE:
                message = message[: MAX_MESSAGE - 20] + f" ... ({len(message)} chars)"
            record.msg = textwrap.fill(message, WRAP, subsequent_indent="    ")
            record.args = None
        return True


class LineFilter:
    """Decides line by line what reaches the terminal (see the module docstring)."""

    def __init__(self):
        self.seen = set()
        self.dropped_notice = False

    def output(self, line: bytes):
        """The line as it reaches the terminal (REWRITES applied), or None where `keep` drops
        it."""
        if not self.keep(line):
            return None
        for original, replacement in REWRITES.items():
            if original in line:
                return line[: line.index(original)] + replacement
        return line

    def keep(self, line: bytes) -> bool:
        """False for noise, a repeated start-up notice, or the cuInit error after the no-driver
        notice."""
        follows_notice, self.dropped_notice = self.dropped_notice, False
        if follows_notice and line.startswith(CONTINUATIONS):
            return False
        if any(noise in line for noise in NOISE):
            self.dropped_notice = True
            return False
        if CUINIT_ERROR in line and NO_DRIVER in self.seen:
            return False
        for notice in NOTICES:
            if notice in line:
                if notice in self.seen:
                    return False
                self.seen.add(notice)
        return True


def _write_all(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data) :]


def _pump(read_fd: int, out_fd: int) -> None:
    line_filter = LineFilter()
    pending = b""
    while True:
        # A partial line (e.g. a prompt) goes out after 0.2 s without more data.
        ready, _, _ = select.select([read_fd], [], [], 0.2 if pending else None)
        if not ready:
            _write_all(out_fd, pending)
            pending = b""
            continue
        try:
            chunk = os.read(read_fd, 1 << 16)
        except OSError:
            break
        if not chunk:
            break
        *lines, pending = (pending + chunk).split(b"\n")
        kept = (line_filter.output(line) for line in lines)
        _write_all(out_fd, b"".join(line + b"\n" for line in kept if line is not None))
    _write_all(out_fd, pending)
    os.close(read_fd)


def install() -> None:
    """Filters this process's stderr (file descriptor 2) as the module docstring says.

    Call it before TensorFlow is imported; it is a no-op the second time, with
    DEEPLAB_RAW_LOGS set, or where stderr cannot be redirected.
    """
    global _installed
    if _installed or os.environ.get("DEEPLAB_RAW_LOGS"):
        return
    for name in ("tensorflow", "absl"):  # TensorFlow logs through both
        logging.getLogger(name).addFilter(ShortRecords())
    try:
        sys.stderr.flush()
        saved = os.dup(2)
        read_fd, write_fd = os.pipe()
        os.dup2(write_fd, 2)
        os.close(write_fd)
    except (OSError, ValueError):
        return
    _installed = True
    thread = threading.Thread(
        target=_pump, args=(read_fd, saved), name="deeplab-stderr-filter", daemon=True
    )
    thread.start()

    def restore():
        try:
            sys.stderr.flush()
        except (OSError, ValueError):
            pass
        os.dup2(saved, 2)  # closes the pipe's write end, so the thread reads EOF and drains
        thread.join(timeout=2)

    atexit.register(restore)
