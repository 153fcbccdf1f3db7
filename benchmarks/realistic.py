"""The realistic workloads of ``../shared/BENCHMARKS.md``: W8-W10b, plus Parquet on disk.

Each runs minibatcher and PyTorch's DataLoader side by side (2 workers or threads), every cell in
a fresh subprocess through ``bench.py``'s harness; the data is made by the benchmark itself under
``$TMPDIR/minibatcher-bench`` (kept between cells and runs, remade if missing). One module per
family: ``realistic_images.py`` (W8), ``realistic_tokens.py`` (W9-W10p),
``realistic_parquet.py`` (Wpq, Wpqs)::

    .venv/bin/python benchmarks/realistic.py            # full sizes
    .venv/bin/python benchmarks/realistic.py --quick    # smaller sizes (labelled QUICK)
"""

from __future__ import annotations

import os
import sys

import realistic_images
import realistic_parquet
import realistic_tokens
from harness import Workload

WORKLOADS: tuple[Workload, ...] = (
    *realistic_images.WORKLOADS,
    *realistic_tokens.WORKLOADS,
    *realistic_parquet.WORKLOADS,
)
"""The realistic workloads, for ``bench.py``."""


def main(argv: list[str] | None = None) -> int:
    """Run only the realistic workloads through ``bench.py``'s runner (same options)."""
    import bench

    args = list(sys.argv[1:] if argv is None else argv)
    if "--only" not in args and "--cell" not in args:
        args += ["--only", ",".join(w.id for w in WORKLOADS)]
    return bench.main(args)


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    sys.exit(main())
