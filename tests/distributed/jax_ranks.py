"""The code each process of the JAX job runs (tests/distributed/test_jax.py starts two).

Each process joins a two-process JAX job (``jax.distributed.initialize``, CPU), seeds NumPy's
global generator differently from the other, builds a loader with neither ``shard=`` nor
``seed=`` and prints what it delivered as JSON.
"""

from __future__ import annotations

import json
import sys

import jax
import numpy as np

from minibatcher import DataLoader

N, BATCH = 101, 5


def main(process_id: int, port: int) -> None:
    jax.distributed.initialize(
        coordinator_address=f"127.0.0.1:{port}", num_processes=2, process_id=process_id
    )
    try:
        np.random.seed(process_id)  # a seed drawn locally would differ: it must come from rank 0
        dl = DataLoader(range(N), batch_size=BATCH, shuffle=True)
        items = [int(x) for batch in dl for x in batch]
        print(json.dumps({"shard": dl.shard, "seed": dl.seed, "items": items, "len": len(dl)}))
    finally:
        jax.distributed.shutdown()


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]))
