"""The only place where randomness is derived.

Every random choice the loader makes (an epoch's permutation, a shuffle buffer's draws, the RNG a
transform receives, a worker's global seeds) is a pure function of the loader's seed and a few
integers, so a run can be replayed exactly and the output never depends on how many workers or
ranks do the work. Each use has its own stream id, so two uses never share random numbers.
"""

from __future__ import annotations

import sys

import numpy as np

# Stream ids: the first word after (seed, epoch) in every SeedSequence entropy tuple.
ORDER_STREAM = 0  # the epoch's permutation of indices (samplers)
ITEM_STREAM = 1  # the RNG handed to a per-item transform, keyed by the item's index
BATCH_STREAM = 2  # the RNG handed to a per-batch transform, keyed by the batch's index
WORKER_STREAM = 3  # the global seeds (random, numpy, torch) of one worker
BUFFER_STREAM = 4  # the draws of a shuffle buffer over an unsized iterable
PERMUTATION_KEY_STREAM = 5  # the round keys of a lazy (Feistel) permutation
BLOCK_STREAM = 6  # the permutation of one block of a shard-shuffled order, keyed by the block

SEED_BITS = 63


def draw_seed() -> int:
    """A seed drawn from the global generator the user seeds, so the usual seeding fixes it.

    torch's default generator when torch is imported (``torch.manual_seed``, Lightning's
    ``seed_everything``), else NumPy's global one (``np.random.seed``): the generators that
    torch's and fastai's loaders follow. Unseeded, each is seeded from the OS at start-up, so an
    unseeded program still gets a fresh seed every run. Drawing advances that generator by one
    draw, as constructing torch's ``RandomSampler`` iterator does.
    """
    torch = sys.modules.get("torch")
    if torch is not None and hasattr(torch, "empty"):
        value = int(torch.empty((), dtype=torch.int64).random_().item())
    else:
        value = int(np.random.randint(0, 2**SEED_BITS - 1, dtype=np.int64))
    return value & ((1 << SEED_BITS) - 1)


def check_seed(seed: object, name: str = "seed") -> int:
    """Return ``seed`` as an int, or raise a ValueError naming the argument."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"{name} must be a non-negative int or None, got {seed!r}")
    return int(seed)


def seed_sequence(seed: int, epoch: int, stream: int, *key: int) -> np.random.SeedSequence:
    """The SeedSequence of one use (``stream``) of randomness at ``(seed, epoch, *key)``."""
    return np.random.SeedSequence((seed, epoch, stream, *key))


def generator(seed: int, epoch: int, stream: int, *key: int) -> np.random.Generator:
    """A NumPy Generator for one use of randomness at ``(seed, epoch, *key)``."""
    return np.random.Generator(np.random.PCG64(seed_sequence(seed, epoch, stream, *key)))


def derived_int(seed: int, epoch: int, stream: int, *key: int, bits: int = 32) -> int:
    """A derived integer seed (for APIs that take an int, such as ``random.seed``)."""
    words = seed_sequence(seed, epoch, stream, *key).generate_state(2, np.uint32)
    value = (int(words[0]) << 32) | int(words[1])
    return value & ((1 << bits) - 1)
