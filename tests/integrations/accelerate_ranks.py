"""Run by ``torchrun --nproc_per_node 2`` (test_accelerate.py): each rank writes what it saw.

Kinds ``torch_facade`` and ``core``: minibatcher's loaders through
``minibatcher.accelerate.Accelerator`` (the one-import-line switch), ``accelerator.prepare(model,
optimizer, dl)``. Kinds ``torch`` and ``torch_facade_plain``: torch's DataLoader and the facade
through accelerate's own ``Accelerator`` (which rebuilds both as its torch DataLoaderShard).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import accelerate
import torch
import torch.utils.data as tud

import minibatcher
import minibatcher.accelerate as mba
import minibatcher.errors
import minibatcher.torch

N, BATCH = 40, 4
ODD = 41  # divides by neither world * BATCH nor world: the ranks' shares are padded


class Placed:
    """A batch that records where accelerate's ``send_to_device`` sent it (it calls ``.to``)."""

    def __init__(self, items: list[Any]) -> None:
        self.items = items
        self.moves: list[str] = []

    def to(self, device: Any, non_blocking: bool = False) -> Placed:
        self.moves.append(str(device))
        return self


def make(kind: str, n: int = N, **options: Any) -> Any:
    ds = tud.TensorDataset(torch.arange(n))
    if kind == "core":
        return minibatcher.DataLoader(ds, BATCH, shuffle=True, seed=0, shard="auto", **options)
    cls = tud.DataLoader if kind == "torch" else minibatcher.torch.DataLoader
    return cls(ds, BATCH, True, generator=torch.Generator().manual_seed(0), **options)


def items(batch: Any) -> list[int]:
    (x,) = batch
    return x.tolist()


def train(acc: Any, kind: str, report: dict[str, Any]) -> Any:
    """Two epochs of a model on this rank's share; returns the prepared loader."""
    model = torch.nn.Linear(1, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    model, optimizer, dl = acc.prepare(model, optimizer, make(kind))
    report.update(epochs=[], syncs=[], devices=set())
    for epoch in range(2):
        dl.set_epoch(epoch)
        seen, syncs = [], []
        for batch in dl:
            report["devices"].add(batch[0].device.type)
            with acc.accumulate(model):
                loss = model(batch[0].float().view(-1, 1)).sum()
                acc.backward(loss)
                optimizer.step()
                optimizer.zero_grad()
            syncs.append(acc.sync_gradients)
            seen.append(items(batch))
        report["epochs"].append(seen)
        report["syncs"].append(syncs)
    report["devices"] = [*sorted(report["devices"]), acc.device.type]
    return dl


def run(kind: str, out: Path) -> dict[str, Any]:
    report: dict[str, Any] = {}
    if kind in ("torch", "torch_facade_plain"):
        acc = accelerate.Accelerator(cpu=True, gradient_accumulation_steps=4)
        dl = train(acc, kind, report)
        report["type"] = type(dl).__name__
        if kind == "torch_facade_plain":  # what accelerate returned is its loader, not ours
            try:
                mba.prepare(acc, dl)
            except minibatcher.errors.ConfigError as e:
                report["refused"] = "minibatcher.accelerate.Accelerator" in str(e)
        return report
    train(mba.Accelerator(cpu=True, gradient_accumulation_steps=4), kind, report)

    # save_state mid-epoch 1, then a new loader restored with load_state continues exactly
    acc2 = mba.Accelerator(cpu=True)
    dl2 = acc2.prepare(make(kind))
    dl2.set_epoch(1)
    it = iter(dl2)
    head = [items(next(it)) for _ in range(2)]
    acc2.save_state(str(out / f"{kind}-state"))
    acc2.wait_for_everyone()  # rank 0 writes the custom checkpoint: load only once it exists
    del it
    acc3 = mba.Accelerator(cpu=True)
    dl3 = acc3.prepare(make(kind))
    acc3.load_state(str(out / f"{kind}-state"))
    dl3.set_epoch(1)
    report["resumed"] = head + [items(b) for b in dl3]
    # the facade's RandomSampler has set_epoch: a new loader told epoch 1 replays epoch 0's
    # draws (its first iteration was epoch 0's order again)
    report["resume_epoch"] = 1

    # skip_first_batches: the next epoch starts at batch 3
    acc4 = mba.Accelerator(cpu=True)
    dl4 = acc4.skip_first_batches(acc4.prepare(make(kind)), 3)
    dl4.set_epoch(0)
    report["skipped"] = [items(b) for b in dl4]
    # the function for an accelerate.Accelerator of one's own: the same shares
    dl5 = mba.prepare(accelerate.Accelerator(cpu=True), make(kind))
    dl5.set_epoch(0)
    report["function"] = [items(b) for b in dl5]

    # gather_for_metrics over padded shares: the duplicates are cut off at the last step
    acc6 = mba.Accelerator(cpu=True)
    report["metrics"] = [
        i for batch in acc6.prepare(make(kind, ODD)) for i in acc6.gather_for_metrics(batch[0])
    ]
    report["metrics"] = [int(i) for i in report["metrics"]]
    # device_placement=False: batches as the loader makes them (and a control with True)
    for placement in (False, True):
        acc7 = mba.Accelerator(cpu=True, device_placement=placement)
        dl7 = acc7.prepare(make(kind, collate_fn=Placed))
        report[f"moves_{placement}"] = [batch.moves for batch in dl7]
    return report


if __name__ == "__main__":
    out = Path(sys.argv[1])
    rank = int(os.environ["RANK"])
    reports = {kind: run(kind, out) for kind in sys.argv[2:]}
    (out / f"rank{rank}.json").write_text(json.dumps(reports))
