"""The code each rank runs in the distributed tests (imported by the spawned processes).

Every rank builds its loader with ``shard="auto"`` inside an initialised gloo process group,
delivers its batches, and the ranks' delivered indices are gathered with ``all_gather_object``;
rank 0 writes what was gathered to ``out`` (JSON) for the test to check.
"""

from __future__ import annotations

import json
import os
from typing import Any

import torch.distributed as dist

from minibatcher import DataLoader

N = 101
BATCH = 4


def _flat(batches: Any) -> list[int]:
    return [int(x) for b in batches for x in b.tolist()]


def first_job(rank: int, world: int, store: str, out: str) -> None:
    """World 4: seed broadcast, coverage under pad/drop/allow, then a stop mid-epoch."""
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    try:
        result: dict[str, Any] = {}
        dl = DataLoader(range(N), batch_size=BATCH, shuffle=True, shard="auto")  # seed=None
        result["seeds"] = _gather(dl.seed)
        result["lens"] = _gather(len(dl))
        for uneven in ("pad", "drop", "allow"):
            dl = DataLoader(
                range(N), batch_size=BATCH, shuffle=True, seed=7, shard="auto", uneven=uneven
            )  # type: ignore[arg-type]
            result[uneven] = _gather(_flat(dl))
        # elastic, part 1: each rank stops after a different number of batches of epoch 0
        dl = DataLoader(range(N), batch_size=BATCH, shuffle=True, seed=1234, shard="auto")
        it = iter(dl)
        taken = [next(it) for _ in range(2 + rank)]
        result["before"] = _gather(_flat(taken))
        result["states"] = _gather(dl.state_dict())
        if rank == 0:
            with open(out, "w") as f:
                json.dump(result, f)
    finally:
        dist.destroy_process_group()


def second_job(rank: int, world: int, store: str, out: str, states_file: str) -> None:
    """World 3: load all four old states (elastic), finish the epoch with thread workers."""
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    try:
        with open(states_file) as f:
            states = json.load(f)
        with DataLoader(
            range(N),
            batch_size=BATCH,
            shuffle=True,
            seed=1234,
            shard="auto",
            num_workers=2,
            worker_type="thread",
        ) as dl:
            dl.load_state_dict(states)
            remaining = len(dl)
            after = _flat(dl)
            following = _flat(dl)
        result = {
            "after": _gather(after),
            "lens": _gather(remaining),
            "next_epoch": _gather(following),
            "world": os.environ.get("WORLD_SIZE"),
        }
        if rank == 0:
            with open(out, "w") as f:
                json.dump(result, f)
    finally:
        dist.destroy_process_group()


def default_job(rank: int, world: int, store: str, out: str) -> None:
    """World 2, loaders built without shard= (the default, "detect") and without seed=, each
    rank's global torch generator seeded differently: each rank gets a disjoint share with rank
    0's seed. shard=None opts out: every rank reads everything."""
    import torch

    torch.manual_seed(100 + rank)
    early = DataLoader(range(N), batch_size=BATCH, shuffle=True)  # before the group exists
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    try:
        dl = DataLoader(range(N), batch_size=BATCH, shuffle=True)
        result: dict[str, Any] = {
            "early_len": _gather(len(early)),
            "early": _gather(_flat(early)),
            "early_seed": _gather(early.seed),
            "seeds": _gather(dl.seed),
            "lens": _gather(len(dl)),
            "epoch0": _gather(_flat(dl)),
            "epoch1": _gather(_flat(dl)),
            "opt_out": _gather(_flat(DataLoader(range(N), batch_size=BATCH, shard=None))),
            "distributed_sampler": _gather(_flat(DataLoader(
                range(N), batch_size=BATCH,
                sampler=torch.utils.data.DistributedSampler(range(N), shuffle=False),
            ))),
        }
        with DataLoader(range(N), batch_size=BATCH, shuffle=True, seed=3, num_workers=2) as dl:
            result["workers"] = _gather(_flat(dl))
        result.update(_built_on_some_ranks(rank))
        if rank == 0:
            with open(out, "w") as f:
                json.dump(result, f)
    finally:
        dist.destroy_process_group()


def _built_on_some_ranks(rank: int) -> dict[str, Any]:
    """An evaluation loader (default shard, seed=None) built on rank 0 only, before a loader
    that both build (it used to wait forever in the seed's broadcast, or meet the other rank's
    next collective); then a loader that rank 1 alone builds (a bounded wait, then an error)."""
    result: dict[str, Any] = {}
    if rank == 0:
        evaluation = DataLoader(range(50), batch_size=5, shuffle=True)
        result["eval_batches"] = len(list(evaluation))
    both = DataLoader(range(N), batch_size=BATCH, shuffle=True)
    result["both_seeds"] = _gather(both.seed)
    result["both"] = _gather(_flat(both))
    if rank == 0:  # rank 0 alone, then both ranks, loaders of one kind: the same seed everywhere
        len(DataLoader(range(60), batch_size=6, shuffle=True))
    alike = DataLoader(range(60), batch_size=6, shuffle=True)
    result["alike_seeds"] = _gather(alike.seed)
    result["alike"] = _gather(_flat(alike))
    error = ""
    if rank == 1:
        try:
            DataLoader(range(7), batch_size=2, shuffle=True)  # rank 0 never builds it
        except Exception as e:
            error = f"{type(e).__name__}: {e}"
    result["errors"] = _gather(error)
    return result


def _gather(value: Any) -> list[Any]:
    box: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(box, value)
    return box

