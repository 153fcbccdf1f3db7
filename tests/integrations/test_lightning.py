"""Lightning Trainer.fit with minibatcher.torch.DataLoader and minibatcher.DataLoader, for real:
every item once per epoch, the loader's epoch equal to trainer.current_epoch, checkpoint resume
exact (mid-epoch, at the last batch of an epoch, at an epoch end), and a 2-process DDP job
(gloo on CPU) with disjoint shares."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("lightning")
sys.path.insert(0, str(Path(__file__).parent))
import lightning_app as app

pytestmark = [pytest.mark.slow, pytest.mark.timeout(200)]


def check_epochs(seen: list[list]) -> None:
    for epoch in range(app.EPOCHS):
        steps = [s for s in seen if s[0] == epoch]
        assert sorted(i for s in steps for i in s[2]) == list(range(app.N)), epoch
        assert all(s[3] == epoch for s in steps), steps  # the loader's epoch is the trainer's


@pytest.mark.parametrize("kind", [*app.KINDS, app.RANDOM])
def test_fit_and_exact_resume(kind: str, tmp_path: Path) -> None:
    """Every later epoch of a resumed run is the uninterrupted run's. RANDOM (the facade's
    RandomSampler with a generator): from an epoch-end checkpoint, where Lightning restores no
    loader state, a new loader repeated epoch 0's order; it now follows sampler.set_epoch."""
    seen = app.fit(kind, tmp_path, save=True)
    check_epochs(seen)
    orders = [[s[2] for s in seen if s[0] == e] for e in range(app.EPOCHS)]
    assert orders[0] != orders[1]  # a new order each epoch
    per_epoch = app.N // app.BATCH
    cases = {
        "mid-epoch": (tmp_path / "step-step=2.ckpt", 2),
        "last batch of epoch 0": (tmp_path / f"step-step={per_epoch}.ckpt", per_epoch),
        "mid epoch 1": (tmp_path / f"step-step={per_epoch + 3}.ckpt", per_epoch + 3),
        "end of epoch 0": (tmp_path / "end-epoch=0.ckpt", per_epoch),
    }
    for name, (ckpt, done) in cases.items():
        assert ckpt.exists(), sorted(p.name for p in tmp_path.iterdir())
        resumed = app.fit(kind, tmp_path / "resumed", str(ckpt))
        assert resumed == seen[done:], name


def test_ddp_two_processes_disjoint_shares(tmp_path: Path) -> None:
    """strategy="ddp", 2 CPU processes (gloo), both loader kinds in one launch; the facade
    built as a torch script builds torch's (shuffle=True, no sampler) gets exactly the shares
    Lightning gives torch's own DataLoader (it injects a DistributedSampler into both)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "MASTER_ADDR": "127.0.0.1"}
    script = Path(app.__file__)
    subprocess.run(
        [sys.executable, str(script), str(tmp_path), *app.KINDS, "torch"], env=env, check=True,
        timeout=170, cwd=tmp_path, capture_output=True,
    )  # fmt: skip
    for kind in app.KINDS:
        ranks = [json.loads((tmp_path / f"{kind}-rank{r}.json").read_text()) for r in range(2)]
        for epoch in range(app.EPOCHS):
            shares = [{i for s in seen if s[0] == epoch for i in s[2]} for seen in ranks]
            assert not shares[0] & shares[1], (kind, epoch)
            assert shares[0] | shares[1] == set(range(app.N)), (kind, epoch)
            for seen in ranks:
                assert all(s[3] == epoch for s in seen if s[0] == epoch), kind
    for r in range(2):
        torch_seen = json.loads((tmp_path / f"torch-rank{r}.json").read_text())
        facade_seen = json.loads((tmp_path / f"torch_facade-rank{r}.json").read_text())
        assert facade_seen == torch_seen, r
