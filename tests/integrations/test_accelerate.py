"""HF accelerate in 2 CPU processes started by torchrun, with minibatcher.accelerate.Accelerator:
``accelerator.prepare(model, optimizer, dl)`` gives disjoint shares, batches on
accelerator.device, gradient accumulation synced at the end of the loader, save_state/load_state
exact on every rank, skip_first_batches, gather_for_metrics without the padding of the shares,
device_placement=False leaving batches alone; with accelerate's own Accelerator the facade gets
exactly the batches torch's DataLoader gets."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("accelerate")
pytestmark = [pytest.mark.slow, pytest.mark.timeout(200)]

KINDS = ("torch_facade", "core")
PLAIN = ("torch", "torch_facade_plain")  # through accelerate.Accelerator itself
N = 40
ODD = 41  # accelerate_ranks.ODD


def test_accelerate_two_ranks(tmp_path: Path) -> None:
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    assert torchrun is not None
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "OMP_NUM_THREADS": "1"}
    script = Path(__file__).parent / "accelerate_ranks.py"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    done = subprocess.run(
        [torchrun, "--nproc_per_node", "2", "--master_addr", "127.0.0.1", "--master_port",
         str(port), str(script), str(tmp_path), *KINDS, *PLAIN],
        env=env, timeout=180, capture_output=True, text=True, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    for kind in KINDS:
        reports = [r[kind] for r in ranks]
        for epoch in range(2):
            shares = [[i for b in rep["epochs"][epoch] for i in b] for rep in reports]
            assert not set(shares[0]) & set(shares[1]), (kind, epoch)
            assert sorted(shares[0] + shares[1]) == list(range(N)), (kind, epoch)
        assert reports[0]["epochs"][0] != reports[0]["epochs"][1], kind
        for rep in reports:
            assert rep["devices"] == ["cpu", "cpu"], kind
            for syncs in rep["syncs"]:  # 5 batches, accumulation 4: after the 4th and the last
                assert syncs == [False, False, False, True, True], (kind, syncs)
            assert rep["resumed"] == rep["epochs"][rep["resume_epoch"]], kind
            assert rep["skipped"] == rep["epochs"][0][3:], kind
            assert rep["function"] == rep["epochs"][0], kind
            # every item once: the padding of the ranks' shares is cut off (it was gathered)
            assert sorted(rep["metrics"]) == list(range(ODD)), (kind, rep["metrics"])
            assert rep["moves_False"] == [[]] * len(rep["moves_True"]), kind  # was moved
            assert all(len(moves) == 1 for moves in rep["moves_True"]), (kind, rep["moves_True"])
    for rep in ranks:  # accelerate's own Accelerator: the facade is torch's DataLoader there
        assert rep["torch_facade_plain"].pop("refused") is True
        assert rep["torch_facade_plain"] == rep["torch"]
        assert rep["torch"]["type"] == "DataLoaderShard"
    torch_shares = [[i for b in rep["torch"]["epochs"][0] for i in b] for rep in ranks]
    assert sorted(torch_shares[0] + torch_shares[1]) == list(range(N))
