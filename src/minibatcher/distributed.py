"""Where this process stands among the ranks of a distributed job, and its shared seed.

In: the loader's ``shard=`` and ``seed=`` arguments. Out: a :class:`~minibatcher.samplers.shard.
ShardSpec` (or None: no sharding) and the seed every rank uses. State: none.

Three ways to ask (the loader's ``shard=``):

- ``"detect"`` (the default): shard when this process is one of several ranks of an initialised
  job: a ``torch.distributed`` process group with ``world_size > 1`` (torchrun, Lightning's
  ``strategy="ddp"``, ``accelerate launch``), else multi-process JAX
  (``jax.distributed.initialize``). A loader built inside such a job without a ``shard=``
  would otherwise give every rank the whole data set, world-size times the work per epoch, so
  the default shards; ``shard=None`` opts out. What the sampler or the data already splits
  across ranks (a ``DistributedSampler``) is not split again.
- ``"auto"``: the same, and when no job is initialised, the ``RANK``/``WORLD_SIZE``
  environment variables that torchrun and most launchers set.
- ``(rank, world_size)`` given, or ``None``: no sharding.

Neither torch nor JAX is imported here: a process group can only exist if the program imported
them already, so ``sys.modules`` is where we look.

All ranks must draw the same order, so they need the same seed. With ``seed=None`` in an
initialised job, rank 0 draws one and shares it (NOTE [ Sharing the seed ]). Without a job
there is no way to agree on a seed, so ``shard=`` with ``seed=None`` is an error that says to
pass one.

NOTE [ Sharing the seed ]: not by a collective. A broadcast needs every rank to build the
loader, and a loader built on some ranks only (an evaluation loader on rank 0) waited forever
in it, or, worse, met another collective of the other ranks. Instead rank 0 writes its seed
into the process group's key-value store (``torch.distributed``'s default store, which every
group has) and never waits; the other ranks read it, waiting at most :data:`SEED_WAIT_S`
seconds, then raise an error naming the cause and the fixes (``seed=``, or ``shard=None``
for a loader that one rank alone uses). The key names the loader by what every rank builds
alike (the data's type and length, the batch size, shuffle), and rank 0 writes it once: every
later loader of that kind built with ``seed=None`` in the job reuses that seed, on every rank.
Counting loaders instead would let a loader built on rank 0 alone shift rank 0's count and
give the ranks different seeds for the next shared loader of its kind: overlapping shares,
silently. (A loader built on one rank alone, still sharded, reads only that rank's share: pass
``shard=None`` to read all.)
Under JAX the seed is broadcast (``multihost_utils``: a collective) as before.
"""

from __future__ import annotations

import datetime
import os
import sys
from typing import Any, Literal

import numpy as np

from ._seed import draw_seed
from .errors import ConfigError
from .samplers.shard import ShardSpec

SEED_WAIT_S = float(os.environ.get("MINIBATCHER_SEED_WAIT_S", "300"))
"""How long a rank other than 0 waits for rank 0's seed (NOTE [ Sharing the seed ])."""
_SEED_PREFIX = "minibatcher/seed/"

DETECT: Literal["detect"] = "detect"
"""The default ``shard=``: shard when running as one of several ranks of an initialised job."""


def _process_group() -> Any:
    """``torch.distributed`` if torch is imported and a default process group is initialised."""
    if "torch" not in sys.modules:
        return None
    dist = getattr(sys.modules["torch"], "distributed", None)
    if dist is None or not dist.is_available() or not dist.is_initialized():
        return None
    return dist


def _jax_job() -> Any:
    """``jax`` if JAX is imported and runs multi-process (``jax.distributed.initialize``)."""
    jax = sys.modules.get("jax")
    if jax is None:
        return None
    distributed = getattr(jax, "distributed", None)
    is_initialized = getattr(distributed, "is_initialized", None)
    # Asking jax.process_count() starts JAX's backends: only once a job is known to exist.
    if is_initialized is None or not is_initialized():
        return None
    return jax


def job_rank() -> tuple[int, int] | None:
    """``(rank, world_size)`` of an initialised torch.distributed group or JAX job, else None."""
    dist = _process_group()
    if dist is not None:
        return int(dist.get_rank()), int(dist.get_world_size())
    jax = _jax_job()
    if jax is not None:
        return int(jax.process_index()), int(jax.process_count())
    return None


def detect_rank() -> tuple[int, int] | None:
    """``(rank, world_size)`` of an initialised job, else of RANK/WORLD_SIZE, else None."""
    found = job_rank()
    if found is not None:
        return found
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


def split_by_rank_already(*objects: Any) -> bool:
    """Whether a sampler, batch sampler or dataset already splits the data across ranks.

    torch's ``DistributedSampler`` (and look-alikes with ``num_replicas`` and ``rank``, also
    inside a batch sampler), or an HF ``IterableDataset`` from ``split_dataset_by_node``: the
    default sharding would split a second time and give each rank 1/W^2 of the data.
    """
    for obj in objects:
        inner = getattr(obj, "sampler", None)
        for candidate in (obj, inner):
            if hasattr(candidate, "num_replicas") and hasattr(candidate, "rank"):
                return True
        if getattr(obj, "_distributed", None) is not None:  # HF split_dataset_by_node
            return True
    return False


def resolve_shard(shard: Any, uneven: str, *split_by: Any) -> ShardSpec | None:
    """The loader's ``shard=`` argument as a ShardSpec (None: one rank, no sharding).

    ``split_by``: the sampler, batch sampler and data; the default does not shard what one of
    them already splits across ranks (see :func:`split_by_rank_already`).
    """
    if shard is None:
        return None
    if shard == DETECT and split_by_rank_already(*split_by):
        return None
    if shard == DETECT:
        pair = job_rank()
    elif shard == "auto":
        pair = detect_rank()
    else:
        pair = (int(shard[0]), int(shard[1]))
    if pair is None or pair[1] == 1:
        return None
    return ShardSpec(rank=pair[0], world_size=pair[1], uneven=uneven)


def seed_topic(data: Any, batch_size: int | None, shuffle: bool) -> str:
    """What names a loader alike on every rank (NOTE [ Sharing the seed ])."""
    try:
        length: int | None = len(data)
    except Exception:  # an iterable without len()
        length = None
    return f"{type(data).__name__}:{length}:{batch_size}:{shuffle}"


def resolve_seed(seed: int | None, spec: ShardSpec | None, topic: str = "") -> int:
    """The loader's seed: the given one, else one drawn here (and shared by rank 0 if sharded:
    NOTE [ Sharing the seed ]; ``topic``: :func:`seed_topic` of the loader)."""
    if seed is not None:
        return int(seed)
    if spec is None:
        return draw_seed()
    dist = _process_group()
    if dist is not None:
        return _shared_seed(dist, topic)
    jax = _jax_job()
    if jax is not None:
        from jax.experimental import multihost_utils

        seed = draw_seed()
        mine = np.array([seed >> 32, seed & 0xFFFFFFFF], dtype=np.uint32)
        high, low = (int(v) for v in multihost_utils.broadcast_one_to_all(mine))
        return ((high << 32) | low) & ((1 << 63) - 1)
    raise ConfigError(
        f"shard={(spec.rank, spec.world_size)} with seed=None: every rank must use the same "
        "seed and no torch.distributed process group is initialised to share one; pass "
        "seed=<int>, the same on every rank (or initialise the process group first)"
    )


def _shared_seed(dist: Any, topic: str) -> int:
    """Rank 0's seed through the group's store: rank 0 writes it once per kind of loader, the
    others wait for it."""
    store = getattr(dist.distributed_c10d, "_get_default_store", lambda: None)()
    rank = int(dist.get_rank())
    if store is None:  # a torch without it: a broadcast, which every rank must join
        box = [draw_seed() if rank == 0 else None]
        dist.broadcast_object_list(box, src=0)
        return int(box[0])  # type: ignore[arg-type]
    key = f"{_SEED_PREFIX}{topic}"
    if rank == 0:
        if store.check([key]):  # a loader of this kind had one: the other ranks read that one
            return int(store.get(key))
        seed = draw_seed()
        store.set(key, str(seed))
        return seed
    try:
        store.wait([key], datetime.timedelta(seconds=SEED_WAIT_S))
    except Exception as e:  # DistStoreError (a timeout), or the store is gone
        raise ConfigError(
            f"rank {rank} waited {SEED_WAIT_S:g} s for rank 0's seed of this loader (seed=None "
            f"with sharding; a loader of kind {topic!r}, the first of its kind in this job) and "
            "rank 0 did not build it: a loader built on some ranks only. Pass seed=<int>, the "
            "same on every rank, or shard=None for a loader that this rank alone uses (it "
            "then reads all the data)"
        ) from e
    return int(store.get(key))

