"""Fixtures of the shared runs (the helpers themselves are plain functions in tests/helpers.py),
and the order in which pytest-xdist hands out the test modules.

Each shared run is built once per test session, shared between pytest-xdist workers
(`helpers.shared_once`).
"""

import os

import pytest

from tests import helpers

# Modules of one or a few long tests (a minute or more of CPU each under `-n 2`), handed out
# first. xdist (--dist loadscope --no-loadscope-reorder, pytest.ini) gives each worker one module
# at a time in collection order, and by its default order (most tests first) these came last:
# one worker ran them alone for minutes while the other was idle.
FEW_LONG_TESTS_FIRST = (
    "test_multi_worker.py",
    "test_gpu_training_benchmark.py",
    "test_model_zoo_cli.py",
    "test_jax_trainer.py",
    "test_pointwise_matmul.py",
)


def pytest_collection_modifyitems(items):
    """FEW_LONG_TESTS_FIRST first, then the other modules with the most tests first (xdist's
    own order); each module's tests keep their order."""
    modules = {}
    for item in items:
        modules.setdefault(os.path.basename(str(item.fspath)), []).append(item)
    first = [name for name in FEW_LONG_TESTS_FIRST if name in modules]
    rest = sorted((name for name in modules if name not in first), key=lambda n: -len(modules[n]))
    items[:] = [item for name in first + rest for item in modules[name]]


@pytest.fixture(scope="session")
def run(tmp_path_factory):
    """The tiny trained run (`helpers.trained_run`)."""
    return helpers.trained_run(tmp_path_factory)
