"""JAX and forked workers: one warning per process that forked workers must not call JAX, and
JAX's own fork warning silenced where ours was said (``processes.py`` forks through these).

In: whether JAX is imported. Out: warnings. State: whether ours was said in this process.
"""

from __future__ import annotations

import contextlib
import sys
import warnings
from collections.abc import Iterator

_jax_warned = False


def warn_if_jax_forked() -> None:
    """Say once per process that forked workers must not use JAX, when JAX is imported.

    JAX runs threads from its first use, and a forked child that calls JAX can deadlock. The
    loader keeps JAX out of workers itself (``output="jax"`` converts in the main process);
    only a dataset or transform that calls JAX is at risk.
    """
    global _jax_warned
    if _jax_warned or "jax" not in sys.modules:
        return
    _jax_warned = True
    warnings.warn(
        "minibatcher forks its worker processes and JAX is imported in this process: JAX is "
        "multithreaded and a forked worker that calls JAX can deadlock. Keep JAX out of the "
        "dataset, transforms and collate_fn (output='jax' converts batches in the main "
        "process), or pass mp_context='spawn' or worker_type='thread'. (Said once.)",
        RuntimeWarning,
        stacklevel=4,
    )


@contextlib.contextmanager
def jax_fork_warnings_said() -> Iterator[None]:
    """JAX's own fork warning silenced: it repeats, per worker and epoch, what was said once."""
    with warnings.catch_warnings():
        if "jax" in sys.modules:
            warnings.filterwarnings("ignore", r"os\.fork\(\) was called", RuntimeWarning)
        yield
