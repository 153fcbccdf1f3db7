"""Run by ``torchrun --nproc_per_node 2`` (test_accelerate.py): each rank writes what it saw."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import torch
import torch.utils.data as tud
from accelerate import Accelerator

import minibatcher
import minibatcher.accelerate as mba
import minibatcher.torch

N, BATCH = 40, 4


def make(kind: str) -> Any:
    ds = tud.TensorDataset(torch.arange(N))
    if kind == "torch_facade":
        generator = torch.Generator().manual_seed(0)
        return minibatcher.torch.DataLoader(ds, BATCH, True, generator=generator)
    return minibatcher.DataLoader(ds, BATCH, shuffle=True, seed=0, shard="auto")


def items(batch: Any) -> list[int]:
    (x,) = batch
    return x.tolist()


def run(kind: str, out: Path) -> dict[str, Any]:
    acc = Accelerator(cpu=True, gradient_accumulation_steps=4)
    model = torch.nn.Linear(1, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    model, optimizer, dl = acc.prepare(model, optimizer, make(kind))
    dl = mba.prepare(acc, dl)
    report: dict[str, Any] = {"epochs": [], "syncs": [], "devices": set()}
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

    # save_state mid-epoch 1, then a new loader restored with load_state continues exactly
    acc2 = Accelerator(cpu=True)
    dl2 = mba.prepare(acc2, make(kind))
    dl2.set_epoch(1)
    it = iter(dl2)
    head = [items(next(it)) for _ in range(2)]
    acc2.save_state(str(out / f"{kind}-state"))
    del it
    acc3 = Accelerator(cpu=True)
    dl3 = mba.prepare(acc3, make(kind))
    acc3.load_state(str(out / f"{kind}-state"))
    dl3.set_epoch(1)
    report["resumed"] = head + [items(b) for b in dl3]
    # a torch RandomSampler has no epoch: a new loader's first iteration is epoch 0's order
    report["resume_epoch"] = 1 if kind == "core" else 0

    # skip_first_batches: the next epoch starts at batch 3
    dl4 = mba.skip_first_batches(mba.prepare(Accelerator(cpu=True), make(kind)), 3)
    dl4.set_epoch(0)
    report["skipped"] = [items(b) for b in dl4]
    return report


if __name__ == "__main__":
    out = Path(sys.argv[1])
    rank = int(os.environ["RANK"])
    reports = {kind: run(kind, out) for kind in sys.argv[2:]}
    (out / f"rank{rank}.json").write_text(json.dumps(reports))
