"""Pyramid levels, grids and point <-> cell conversion (DESIGN.md "Levels").

Coordinates are continuous pixel coordinates: pixel (row r, col c) covers
[c, c+1) x [r, r+1). A point is (x, y). Level ``Pk`` has stride ``s = 2**k``;
a target at (x, y) belongs to cell (i, j) = (floor(y/s), floor(x/s)) and its
offset target is (x/s - j, y/s - i) in [0, 1)^2. Sizes are (H, W) everywhere.
"""

from __future__ import annotations

import math
import re

import numpy as np

from convdiag.errors import InputError
from convdiag.load.levels import LEVEL_NAMES as LEVEL_NAMES  # re-exported
from convdiag.load.levels import MAX_LEVEL as MAX_LEVEL
from convdiag.load.levels import level_name as level_name
from convdiag.load.levels import stride_of as stride_of


def parse_levels(text: str) -> list[str]:
    """Parse ``"P2,P3,p4"`` (or strides ``"4,8"``) into canonical names, order kept, no repeats."""
    names: list[str] = []
    for part in text.split(","):
        if not part.strip():
            raise InputError(f"bad level list {text!r}: empty entry")
        name = level_name(part.strip())
        if name not in names:
            names.append(name)
    return names


def grid_size(image_size: tuple[int, int], level: str | int) -> tuple[int, int]:
    """Grid (h, w) = (ceil(H/s), ceil(W/s)) of an image of size (H, W) at a level."""
    s = stride_of(level)
    h, w = image_size
    return (math.ceil(h / s), math.ceil(w / s))


def point_to_cell(points: np.ndarray, level: str | int) -> np.ndarray:
    """Cells of points. points: [N, 2] (x, y) -> int64 [N, 2] (i, j) = (floor(y/s), floor(x/s))."""
    s = stride_of(level)
    p = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    return np.stack([np.floor(p[:, 1] / s), np.floor(p[:, 0] / s)], axis=1).astype(np.int64)


def offset_targets(points: np.ndarray, level: str | int) -> np.ndarray:
    """Offset targets [N, 2] (dx, dy) = (x/s - j, y/s - i), each in [0, 1)."""
    s = stride_of(level)
    p = np.asarray(points, dtype=np.float64).reshape(-1, 2) / s
    return (p - np.floor(p)).astype(np.float64)


def cell_to_point(
    cells: np.ndarray, level: str | int, offsets: np.ndarray | None = None
) -> np.ndarray:
    """Decode cells [N, 2] (i, j) with offsets [N, 2] (dx, dy) to points [N, 2] (x, y).

    x = (j + dx) * s, y = (i + dy) * s; without offsets the cell centre (dx = dy = 0.5).
    """
    s = stride_of(level)
    c = np.asarray(cells, dtype=np.float64).reshape(-1, 2)
    off = (
        np.full_like(c, 0.5) if offsets is None else np.asarray(offsets, np.float64).reshape(-1, 2)
    )
    return np.stack([(c[:, 1] + off[:, 0]) * s, (c[:, 0] + off[:, 1]) * s], axis=1)


def quantization_error(points: np.ndarray, level: str | int) -> np.ndarray:
    """Distance in pixels [N] from each point to the centre of its cell."""
    p = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    centres = cell_to_point(point_to_cell(p, level), level)
    return np.hypot(*(p - centres).T) if len(p) else np.zeros(0)


def parse_size(text: str) -> tuple[int, int]:
    """Parse ``"480x640"`` (height x width) into (H, W)."""
    m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if not m or int(m.group(1)) < 1 or int(m.group(2)) < 1:
        raise InputError(f"bad size {text!r}: use HEIGHTxWIDTH, e.g. 480x640")
    return (int(m.group(1)), int(m.group(2)))
