"""Hard and soft heatmap labels and batch rendering for training (schedules: ``schedules``).

Conventions (DESIGN.md "Labels"): a target at (x, y) belongs to cell (i, j) =
(floor(y/s), floor(x/s)) of the level's grid ceil(H/s) x ceil(W/s).

- Hard labels: 1.0 at every target cell, 0 elsewhere.
- Soft labels (k, sigma, trunc): in the k x k window around the target cell,
  ``y = exp(-((i'-i)^2 + (j'-j)^2) / (2 sigma^2))`` (the target cell is exactly 1.0);
  values below ``trunc`` become 0; several targets combine by maximum; cells outside the
  grid are dropped (the window is clipped at the image border).
  For an even k the window takes the k/2 cells on either side of the cell edge nearest the
  target along each axis: the right (bottom) edge when the offset dx (dy) >= 0.5, else the
  left (top) edge. So a window starts at displacement ``-(k // 2) + [k even and o >= 0.5]``.

Targets whose cell lies outside the grid (points outside the image) get no label.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from convdiag.errors import InputError
from convdiag.targets.geometry import grid_size, stride_of
from convdiag.targets.schedules import DYNAMIC, Schedule, parse_schedule  # re-exported

__all__ = [
    "DEFAULT_KERNEL",
    "DEFAULT_SIGMA",
    "DEFAULT_TRUNC",
    "DYNAMIC",
    "LabelBatch",
    "Schedule",
    "batch_heatmap",
    "check_soft_params",
    "displacement_table",
    "parse_schedule",
    "render_batch",
    "render_heatmap",
    "soft_kernel_weights",
    "window_start",
]

DEFAULT_KERNEL = 3
DEFAULT_SIGMA = 1.0
DEFAULT_TRUNC = 0.1


# --------------------------------------------------------------------------- soft windows


def check_soft_params(kernel: int, sigma: float, trunc: float) -> None:
    """Raise InputError unless kernel >= 1 (int), sigma > 0 (finite) and 0 <= trunc <= 1."""
    if isinstance(kernel, bool) or not isinstance(kernel, int | np.integer) or kernel < 1:
        raise InputError(f"--kernel {kernel!r}: must be an integer >= 1")
    if not (math.isfinite(float(sigma)) and float(sigma) > 0):
        raise InputError(f"--sigma {sigma!r}: must be a positive number")
    if not 0.0 <= float(trunc) <= 1.0:
        raise InputError(f"--trunc {trunc!r}: must be in [0, 1]")


def window_start(offset: np.ndarray | float, kernel: int) -> np.ndarray:
    """First displacement (in cells, relative to the target cell) of the soft window per axis.

    offset: offsets in [0, 1) (any shape) -> int64 of the same shape,
    ``-(k // 2) + (k even and offset >= 0.5)``. Odd k: -(k-1)/2 always.
    """
    o = np.asarray(offset, dtype=np.float64)
    base = -(int(kernel) // 2)
    if kernel % 2:
        return np.full(o.shape, base, dtype=np.int64)
    return base + (o >= 0.5).astype(np.int64)


def displacement_table(kernel: int, sigma: float, trunc: float) -> tuple[np.ndarray, int]:
    """Truncated Gaussian over displacements d in [-R, R] per axis, R = k // 2 + 1.

    Returns (T float64 [2R+1, 2R+1], R) with
    ``T[dy + R, dx + R] = exp(-(dy^2 + dx^2) / (2 sigma^2))`` and values < trunc set to 0.
    Every window of either even-k shift lies inside it. T[R, R] == 1.0 exactly.
    """
    r = int(kernel) // 2 + 1
    d = np.arange(-r, r + 1, dtype=np.float64)
    t = np.exp(-(d[:, None] ** 2 + d[None, :] ** 2) / (2.0 * float(sigma) ** 2))
    t[t < float(trunc)] = 0.0
    return t, r


def soft_kernel_weights(
    offset_xy: tuple[float, float],
    kernel: int = DEFAULT_KERNEL,
    sigma: float = DEFAULT_SIGMA,
    trunc: float = DEFAULT_TRUNC,
) -> np.ndarray:
    """Soft window of one target with offset (dx, dy): float64 [k, k] (rows = y).

    Entry [a, b] is the label of the cell at displacement
    (window_start(dy) + a, window_start(dx) + b) from the target cell, before clipping at
    the image border and before combining with other targets.
    """
    check_soft_params(kernel, sigma, trunc)
    t, r = displacement_table(kernel, sigma, trunc)
    sy = int(window_start(offset_xy[1], kernel)) + r
    sx = int(window_start(offset_xy[0], kernel)) + r
    return t[sy : sy + kernel, sx : sx + kernel].copy()


def _as_points(points: Any, name: str = "points") -> np.ndarray:
    if isinstance(points, torch.Tensor):
        points = points.detach().cpu().double().numpy()
    p = np.asarray(points, dtype=np.float64)
    if p.size == 0:
        return np.zeros((0, 2), dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != 2:
        raise InputError(f"{name}: expected an [N, 2] array of (x, y), got shape {p.shape}")
    if not np.isfinite(p).all():
        raise InputError(f"{name}: non-finite coordinates")
    return p


def _soft_window_entries(
    cells: np.ndarray, offsets: np.ndarray, kernel: int, sigma: float, trunc: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Cells and values of every target's soft window, before clipping.

    cells int64 [N, 2] (i, j), offsets [N, 2] (dx, dy) -> (target index [M], row [M],
    col [M], value float64 [M]), M = N k^2 with zero (truncated) entries removed.
    """
    t, r = displacement_table(kernel, sigma, trunc)
    d = np.arange(kernel)
    dy = window_start(offsets[:, 1], kernel)[:, None] + d  # [N, k]
    dx = window_start(offsets[:, 0], kernel)[:, None] + d
    vals = t[dy[:, :, None] + r, dx[:, None, :] + r]  # [N, k, k]
    rows = np.broadcast_to((cells[:, 0, None] + dy)[:, :, None], vals.shape)
    cols = np.broadcast_to((cells[:, 1, None] + dx)[:, None, :], vals.shape)
    idx = np.broadcast_to(np.arange(len(cells))[:, None, None], vals.shape)
    keep = vals > 0
    return idx[keep], rows[keep], cols[keep], vals[keep]


# --------------------------------------------------------------------------- single image


def render_heatmap(
    points: Any,
    image_size: tuple[int, int],
    level: str | int,
    kernel: int | None = None,
    sigma: float | None = None,
    trunc: float = DEFAULT_TRUNC,
) -> np.ndarray:
    """Label map of one image: float32 [ceil(H/s), ceil(W/s)].

    points: [N, 2] (x, y) pixel coordinates (numpy or torch); image_size: (H, W).
    Hard (one 1.0 per target cell) when ``kernel`` is None (``sigma`` is then ignored);
    soft otherwise with ``sigma`` defaulting to 1.0: in the k x k window around the target
    cell (i, j), exp(-((i'-i)^2 + (j'-j)^2) / (2 sigma^2)), values below ``trunc`` set to 0,
    several targets combined by maximum (module docstring for even k).
    """
    p = _as_points(points)
    h, w = grid_size(image_size, level)
    s = stride_of(level)
    out = np.zeros((h, w), dtype=np.float32)
    scaled = p / s
    cells = np.floor(scaled[:, ::-1]).astype(np.int64)  # (i, j)
    inside = (cells[:, 0] >= 0) & (cells[:, 0] < h) & (cells[:, 1] >= 0) & (cells[:, 1] < w)
    cells, scaled = cells[inside], scaled[inside]
    if kernel is None:
        out[cells[:, 0], cells[:, 1]] = 1.0
        return out
    sigma = DEFAULT_SIGMA if sigma is None else sigma
    check_soft_params(kernel, sigma, trunc)
    offsets = scaled - cells[:, ::-1]
    _, rows, cols, vals = _soft_window_entries(cells, offsets, kernel, sigma, trunc)
    ok = (rows >= 0) & (rows < h) & (cols >= 0) & (cols < w)
    np.maximum.at(out, (rows[ok], cols[ok]), vals[ok].astype(np.float32))
    return out


# --------------------------------------------------------------------------- batches


@dataclass
class LabelBatch:
    """Training targets of a batch on a padded grid (h, w).

    heatmap: float32 [B, 1, h, w]; valid: bool [B, 1, h, w], True on the image's own grid
    ceil(H/s) x ceil(W/s) and False on padding; offset: float32 [B, 2, h, w] offset targets
    (dx, dy) at target cells, 0 elsewhere; offset_mask: bool [B, 1, h, w], True at target
    cells.
    """

    heatmap: torch.Tensor
    valid: torch.Tensor
    offset: torch.Tensor
    offset_mask: torch.Tensor

    def to(self, device: torch.device | str) -> LabelBatch:
        """The same batch on another device."""
        return LabelBatch(
            self.heatmap.to(device),
            self.valid.to(device),
            self.offset.to(device),
            self.offset_mask.to(device),
        )


def _concat_points(points: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate per-image points: -> (points float64 [N, 2], image index int64 [N])."""
    arrays = []
    for b, p in enumerate(points):
        if isinstance(p, np.ndarray) and p.ndim == 2 and p.shape[1] == 2:
            arrays.append(p)
        else:
            arrays.append(_as_points(p, f"points[{b}]"))
    counts = np.fromiter((len(a) for a in arrays), dtype=np.int64, count=len(arrays))
    if not arrays:
        return np.zeros((0, 2)), np.zeros(0, dtype=np.int64)
    pts = np.concatenate(arrays).astype(np.float64, copy=False)
    if not np.isfinite(pts).all():
        bad = next(b for b, a in enumerate(arrays) if not np.isfinite(a).all())
        raise InputError(f"points[{bad}]: non-finite coordinates")
    return pts, np.repeat(np.arange(len(arrays), dtype=np.int64), counts)


@dataclass
class _BatchCells:
    """Targets of a batch on the padded grid: image, cell, offset, own grid sizes."""

    img: np.ndarray  # int64 [N]
    ci: np.ndarray  # int64 [N] row
    cj: np.ndarray  # int64 [N] column
    off: np.ndarray  # float64 [N, 2] (dx, dy)
    hb: np.ndarray  # int64 [B] own grid height per image
    wb: np.ndarray  # int64 [B]
    grid: tuple[int, int]

    @property
    def flat(self) -> np.ndarray:
        gh, gw = self.grid
        return (self.img * gh + self.ci) * gw + self.cj


def _batch_cells(
    points: Sequence[Any],
    image_sizes: Sequence[tuple[int, int]],
    grid: tuple[int, int],
    level: str | int,
) -> _BatchCells:
    nb = len(points)
    if len(image_sizes) != nb:
        raise ValueError(f"{nb} point arrays but {len(image_sizes)} image sizes")
    s = stride_of(level)
    gh, gw = int(grid[0]), int(grid[1])
    sizes = np.asarray(image_sizes, dtype=np.int64).reshape(nb, 2)
    hb = -(-sizes[:, 0] // s)
    wb = -(-sizes[:, 1] // s)
    if nb and (hb.max() > gh or wb.max() > gw):
        raise ValueError(f"grid {grid} is smaller than an image's grid ({hb.max()}, {wb.max()})")
    pts, img = _concat_points(points)
    scaled = pts / s
    ci = np.floor(scaled[:, 1]).astype(np.int64)
    cj = np.floor(scaled[:, 0]).astype(np.int64)
    inside = (ci >= 0) & (ci < hb[img]) & (cj >= 0) & (cj < wb[img])
    if not inside.all():
        ci, cj, img, scaled = ci[inside], cj[inside], img[inside], scaled[inside]
    off = scaled - np.stack([cj, ci], axis=1)
    return _BatchCells(img, ci, cj, off, hb, wb, (gh, gw))


def _heatmap_from_cells(
    bc: _BatchCells,
    nb: int,
    kernel: int | None,
    sigma: float | None,
    trunc: float,
    dev: torch.device,
) -> torch.Tensor:
    gh, gw = bc.grid
    heat = torch.zeros(nb * gh * gw, dtype=torch.float32, device=dev)
    if kernel is None:
        heat[torch.from_numpy(bc.flat).to(dev)] = 1.0
        return heat.view(nb, 1, gh, gw)
    sig = DEFAULT_SIGMA if sigma is None else sigma
    check_soft_params(kernel, sig, trunc)
    t_idx, rows, cols, vals = _soft_window_entries(
        np.stack([bc.ci, bc.cj], axis=1), bc.off, kernel, sig, trunc
    )
    ti = bc.img[t_idx]
    ok = (rows >= 0) & (rows < bc.hb[ti]) & (cols >= 0) & (cols < bc.wb[ti])
    flat = (ti[ok] * gh + rows[ok]) * gw + cols[ok]
    heat.scatter_reduce_(
        0,
        torch.from_numpy(flat).to(dev),
        torch.from_numpy(vals[ok].astype(np.float32)).to(dev),
        reduce="amax",
    )
    return heat.view(nb, 1, gh, gw)


def batch_heatmap(
    points: Sequence[Any],
    image_sizes: Sequence[tuple[int, int]],
    grid: tuple[int, int],
    level: str | int,
    kernel: int | None = None,
    sigma: float | None = None,
    trunc: float = DEFAULT_TRUNC,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Only the heatmap of ``render_batch``: float32 [B, 1, h, w] (same arguments)."""
    dev = torch.device(device) if device is not None else torch.device("cpu")
    bc = _batch_cells(points, image_sizes, grid, level)
    return _heatmap_from_cells(bc, len(points), kernel, sigma, trunc, dev)


def render_batch(
    points: Sequence[Any],
    image_sizes: Sequence[tuple[int, int]],
    grid: tuple[int, int],
    level: str | int,
    kernel: int | None = None,
    sigma: float | None = None,
    trunc: float = DEFAULT_TRUNC,
    device: torch.device | str | None = None,
) -> LabelBatch:
    """Labels of a batch: per image b, points[b] [N_b, 2] (x, y) and image_sizes[b] (H, W).

    ``grid`` is the padded grid (h, w) of the batch, at least every image's own grid.
    Soft maps equal ``render_heatmap`` of each image, placed top-left; cells outside the
    image's own grid are 0 with valid=False. Offsets: a target cell holding several
    targets gets the offset of the one nearest the cell centre (ties: the first).
    Vectorised over all targets (one gather and one scatter-max), no loop over targets.
    """
    nb = len(points)
    dev = torch.device(device) if device is not None else torch.device("cpu")
    bc = _batch_cells(points, image_sizes, grid, level)
    gh, gw = bc.grid
    heat = _heatmap_from_cells(bc, nb, kernel, sigma, trunc, dev)

    # Offset winners: per cell the target nearest the centre, ties broken by input order.
    cell_flat = bc.flat
    dist = np.hypot(bc.off[:, 0] - 0.5, bc.off[:, 1] - 0.5)
    order = np.lexsort((np.arange(len(dist)), dist, cell_flat))
    first = np.ones(len(order), dtype=bool)
    first[1:] = cell_flat[order[1:]] != cell_flat[order[:-1]]
    win = order[first]
    hw = gh * gw
    offset = torch.zeros(nb * 2 * hw, dtype=torch.float32, device=dev)
    mask = torch.zeros(nb * hw, dtype=torch.bool, device=dev)
    if len(win):
        win_flat = cell_flat[win]
        mask[torch.from_numpy(win_flat).to(dev)] = True
        cell = win_flat - bc.img[win] * hw
        base = bc.img[win] * (2 * hw) + cell
        idx = np.concatenate([base, base + hw])
        vals = np.concatenate([bc.off[win, 0], bc.off[win, 1]]).astype(np.float32)
        offset[torch.from_numpy(idx).to(dev)] = torch.from_numpy(vals).to(dev)

    if nb == 0 or (bc.hb.min() == gh and bc.wb.min() == gw):
        valid = torch.ones(nb, 1, gh, gw, dtype=torch.bool, device=dev)
    else:
        # numpy: a broadcast bool AND is ~7x faster here than torch's on CPU
        rows = np.arange(gh)[None, :] < bc.hb[:, None]
        cols = np.arange(gw)[None, :] < bc.wb[:, None]
        valid = torch.from_numpy(rows[:, None, :, None] & cols[:, None, None, :]).to(dev)
    return LabelBatch(
        heatmap=heat,
        valid=valid,
        offset=offset.view(nb, 2, gh, gw),
        offset_mask=mask.view(nb, 1, gh, gw),
    )
