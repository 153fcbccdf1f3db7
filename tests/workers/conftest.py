"""Every worker test runs under the leak check of ``tests/conftest.py``.

The tests import their datasets from ``workers_helpers`` (a plain module, so that spawned workers
can import it by name too): this folder goes on ``sys.path``, which spawned workers inherit.
"""

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
