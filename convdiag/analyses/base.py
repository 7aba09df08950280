"""What every streaming analysis sees per batch, and the protocol it follows.

``analyze`` makes one pass over the dataset. For each batch and each output level it builds
one ``AnalysisStep`` (logits detached, labels, the per-cell gradient of the summed
classification loss, decoded peaks, cell regions) and hands it to every analysis of that
level. An analysis keeps fixed-size accumulators only (running sums, fixed-bin histograms,
grid-aligned maps up to the largest grid), so memory does not grow with the dataset, and
sums per-cell quantities that it normalises once in ``compute()``, so batch size 1 and 32
give the same numbers (DESIGN.md "Analyses are batch-invariant"). ``state()`` returns the
accumulators as plain arrays and ``merge(state)`` adds another process's, for all-reduce.

Cell regions (``REGION_*``), exclusive, on the image's own grid: target cells (label == 1),
their soft neighbourhood (0 < soft label < 1, soft labels of ``AnalysisContext.neighbourhood``),
false-positive hotspots (other cells scoring >= the threshold) and background (the rest).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from torch import Tensor

from convdiag.load.recipe import Recipe
from convdiag.targets.decode import Detections
from convdiag.targets.labels import LabelBatch

REGION_INVALID, REGION_BACKGROUND, REGION_TARGET, REGION_NEAR, REGION_HOTSPOT = -1, 0, 1, 2, 3
REGION_NAMES = ("background", "target", "neighbourhood", "hotspot")


@dataclass
class Candidate:
    """A counterfactual training loss: the recipe with one remedy applied (or none).

    name: "current" or the remedy id; params: the remedy parameters; recipe: the resulting
    recipe, whose labels at progress 1 and plain classification loss define the gradient.
    """

    name: str
    recipe: Recipe
    remedy: str | None = None
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class AnalysisContext:
    """Settings shared by the analyses of one level.

    recipe: the training recipe; threshold: the reporting score threshold; radius: the
    match radius (px); neighbourhood: (kernel, sigma, trunc) of the soft window that defines
    the neighbourhood region; candidates: counterfactual losses (the first is "current");
    max_grid: the largest image grid (h, w) of the dataset at this level; example_index:
    the dataset index of the image shown in plots (None: the first holding a target).
    """

    level: str
    stride: int
    recipe: Recipe
    threshold: float = 0.5
    radius: float = 3.0
    neighbourhood: tuple[int, float, float] = (3, 1.0, 0.1)
    candidates: list[Candidate] = field(default_factory=list)
    max_grid: tuple[int, int] = (1, 1)
    example_index: int | None = None


@dataclass
class AnalysisStep:
    """One batch at one level, as the analyses see it.

    images [B, 1, Hp, Wp]; sizes: each image's own (H, W); points: per image [N, 2] (x, y);
    indices: dataset indices. logits [B, 1, h, w] float64, detached, non-finite values
    replaced by 0; reg [B, 2, h, w] float64 or None; labels: the recipe's labels;
    valid / target bool [B, 1, h, w]; region int8 [B, 1, h, w] (REGION_*);
    cell_grad [B, 1, h, w] float64 = |d(sum of per-cell cls losses) / d logit| by autograd;
    scores = sigmoid(logits); preds: decoded peaks at threshold 0 (top 100 per image);
    nonfinite_cls / nonfinite_reg: counts of NaN or Inf values inside the images' grids;
    param_grads: {"cls": flat grad of the summed cls loss w.r.t. the cls head parameters,
    "reg": of the summed offset L1 w.r.t. the reg head parameters} (None when unavailable).
    """

    ctx: AnalysisContext
    images: Tensor
    sizes: list[tuple[int, int]]
    points: list[np.ndarray]
    indices: list[int]
    logits: Tensor
    reg: Tensor | None
    labels: LabelBatch
    valid: Tensor
    target: Tensor
    region: Tensor
    cell_grad: Tensor
    scores: Tensor
    preds: Detections
    nonfinite_cls: int = 0
    nonfinite_reg: int = 0
    param_grads: dict[str, Tensor | None] | None = None


@runtime_checkable
class Analysis(Protocol):
    """A streaming analysis: ``update`` per step, ``compute`` once, ``state``/``merge``."""

    name: str

    def update(self, step: AnalysisStep) -> None:
        """Add one batch."""

    def compute(self) -> dict[str, Any]:
        """The result as plain data (JSON-ready: numbers, strings, short lists)."""

    def state(self) -> dict[str, np.ndarray]:
        """Accumulators as plain arrays."""

    def merge(self, state: dict[str, np.ndarray]) -> None:
        """Add another instance's ``state()`` (e.g. from another process)."""

    def arrays(self) -> dict[str, Any]:
        """Large arrays for plots only (maps, example images); never written to JSON."""


class SumState:
    """Accumulators that merge by addition: a dict of float64/int64 numpy arrays."""

    name = "base"

    def __init__(self) -> None:
        self._s: dict[str, np.ndarray] = {}

    def _add(self, key: str, value: Any) -> None:
        v = value.detach().cpu().numpy() if isinstance(value, Tensor) else np.asarray(value)
        if key in self._s:
            self._s[key] = self._s[key] + v
        else:
            self._s[key] = np.array(v, dtype=np.float64, copy=True)

    def _get(self, key: str, shape: Sequence[int] = ()) -> np.ndarray:
        return self._s.get(key, np.zeros(tuple(shape)))

    def state(self) -> dict[str, np.ndarray]:
        """Accumulators as plain arrays (copies)."""
        return {k: v.copy() for k, v in self._s.items()}

    def merge(self, state: dict[str, np.ndarray]) -> None:
        """Add another instance's accumulators."""
        for k, v in state.items():
            self._add(k, np.asarray(v, dtype=np.float64))

    def arrays(self) -> dict[str, Any]:
        """No plot-only arrays by default."""
        return {}


# --------------------------------------------------------------------------- histograms

# Fine logit bins for ranking (AUC) and quantiles: [-30, 30] in steps of 0.02, clipped.
LOGIT_LO, LOGIT_HI, LOGIT_STEP = -30.0, 30.0, 0.02
N_LOGIT_BINS = round((LOGIT_HI - LOGIT_LO) / LOGIT_STEP)
# Per-cell gradient magnitudes: log10 bins over [1e-14, 1e4], 20 per decade; 0 counted apart.
LOG_G_LO, LOG_G_HI, LOG_G_PER_DECADE = -14.0, 4.0, 20
N_LOG_G_BINS = round((LOG_G_HI - LOG_G_LO) * LOG_G_PER_DECADE)


def logit_bins(z: Tensor) -> Tensor:
    """Bin index (int64) of logits z in the fine logit histogram, clipped to its ends."""
    idx = torch.floor((z - LOGIT_LO) / LOGIT_STEP)
    return idx.clamp(0, N_LOGIT_BINS - 1).long()


def logit_edges() -> np.ndarray:
    """Edges [N_LOGIT_BINS + 1] of the fine logit histogram."""
    return LOGIT_LO + LOGIT_STEP * np.arange(N_LOGIT_BINS + 1)


def count_bins(idx: Tensor, nbins: int, weights: Tensor | None = None) -> np.ndarray:
    """Histogram counts (or weight sums) of bin indices: float64 [nbins]."""
    if idx.numel() == 0:
        return np.zeros(nbins)
    w = None if weights is None else weights.double().reshape(-1)
    return torch.bincount(idx.reshape(-1), weights=w, minlength=nbins).double().cpu().numpy()


def grad_bins(g: Tensor) -> Tensor:
    """Bin index of positive gradient magnitudes g in the log10 histogram, clipped."""
    lg = torch.log10(g.clamp(min=1e-300))
    idx = torch.floor((lg - LOG_G_LO) * LOG_G_PER_DECADE)
    return idx.clamp(0, N_LOG_G_BINS - 1).long()


def hist_quantile(counts: np.ndarray, edges: np.ndarray, q: float) -> float | None:
    """Quantile q in [0, 1] of a histogram, linear within the bin; None when empty."""
    total = float(counts.sum())
    if total <= 0:
        return None
    cum = np.cumsum(counts)
    k = int(np.searchsorted(cum, q * total, side="left"))
    k = min(k, len(counts) - 1)
    below = cum[k - 1] if k > 0 else 0.0
    frac = 0.0 if counts[k] == 0 else (q * total - below) / counts[k]
    return float(edges[k] + min(max(frac, 0.0), 1.0) * (edges[k + 1] - edges[k]))


def auc_from_hists(pos: np.ndarray, neg: np.ndarray) -> float | None:
    """P(score_pos > score_neg) + 0.5 P(equal bin), from two histograms on the same bins.

    AUC = sum_k pos[k] (sum_{j<k} neg[j] + neg[k] / 2) / (sum pos * sum neg); None when
    either side is empty. Exact when no positive shares a bin with a negative.
    """
    p, n = float(pos.sum()), float(neg.sum())
    if p <= 0 or n <= 0:
        return None
    below = np.cumsum(neg) - neg
    return float((pos * (below + 0.5 * neg)).sum() / (p * n))


def mass_fraction_cells(
    counts: np.ndarray, mass: np.ndarray, zeros: float, share: float = 0.9
) -> float | None:
    """Fraction of cells that carry ``share`` of the gradient mass, from a log histogram.

    counts/mass [N_LOG_G_BINS]: cells and summed |g| per bin; zeros: cells with g == 0.
    Cells are taken from the largest bin down; inside the crossing bin every cell is taken
    to hold the bin's mean value. None when there is no mass.
    """
    total_cells = float(counts.sum() + zeros)
    total_mass = float(mass.sum())
    if total_cells <= 0 or total_mass <= 0:
        return None
    need = share * total_mass
    taken_cells, taken_mass = 0.0, 0.0
    for k in range(len(counts) - 1, -1, -1):
        if counts[k] == 0:
            continue
        if taken_mass + mass[k] >= need:
            mean = mass[k] / counts[k]
            taken_cells += (need - taken_mass) / mean if mean > 0 else counts[k]
            return taken_cells / total_cells
        taken_cells += counts[k]
        taken_mass += mass[k]
    return taken_cells / total_cells


def to_plain(v: Any) -> Any:
    """numpy scalars and arrays to Python numbers and lists (recursively)."""
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, np.floating | np.integer):
        return v.item()
    if isinstance(v, dict):
        return {k: to_plain(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [to_plain(x) for x in v]
    return v


def safe_div(a: float, b: float) -> float | None:
    """a / b, or None when b is 0."""
    return float(a) / float(b) if b else None
