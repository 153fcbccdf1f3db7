"""Progress bars for ``DataLoader(..., progress=True)``: one tqdm bar per epoch.

In: the epoch's iterator of batches and how many batches remain (None when unknown, e.g. a
generator). Out: the same batches, in the same order, with a bar drawn on stderr. State: none.

tqdm is optional and imported only here, only when a loader asks for a bar: the core never
imports it. :func:`require_tqdm` runs at the loader's construction so that a missing tqdm fails
where ``progress=True`` was written, not at the first epoch.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

INSTALL_HINT = "pip install 'minibatcher[progress]'"


def require_tqdm() -> Any:
    """Import tqdm, or raise an ImportError that says how to install it."""
    try:
        import tqdm
    except ImportError as e:
        raise ImportError(
            f"progress=True draws its bars with tqdm, which is not installed: {INSTALL_HINT} "
            "(or pip install tqdm), or pass progress=False"
        ) from e
    return tqdm


def progress_bar(batches: Iterator[Any], total: int | None, description: str) -> Iterator[Any]:
    """Yield ``batches`` unchanged while a tqdm bar counts them.

    The bar closes when the epoch ends, when the loop is left early, or when it raises.
    """
    tqdm = require_tqdm()
    bar = tqdm.tqdm(total=total, desc=description, unit="batch", leave=True, dynamic_ncols=True)
    try:
        for batch in batches:
            bar.update(1)
            yield batch
    finally:
        bar.close()
        close = getattr(batches, "close", None)
        if close is not None:
            close()  # stop the epoch (and its workers) now, not at garbage collection
