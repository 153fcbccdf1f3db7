"""Samplers: the order of each epoch's indices, as a pure function of (seed, epoch).

Any iterable of indices works as ``DataLoader(sampler=...)`` and any iterable of index lists as
``batch_sampler=``; the samplers here are sliced rather than iterated, cost nothing per index,
and make exact resume and sharding possible without storing a permutation.
"""

from __future__ import annotations

from .base import ArrayOrder, RangeOrder, Sampler
from .batch import BatchSampler, EpochPlan, IterablePlan, SlicedPlan, batch_count
from .bucket import BucketBatchSampler
from .groups import ShardShuffleSampler
from .order import RandomSampler, SequentialSampler, SubsetRandomSampler, SubsetSampler
from .permutation import LazyPermutation
from .shard import ShardedOrder, ShardSpec
from .weighted import WeightedRandomSampler

__all__ = [
    "ArrayOrder",
    "BatchSampler",
    "BucketBatchSampler",
    "EpochPlan",
    "IterablePlan",
    "LazyPermutation",
    "RandomSampler",
    "RangeOrder",
    "Sampler",
    "SequentialSampler",
    "ShardShuffleSampler",
    "ShardSpec",
    "ShardedOrder",
    "SlicedPlan",
    "SubsetRandomSampler",
    "SubsetSampler",
    "WeightedRandomSampler",
    "batch_count",
]
