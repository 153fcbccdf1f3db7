"""Importing minibatcher without torch stays small (< 60 MiB RSS) and imports neither torch nor
pandas nor pyarrow, measured in a fresh interpreter."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

LIMIT_MIB = 60

MEASURE = textwrap.dedent(
    """
    import json, sys
    import minibatcher
    with open("/proc/self/status") as status:
        rss_kib = next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
    heavy = sorted(m for m in ("torch", "pandas", "pyarrow", "jax") if m in sys.modules)
    print(json.dumps({"rss_mib": rss_kib / 1024, "heavy": heavy}))
    """
)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
def test_import_without_torch_stays_under_60_mib() -> None:
    out = subprocess.run(
        [sys.executable, "-c", MEASURE], capture_output=True, text=True, check=True, timeout=60
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["heavy"] == []
    assert result["rss_mib"] < LIMIT_MIB, f"import minibatcher: {result['rss_mib']:.1f} MiB RSS"
