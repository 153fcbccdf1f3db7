"""Where this process stands among the ranks of a distributed job, and its shared seed.

In: the loader's ``shard=`` and ``seed=`` arguments. Out: a :class:`~minibatcher.samplers.shard.
ShardSpec` (or None: no sharding) and the seed every rank uses. State: none.

``shard="auto"`` looks, in order, at an initialised ``torch.distributed`` process group, then at
the ``RANK``/``WORLD_SIZE`` environment variables that torchrun (and most launchers) set, else it
means no sharding. torch is never imported here: a process group can only exist if the program
imported torch already, so ``sys.modules`` is where we look.

All ranks must draw the same order, so they need the same seed. With ``seed=None`` under an
initialised process group, rank 0 draws one and broadcasts it (a collective: every rank must
build its loader, as with any collective). Without a group there is no way to agree on a seed, so
``shard=`` with ``seed=None`` is an error that says to pass one.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from ._seed import draw_seed
from .errors import ConfigError
from .samplers.shard import ShardSpec


def _process_group() -> Any:
    """``torch.distributed`` if torch is imported and a default process group is initialised."""
    if "torch" not in sys.modules:
        return None
    dist = getattr(sys.modules["torch"], "distributed", None)
    if dist is None or not dist.is_available() or not dist.is_initialized():
        return None
    return dist


def detect_rank() -> tuple[int, int] | None:
    """``(rank, world_size)`` of the process group, else of RANK/WORLD_SIZE, else None."""
    dist = _process_group()
    if dist is not None:
        return int(dist.get_rank()), int(dist.get_world_size())
    rank, world = os.environ.get("RANK"), os.environ.get("WORLD_SIZE")
    if rank is None or world is None:
        return None
    try:
        r, w = int(rank), int(world)
    except ValueError:
        raise ConfigError(
            f"shard='auto' read RANK={rank!r} and WORLD_SIZE={world!r} from the environment, "
            "which are not ints; fix them or pass shard=(rank, world_size)"
        ) from None
    if not 0 <= r < w:
        raise ConfigError(
            f"shard='auto' read RANK={r} and WORLD_SIZE={w} from the environment; they must "
            "satisfy 0 <= RANK < WORLD_SIZE"
        )
    return r, w


def resolve_shard(shard: Any, uneven: str) -> ShardSpec | None:
    """The loader's ``shard=`` argument as a ShardSpec (None: one rank, no sharding)."""
    if shard is None:
        return None
    pair = detect_rank() if shard == "auto" else (int(shard[0]), int(shard[1]))
    if pair is None or pair[1] == 1:
        return None
    return ShardSpec(rank=pair[0], world_size=pair[1], uneven=uneven)


def resolve_seed(seed: int | None, spec: ShardSpec | None) -> int:
    """The loader's seed: the given one, else one drawn here (and shared by rank 0 if sharded)."""
    if seed is not None:
        return int(seed)
    if spec is None:
        return draw_seed()
    dist = _process_group()
    if dist is None:
        raise ConfigError(
            f"shard={(spec.rank, spec.world_size)} with seed=None: every rank must use the same "
            "seed and no torch.distributed process group is initialised to share one; pass "
            "seed=<int>, the same on every rank (or initialise the process group first)"
        )
    box = [draw_seed() if dist.get_rank() == 0 else None]
    dist.broadcast_object_list(box, src=0)
    return int(box[0])  # type: ignore[arg-type]
