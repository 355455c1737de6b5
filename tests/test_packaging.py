"""The wheel: `deeplab` and nothing else at the top level, its package data, console scripts."""

import os
import subprocess
import sys
import zipfile

import pytest

from deeplab.modeling.cell_description import packaged_cells

# One worker runs this module (its module fixtures are built once).
pytestmark = pytest.mark.xdist_group("packaging")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONSOLE_SCRIPTS = {
    "deeplab-train",
    "deeplab-eval",
    "deeplab-vis",
    "deeplab-export",
    "deeplab-summary",
    "deeplab-convert",
    "deeplab-build-voc2012",
    "deeplab-build-cityscapes",
    "deeplab-build-ade20k",
    "deeplab-build-synthetic",
    "deeplab-validate-data",
}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    """The names in a wheel built from the checkout (setup.py as CI installs it)."""
    dist = tmp_path_factory.mktemp("dist")
    build = tmp_path_factory.mktemp("build")
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
        + ["-w", str(dist), REPO],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=build,
        env=dict(os.environ, PIP_NO_INPUT="1"),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (name,) = os.listdir(dist)
    with zipfile.ZipFile(dist / name) as archive:
        names = archive.namelist()
        (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        return names, archive.read(entry_points).decode()


@pytest.mark.slow
def test_wheel_holds_only_the_deeplab_package(wheel):
    names, _ = wheel
    top_level = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert top_level == {"deeplab"}
    assert not any(n.startswith(("deeplab/tests", "benchmarks", "datasets")) for n in names)


@pytest.mark.slow
def test_wheel_installs_the_cell_descriptions_and_console_scripts(wheel):
    names, entry_points = wheel
    for cell in packaged_cells():
        assert f"deeplab/modeling/cells/{cell}" in names
    scripts = {
        line.split("=")[0].strip()
        for line in entry_points.split("[console_scripts]")[1].splitlines()
        if "=" in line
    }
    assert scripts == CONSOLE_SCRIPTS
    for line in entry_points.splitlines():
        if "=" in line:
            module, function = line.split("=")[1].strip().split(":")
            assert f"{module.replace('.', '/')}.py" in names, line
