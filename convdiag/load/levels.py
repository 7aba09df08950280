"""Pyramid level names and strides: ``Pk`` has stride ``2**k``, P0..P6 (DESIGN.md "Levels").

The vocabulary options, recipes and model outputs share; grids and point <-> cell
conversion are ``convdiag.targets.geometry``.
"""

from __future__ import annotations

import re

import numpy as np

from convdiag.errors import InputError

MAX_LEVEL = 6
LEVEL_NAMES = tuple(f"P{k}" for k in range(MAX_LEVEL + 1))


def stride_of(level: str | int) -> int:
    """Stride in pixels of a level: ``"P2"``, ``"p2"`` and ``4`` all mean 4.

    Integers are strides (powers of two from 1 to 64); strings are level names P0..P6.
    Raises InputError for anything else.
    """
    if isinstance(level, bool):
        raise InputError(f"unknown level {level!r}: use P0..P{MAX_LEVEL} or a stride 1..64")
    if isinstance(level, int | np.integer):
        s = int(level)
        if s >= 1 and (s & (s - 1)) == 0 and s <= 2**MAX_LEVEL:
            return s
        raise InputError(f"unknown level {level!r}: a stride must be a power of two from 1 to 64")
    text = str(level).strip()
    m = re.fullmatch(r"[Pp](\d+)", text)
    if m and int(m.group(1)) <= MAX_LEVEL:
        return 2 ** int(m.group(1))
    if text.isdigit():
        return stride_of(int(text))
    raise InputError(
        f"unknown level {level!r}: use P0..P{MAX_LEVEL} (e.g. P2) or a stride (e.g. 4)"
    )


def level_name(level: str | int) -> str:
    """Canonical name ``"Pk"`` of a level given by name or stride."""
    return f"P{stride_of(level).bit_length() - 1}"
