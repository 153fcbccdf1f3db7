"""The loader's options, validated once at construction.

Every check raises with the argument's name, the rule and the value
(``ValueError: batch_size must be a positive int, got 0``), so a wrong argument fails where it
was written, not at the first batch.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import numbers
from collections.abc import Callable, Iterable
from typing import Any, Literal

from ._seed import check_seed
from .errors import ConfigError

WorkerType = Literal["process", "thread"]
Uneven = Literal["pad", "drop", "allow"]
WORKER_TYPES = ("process", "thread")
UNEVEN_POLICIES = ("pad", "drop", "allow")
ON_ERROR_POLICIES = ("raise", "skip")


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value <= 0:
        raise ConfigError(f"{name} must be a positive int, got {value!r}")
    return int(value)


def _callable(value: Any, name: str) -> None:
    if value is not None and not callable(value):
        raise ConfigError(f"{name} must be callable or None, got {value!r}")


def _bool(value: Any, name: str) -> None:
    if not isinstance(value, bool):
        raise ConfigError(f"{name} must be a bool, got {value!r}")


@dataclasses.dataclass(frozen=True, kw_only=True)
class LoaderOptions:
    """Everything a :class:`~minibatcher.DataLoader` was asked to do, checked for consistency."""

    batch_size: int | None = 1
    shuffle: bool = False
    drop_last: bool = False
    seed: int | None = None
    sampler: Iterable[Any] | None = None
    batch_sampler: Iterable[Any] | None = None
    collate_fn: Callable[..., Any] | None = None
    transform: Callable[..., Any] | None = None
    batch_transform: Callable[..., Any] | None = None
    output: str = "auto"
    shuffle_buffer: int = 10_000
    num_workers: int | Literal["auto"] = 0
    worker_type: WorkerType = "process"
    prefetch: int = 2
    persistent_workers: bool = False
    in_order: bool = True
    timeout: float | None = None
    worker_init_fn: Callable[[int], Any] | None = None
    mp_context: str | None = None
    shard: Any = "detect"
    uneven: Uneven = "pad"
    progress: bool = False
    device: Any = None
    pin_memory: bool = False
    on_error: Literal["raise", "skip"] = "raise"

    def __post_init__(self) -> None:
        if self.batch_size is not None:
            _positive_int(self.batch_size, "batch_size")
        for name in (
            "shuffle", "drop_last", "persistent_workers", "in_order", "progress", "pin_memory"
        ):
            _bool(getattr(self, name), name)
        if self.seed is not None:
            try:
                check_seed(self.seed)
            except ValueError as e:
                raise ConfigError(str(e)) from None
        for name in ("sampler", "batch_sampler"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, Iterable):
                raise ConfigError(f"{name} must be an iterable of indices, got {value!r}")
        if self.sampler is not None and self.batch_sampler is not None:
            raise ConfigError("sampler and batch_sampler are mutually exclusive: pass one of them")
        if self.shuffle and (self.sampler is not None or self.batch_sampler is not None):
            which = "sampler" if self.sampler is not None else "batch_sampler"
            raise ConfigError(
                f"shuffle=True cannot be combined with {which}: the {which} decides the order "
                "(use a random sampler, or drop shuffle)"
            )
        if self.batch_sampler is not None:
            if self.batch_size not in (1, None):
                raise ConfigError(
                    "batch_size must be left unset with batch_sampler (the batch_sampler decides "
                    f"the batches), got batch_size={self.batch_size!r}"
                )
            if self.drop_last:
                raise ConfigError(
                    "drop_last=True cannot be combined with batch_sampler: the batch_sampler "
                    "decides the batches (give drop_last to the batch sampler)"
                )
        if self.batch_size is None and self.drop_last:
            raise ConfigError("drop_last=True needs a batch_size; got batch_size=None")
        for name in ("collate_fn", "transform", "batch_transform", "worker_init_fn"):
            _callable(getattr(self, name), name)
        _positive_int(self.shuffle_buffer, "shuffle_buffer")
        if self.on_error not in ON_ERROR_POLICIES:
            raise ConfigError(f"on_error must be 'raise' or 'skip', got {self.on_error!r}")
        self._check_workers()
        self._check_shard()

    def _check_workers(self) -> None:
        workers = self.num_workers
        if workers != "auto" and (
            isinstance(workers, bool) or not isinstance(workers, numbers.Integral) or workers < 0
        ):
            raise ConfigError(f"num_workers must be a non-negative int or 'auto', got {workers!r}")
        if self.worker_type not in WORKER_TYPES:
            raise ConfigError(
                f"worker_type must be 'process' or 'thread', got {self.worker_type!r}"
            )
        _positive_int(self.prefetch, "prefetch")
        if self.timeout is not None and (
            isinstance(self.timeout, bool)
            or not isinstance(self.timeout, numbers.Real)
            or not self.timeout > 0
        ):
            raise ConfigError(
                f"timeout must be a positive number of seconds or None, got {self.timeout!r}"
            )
        methods = multiprocessing.get_all_start_methods()
        if self.mp_context is not None and self.mp_context not in methods:
            raise ConfigError(
                f"mp_context must be None or one of {methods}, got {self.mp_context!r}"
            )
        if self.persistent_workers and workers == 0:  # type: ignore[comparison-overlap]
            raise ConfigError("persistent_workers=True needs num_workers > 0, got num_workers=0")

    def _check_shard(self) -> None:
        shard = self.shard
        if shard is not None and shard not in ("auto", "detect"):
            ok = (
                isinstance(shard, tuple)
                and len(shard) == 2
                and all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in shard)
                and shard[1] > 0
                and 0 <= shard[0] < shard[1]
            )
            if not ok:
                raise ConfigError(
                    "shard must be 'detect', 'auto', None or (rank, world_size) with "
                    f"0 <= rank < world_size, got {shard!r}"
                )
        if self.uneven not in UNEVEN_POLICIES:
            raise ConfigError(f"uneven must be 'pad', 'drop' or 'allow', got {self.uneven!r}")
