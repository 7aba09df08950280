"""Target size and contrast, measured on the images (the labels hold points only).

Each target's (2R+1)^2 pixel patch around its point is fitted by least squares with
a G_sigma + b, G_sigma(u, v) = exp(-((u - x)^2 + (v - y)^2) / (2 sigma^2)) at the pixel
centres (u, v), for sigma on a grid; the best sigma with a > 0 wins. The target radius is
the half width at half maximum, sigma sqrt(2 ln 2) (the radius of the half-peak mask a
Gaussian spot makes), and the contrast-to-noise a / std(residual). A few images suffice:
the median of up to ``max_images`` images' targets is used to pick soft-label sigma.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from convdiag.load.sample import PointDataset

SIGMAS = np.round(np.arange(0.4, 6.01, 0.1), 2)
HWHM = math.sqrt(2 * math.log(2))


def fit_spots(image: np.ndarray, points: np.ndarray, half: int = 4) -> np.ndarray:
    """Fit each point's patch; returns [K, 3] (sigma px, amplitude, contrast-to-noise).

    Points whose patch leaves the image are skipped. image: float [H, W]; points [N, 2].
    """
    h, w = image.shape
    d = np.arange(-half, half + 1)
    rows = []
    for x, y in np.asarray(points, dtype=np.float64).reshape(-1, 2):
        r0, c0 = math.floor(y), math.floor(x)
        if r0 - half < 0 or c0 - half < 0 or r0 + half >= h or c0 + half >= w:
            continue
        patch = image[r0 - half : r0 + half + 1, c0 - half : c0 + half + 1].astype(np.float64)
        dy = (r0 + d + 0.5 - y)[:, None]
        dx = (c0 + d + 0.5 - x)[None, :]
        r2 = (dx**2 + dy**2).reshape(-1)
        g = np.exp(-r2[None, :] / (2 * SIGMAS[:, None] ** 2))  # [S, P]
        v = patch.reshape(-1)
        gc = g - g.mean(1, keepdims=True)
        vc = v - v.mean()
        var = (gc**2).sum(1)
        a = (gc @ vc) / np.maximum(var, 1e-12)
        resid = ((vc[None, :] - a[:, None] * gc) ** 2).sum(1)
        resid = np.where(a > 0, resid, np.inf)
        k = int(np.argmin(resid))
        if not np.isfinite(resid[k]):
            continue
        noise = math.sqrt(resid[k] / max(len(v) - 2, 1))
        rows.append((SIGMAS[k], a[k], a[k] / noise if noise > 0 else np.inf))
    return np.array(rows, dtype=np.float64).reshape(-1, 3)


def measure_targets(
    ds: PointDataset, indices: Sequence[int] | None = None, max_images: int = 32
) -> dict[str, Any]:
    """Median target sigma / radius (px) and contrast over the first images with targets.

    Returns {"images", "targets", "sigma_px", "radius_px" (HWHM), "amplitude",
    "contrast_to_noise"} (None values when nothing could be fitted).
    """
    order = list(range(len(ds))) if indices is None else list(indices)
    fits, used = [], 0
    for i in order:
        if used >= max_images:
            break
        rec = ds.records[i]
        if not len(rec.points):
            continue
        fits.append(fit_spots(ds.reader(rec), rec.points))
        used += 1
    f = np.concatenate(fits) if fits else np.zeros((0, 3))
    med = np.median(f, axis=0) if len(f) else None
    return {
        "images": used,
        "targets": len(f),
        "sigma_px": None if med is None else float(med[0]),
        "radius_px": None if med is None else float(med[0] * HWHM),
        "amplitude": None if med is None else float(med[1]),
        "contrast_to_noise": None if med is None else float(med[2]),
    }
