"""The command lines install their log filter before TensorFlow is imported (deeplab.cli_logs):
importing a CLI module, or the modules its flags need, must not import TensorFlow."""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize(
    "module", ["train", "eval", "vis", "export", "deeplab.cli.summary", "deeplab.modeling.options"]
)
def test_importing_a_cli_does_not_import_tensorflow(module):
    code = f"import sys, {module}; print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"
