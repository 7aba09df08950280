"""Reading progress of the streaming log readers, for a progress bar the caller draws.

The readers call ``tick(position)`` every ``EVERY`` lines with the byte position reached;
``reporting(callback)`` sets, for the calls inside it, the function that receives that
position. Without a callback ``tick`` does nothing, so the library stays silent unless a
command asks for a bar.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

EVERY = 4096  # lines between two ticks
_CALLBACK: ContextVar[Callable[[int], None] | None] = ContextVar("log_progress", default=None)


def tick(position: int) -> None:
    """Tell the current callback (if any) that ``position`` bytes of the file are read."""
    cb = _CALLBACK.get()
    if cb is not None:
        cb(position)


@contextmanager
def reporting(callback: Callable[[int], None]) -> Iterator[None]:
    """Within the block, the readers' ``tick``s go to ``callback(position_bytes)``."""
    token = _CALLBACK.set(callback)
    try:
        yield
    finally:
        _CALLBACK.reset(token)
