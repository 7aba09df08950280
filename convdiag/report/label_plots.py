"""The PNG plots of a ``labels`` report: the positive fraction per level (from the report
data) and the label overlays (from the arrays ``overlay_arrays`` computes, saved in
report.npz), so ``show --plots`` redraws both without the dataset."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from convdiag.report.saved_arrays import save_png


def plot_pos_fraction(stats: dict[str, Any], path: str | Path) -> None:
    """Bar chart per level: hard positive fraction and, if present, soft non-zero/mass fractions.

    Log scale, with the 1:1000 line the ``extreme-imbalance`` risk uses.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(stats["levels"])
    lv = [stats["levels"][n] for n in names]
    series: list[tuple[str, list[float | None]]] = [
        ("hard: positive cells", [v["pos_fraction"] for v in lv])
    ]
    if any(v.get("soft") for v in lv):
        series.append(
            (
                "soft: non-zero cells",
                [v["soft"]["nonzero_fraction"] if v["soft"] else None for v in lv],
            )
        )
        series.append(
            ("soft: label mass", [v["soft"]["mass_fraction"] if v["soft"] else None for v in lv])
        )
    fig, ax = plt.subplots(figsize=(1.6 + 1.5 * len(names), 3.8))
    width = 0.8 / len(series)
    x = np.arange(len(names))
    for k, (label, vals) in enumerate(series):
        ys = [v if v else np.nan for v in vals]
        bars = ax.bar(x + (k - (len(series) - 1) / 2) * width, ys, width, label=label)
        for b, v in zip(bars, vals, strict=True):
            if v:
                ax.annotate(
                    f"1:{1 / v - 1:,.0f}" if v < 0.5 else f"{v:.2f}",
                    (b.get_x() + b.get_width() / 2, v),
                    ha="center",
                    va="bottom",
                    fontsize=7,
                    rotation=90,
                    xytext=(0, 2),
                    textcoords="offset points",
                    bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.75},
                )
    ax.axhline(1 / 1001, color="crimson", lw=1, ls="--", label="1:1000 (extreme imbalance)")
    ax.set_yscale("log")
    ax.set_xticks(x, [f"{n}\n(stride {v['stride']})" for n, v in zip(names, lv, strict=True)])
    ax.set_ylabel("fraction of cells")
    lo = min([v for _, vals in series for v in vals if v] + [1e-4])
    ax.set_ylim(lo / 3, 1.0)
    ax.set_title("Positive fraction per level")
    ax.grid(axis="y", which="major", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left")
    save_png(fig, path)


def _crop_box(
    point: np.ndarray, size: tuple[int, int], crop: int
) -> tuple[float, float, float, float]:
    """(x0, x1, y0, y1) of a crop x crop window around point, kept inside the image."""
    h, w = size
    cw, ch = min(crop, w), min(crop, h)
    x0 = float(np.clip(point[0] - cw / 2, 0, w - cw))
    y0 = float(np.clip(point[1] - ch / 2, 0, h - ch))
    return x0, x0 + cw, y0, y0 + ch


def _focus_point(pts: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The target nearest the image centre (the image centre when there is none)."""
    h, w = size
    centre = np.array([w / 2, h / 2])
    if not len(pts):
        return centre
    return np.asarray(pts[np.argmin(np.hypot(*(pts - centre).T))], dtype=np.float64)


def overlay_arrays(
    samples: Sequence[tuple[str, np.ndarray, np.ndarray]],
    levels: Sequence[str],
    kernel: int,
    sigma: float,
    trunc: float,
) -> dict[str, Any]:
    """What the label overlay shows, as arrays: per sample (id, image float32 [H, W], points
    [N, 2] (x, y)) its image, points and, per level, the hard and the soft (``kernel``,
    ``sigma``, ``trunc``) label maps [H / s, W / s]. {"levels", "kernel", "sigma", "trunc",
    "samples": {"0": {"id", "image", "points", "labels": {level: {"hard", "soft"}}}}}."""
    from convdiag.targets.labels import render_heatmap

    out: dict[str, Any] = {
        "levels": np.asarray([str(lv) for lv in levels], dtype=str),
        "kernel": int(kernel),
        "sigma": float(sigma),
        "trunc": float(trunc),
        "samples": {},
    }
    for n, (ident, image, pts) in enumerate(samples):
        image = np.asarray(image)
        pts = np.asarray(pts, dtype=np.float64).reshape(-1, 2)
        size = image.shape[:2]
        out["samples"][str(n)] = {
            "id": str(ident),
            "image": image,
            "points": pts,
            "labels": {
                lv: {
                    "hard": render_heatmap(pts, size, lv, None, sigma, trunc),
                    "soft": render_heatmap(pts, size, lv, kernel, sigma, trunc),
                }
                for lv in levels
            },
        }
    return out


def plot_overlay(arrays: dict[str, Any], path: str | Path) -> None:
    """Label overlays from ``overlay_arrays`` (as read back from report.npz): per image (row)
    the whole image with its targets, then, per level, hard and soft labels upsampled onto a
    crop of 8 x 8 cells around one target (32 px at P2, 256 px at P5), so every level's cells
    show at the same scale."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import LinearSegmentedColormap

    from convdiag.targets.geometry import stride_of

    levels = [str(lv) for lv in np.atleast_1d(arrays["levels"])]
    kernel, sigma = int(arrays["kernel"]), float(arrays["sigma"])
    stored = arrays.get("samples") or {}
    samples = [stored[k] for k in sorted(stored, key=int)]
    strides = [stride_of(lv) for lv in levels]
    ncol = 1 + 2 * len(levels)
    nrow = max(len(samples), 1)
    fig, axes = plt.subplots(
        nrow, ncol, figsize=(1.9 * ncol + 0.6, 2.3 * nrow + 0.4), squeeze=False
    )
    label_cmap = LinearSegmentedColormap.from_list("lab", ["#3b0f70", "#e8534a", "#fcfdbf"])
    shown = None
    for row, smp in enumerate(samples):
        ident, image = smp["id"], smp["image"]
        h, w = image.shape
        pts = np.asarray(smp["points"], dtype=np.float64).reshape(-1, 2)
        focus = _focus_point(pts, (h, w))
        ax = axes[row, 0]
        ax.imshow(image, cmap="gray", extent=(0, w, h, 0), interpolation="nearest")
        if len(pts):
            ax.scatter(pts[:, 0], pts[:, 1], s=70, facecolors="none", edgecolors="cyan", lw=1)
            ax.scatter(
                [focus[0]], [focus[1]], s=140, facecolors="none", edgecolors="yellow", lw=1.2
            )
        ax.set_title(f"{ident} ({h}x{w})\n{len(pts)} target(s); yellow: zoomed", fontsize=7)
        for li, (lv, s) in enumerate(zip(levels, strides, strict=True)):
            x0, x1, y0, y1 = _crop_box(focus, (h, w), 8 * s)
            for kind in range(2):
                ax = axes[row, 1 + 2 * li + kind]
                soft = kind == 1
                lab = smp["labels"][lv]["soft" if soft else "hard"]
                gh, gw = lab.shape
                ax.imshow(image, cmap="gray", extent=(0, w, h, 0), interpolation="nearest")
                shown = ax.imshow(
                    np.ma.masked_equal(lab, 0),
                    cmap=label_cmap,
                    vmin=0,
                    vmax=1,
                    alpha=0.8,
                    extent=(0, gw * s, gh * s, 0),
                    interpolation="nearest",
                )
                for gx in np.arange(math.ceil(x0 / s) * s, x1, s):
                    ax.axvline(gx, color="white", lw=0.4, alpha=0.4)
                for gy in np.arange(math.ceil(y0 / s) * s, y1, s):
                    ax.axhline(gy, color="white", lw=0.4, alpha=0.4)
                inside = (pts[:, 0] >= x0) & (pts[:, 0] < x1) & (pts[:, 1] >= y0) & (pts[:, 1] < y1)
                ax.plot(pts[inside, 0], pts[inside, 1], "+", color="cyan", ms=8, mew=1.4)
                ax.set_xlim(x0, x1)
                ax.set_ylim(y1, y0)
                name = f"soft {kernel}x{kernel} σ{sigma:g}" if soft else "hard"
                ax.set_title(f"{lv} {name}\n{int(x1 - x0)} px crop", fontsize=7)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    if not samples:
        axes[0, 0].text(0.5, 0.5, "no images", ha="center", va="center")
    fig.suptitle("Labels per level on 8x8-cell crops (+ = target, white lines = cells)", fontsize=9)
    fig.tight_layout(rect=(0, 0, 0.97, 1))
    if shown is not None:
        cax = fig.add_axes((0.975, 0.15, 0.008, 0.7))
        fig.colorbar(shown, cax=cax).set_label("label value", fontsize=7)
        cax.tick_params(labelsize=6)
    save_png(fig, path)


def with_label_overlays(report: dict[str, Any], arrays: dict[str, Any]) -> dict[str, Any]:
    """An analyze report's arrays with, per level, the label overlay (``overlay_arrays``) of
    its gradient example image under ``"labels"``, with the recipe's kernel, sigma, trunc."""
    rec = report.get("recipe") or {}
    kernel, sigma = int(rec.get("kernel") or 3), float(rec.get("sigma") or 1.0)
    t = rec.get("trunc")
    trunc = 0.1 if t is None else float(t)
    out = {}
    for lv, per in arrays.items():
        ex = (per.get("gradients") or {}).get("example") if isinstance(per, dict) else None
        if ex is None:
            out[lv] = per
            continue
        sample = (f"image #{ex['index']}", ex["image"], ex["points"])
        out[lv] = {**per, "labels": overlay_arrays([sample], [lv], kernel, sigma, trunc)}
    return out


def draw_labels(report: dict[str, Any], arrays: dict[str, Any], out: Path) -> list[str]:
    """Every plot of a saved labels report under ``out`` (the overlay when report.npz holds
    one, then the positive fraction); returns the file names."""
    plots = []
    if arrays.get("overlay"):
        plot_overlay(arrays["overlay"], out / "overlay.png")
        plots.append("overlay.png")
    plot_pos_fraction(report, out / "pos_fraction.png")
    return [*plots, "pos_fraction.png"]
