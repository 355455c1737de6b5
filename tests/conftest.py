"""Fixtures of the shared runs (the helpers themselves are plain functions in tests/helpers.py).

Each is built once per test session, shared between pytest-xdist workers (`helpers.shared_once`).
"""

import pytest

from tests import helpers


@pytest.fixture(scope="session")
def run(tmp_path_factory):
    """The tiny trained run (`helpers.trained_run`)."""
    return helpers.trained_run(tmp_path_factory)
