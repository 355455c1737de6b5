"""Fixtures of the shared runs (the helpers themselves are plain functions in tests/helpers.py),
and the order in which pytest-xdist hands out the test modules.

Each shared run is built once per test session, shared between pytest-xdist workers
(`helpers.shared_once`).
"""

import os

import pytest

from tests import helpers

# The modules that take longest (CPU-seconds under `-n 2`, measured 2026-12-04), longest first.
# xdist (--dist loadscope --no-loadscope-reorder, pytest.ini) hands each worker one module at a
# time in collection order; starting with the long ones keeps one worker from running a long
# module alone at the end while the other is idle. The other modules follow in their order.
LONGEST_FIRST = (
    "test_backends.py",
    "test_model_zoo_cli.py",
    "test_qat.py",
    "test_quiet_command_lines.py",
    "test_gpu_training_benchmark.py",
    "test_export.py",
    "test_train_cli.py",
    "test_jax_trainer.py",
    "test_pointwise_matmul.py",
    "test_multi_worker.py",
    "test_train_library.py",
    "test_model.py",
    "test_vis.py",
    "test_litert.py",
)


def pytest_collection_modifyitems(items):
    """Puts the LONGEST_FIRST modules first, in that order (a stable sort: each module's own
    tests keep their order)."""
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(os.path.basename(str(item.fspath)), len(rank)))


@pytest.fixture(scope="session")
def run(tmp_path_factory):
    """The tiny trained run (`helpers.trained_run`)."""
    return helpers.trained_run(tmp_path_factory)
