"""An optional tqdm bar while measuring (nothing drawn without tqdm or with progress off)."""

from __future__ import annotations

from typing import Any


class Bar:
    """``update(n)``, ``note(text)`` and ``close()``; a no-op without tqdm."""

    def __init__(self, total: float | None, description: str, enabled: bool, unit: str) -> None:
        self._bar: Any = None
        if enabled:
            try:
                from tqdm import tqdm
            except ImportError:
                return
            self._bar = tqdm(total=total, desc=description, unit=unit, leave=False,
                             dynamic_ncols=True)

    @property
    def active(self) -> bool:
        """Whether a bar is drawn."""
        return self._bar is not None

    def update(self, n: float = 1) -> None:
        """Advance the bar by ``n``."""
        if self._bar is not None:
            self._bar.update(n)

    def note(self, text: str) -> None:
        """Show ``text`` after the bar."""
        if self._bar is not None:
            self._bar.set_postfix_str(text, refresh=False)  # drawn at tqdm's own pace

    def close(self) -> None:
        """Remove the bar."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
