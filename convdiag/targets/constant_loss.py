"""The loss of the best constant predictor under BCE, CenterNet focal and sigmoid focal loss:
the "learned nothing" reference every loss is compared with."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

FOCAL_ALPHA, FOCAL_BETA = 2.0, 4.0


def _softplus(z: np.ndarray | float) -> np.ndarray:
    return np.logaddexp(0.0, z)


def _minimise_logit(f: Callable[[np.ndarray], np.ndarray]) -> float:
    """min over z of f(z) (f vectorised): a grid over [-40, 40], then bounded Brent."""
    from scipy.optimize import minimize_scalar

    grid = np.linspace(-40.0, 40.0, 4001)
    vals = f(grid)
    k = int(np.argmin(vals))
    lo, hi = grid[max(k - 1, 0)], grid[min(k + 1, len(grid) - 1)]
    res = minimize_scalar(
        lambda z: float(f(np.array([z]))[0]),
        bounds=(lo, hi),
        method="bounded",
        options={"xatol": 1e-12},
    )
    return float(min(vals[k], res.fun))


def constant_loss(
    loss: str,
    n_cells: float,
    n_pos: float,
    sum_y: float,
    sum_neg_weight: float,
    pos_weight: float | None = None,
    alpha: float = FOCAL_ALPHA,
    beta: float = FOCAL_BETA,
    sf_alpha: float = 0.25,
    sf_gamma: float = 2.0,
) -> float:
    """Loss of the best constant predictor p (minimised over p), normalised as in training.

    n_cells: cells C; n_pos: cells with y == 1; sum_y: S1 = sum of labels;
    sum_neg_weight: sum over cells with y < 1 of (1 - y)^beta.

    - ``bce``: mean over cells of -[w y log p + (1 - y) log(1 - p)], w = pos_weight or 1.
      Closed form: p* = w S1 / (w S1 + S0), S0 = C - S1; L = -(w S1 log p* + S0 log(1-p*)) / C.
    - ``focal`` (CenterNet): (-n_pos (1-p)^alpha log p - sum_neg_weight p^alpha log(1-p))
      / max(1, n_pos).
    - ``sigmoid-focal``: (-a S1 (1-p)^g log p - (1-a) S0 p^g log(1-p)) / max(1, n_pos).

    The focal forms are minimised numerically over the logit. 0 when either side is empty.
    """
    c, s1 = float(n_cells), float(sum_y)
    if c <= 0:
        return 0.0
    s0 = max(c - s1, 0.0)
    if loss == "bce":
        w = 1.0 if pos_weight is None else float(pos_weight)
        a, b = w * s1, s0
        if a <= 0 or b <= 0:
            return 0.0
        p = a / (a + b)
        return float(-(a * math.log(p) + b * math.log1p(-p)) / c)
    if loss == "focal":
        a, b, ga, gb = float(n_pos), float(sum_neg_weight), alpha, alpha
    elif loss == "sigmoid-focal":
        a, b, ga, gb = sf_alpha * s1, (1 - sf_alpha) * s0, sf_gamma, sf_gamma
    else:
        raise ValueError(f"unknown loss {loss!r}")
    if a <= 0 or b <= 0:
        return 0.0
    norm = max(1.0, float(n_pos))

    def f(z: np.ndarray) -> np.ndarray:
        p = 1.0 / (1.0 + np.exp(-z))
        return (a * (1 - p) ** ga * _softplus(-z) + b * p**gb * _softplus(z)) / norm

    return _minimise_logit(f)
