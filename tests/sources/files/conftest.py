"""Sources on disk: the files are made by the tests under ``tmp_path``; every test runs under
the leak check of ``tests/conftest.py`` (no child process, thread or segment left behind)."""

from __future__ import annotations

import os
import sys

import pytest

_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)


@pytest.fixture(autouse=True)
def _leak_check(no_leaks: None) -> None:
    """Apply ``no_leaks`` to every test in this folder."""
