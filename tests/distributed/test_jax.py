"""A real multi-process JAX job (two CPU processes joined by ``jax.distributed.initialize``):
a loader built there without ``shard=`` shards by ``jax.process_index()`` and
``jax.process_count()`` and shares process 0's seed (issue 8, item 5)."""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

# find_spec, not importorskip: importing JAX into the pytest process (at collection) made every
# test that forks workers afterwards fail on the once-only "JAX is imported" warning
if importlib.util.find_spec("jax") is None:
    pytest.skip("jax is not installed", allow_module_level=True)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

RANKS = Path(__file__).with_name("jax_ranks.py")
SRC = Path(__file__).resolve().parents[2] / "src"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_jax_job_shards_by_process_and_shares_one_seed() -> None:
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    procs = [
        subprocess.Popen(
            [sys.executable, str(RANKS), str(rank), str(port)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        )
        for rank in range(2)
    ]
    try:
        outs = [p.communicate(timeout=150) for p in procs]
    finally:
        for p in procs:
            p.kill()
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err[-3000:]
    got = [json.loads(out.strip().splitlines()[-1]) for out, _ in outs]

    assert [g["shard"] for g in got] == [[0, 2], [1, 2]]
    assert got[0]["seed"] == got[1]["seed"], "process 0's seed was not shared"
    assert got[0]["len"] == got[1]["len"]  # the same number of steps on every process
    first, second = (set(g["items"]) for g in got)
    n = 101
    counts = Counter(got[0]["items"] + got[1]["items"])
    assert set(counts) == set(range(n))
    assert sum(counts.values()) - n == 1  # uneven="pad": one repeat makes the shares equal
    assert len(first & second) <= 1
