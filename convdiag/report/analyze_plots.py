"""The PNG plots of an analyze report (``write_plots``), and those of the gradients and the
counterfactual losses; the scores, offsets and detections plots are ``report.output_plots``.
They read the saved report data and the plot-only arrays of the analyses as read back from
report.npz (``report.saved_arrays``), so ``show --plots`` redraws the same files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from convdiag.report.analyze_report import SHARE_COLS, params_text
from convdiag.report.output_plots import plot_detections, plot_offsets, plot_scores, share_text
from convdiag.report.saved_arrays import save_png


def write_plots(report: dict[str, Any], arrays: dict[str, Any], out: Path) -> dict[str, Any]:
    """Write every plot of every level under ``out``; returns {level: {kind: file name}}.

    report: the report as saved (JSON data); arrays: {level: {analysis: {name: array}}}, as
    ``saved_arrays.load_arrays`` gives them back."""
    import matplotlib

    matplotlib.use("Agg")

    done: dict[str, dict[str, str]] = {}
    for lv, res in report.get("analyses", {}).items():
        arr = arrays.get(lv, {})
        files: dict[str, str] = {}
        grads = arr.get("gradients", {})
        for kind in ("gradients", "counterfactual", "scores", "offsets", "detections"):
            if kind == "gradients":
                fig = _plot_gradients(lv, res, grads)
            elif kind == "counterfactual":
                fig = _plot_counterfactual(lv, res, grads)
            elif kind == "scores":
                fig = plot_scores(lv, res)
            elif kind == "offsets":
                fig = plot_offsets(lv, res)
            else:
                fig = plot_detections(lv, res)
            if fig is None:
                continue
            name = f"{lv}_{kind}.png"
            save_png(fig, out / name)
            files[kind] = name
        done[lv] = files
    return done


def _log_norm(*maps: np.ndarray) -> Any:
    from matplotlib.colors import LogNorm

    vals = np.concatenate([m[np.isfinite(m) & (m > 0)].ravel() for m in maps if m is not None])
    if not len(vals):
        return None
    hi = float(np.percentile(vals, 99.9))
    lo = max(float(np.percentile(vals, 1)), hi * 1e-6)
    return LogNorm(vmin=lo, vmax=max(hi, lo * 10))


def _plot_gradients(lv: str, res: dict[str, Any], arr: dict[str, Any]) -> Any:
    import matplotlib.pyplot as plt

    ex = arr.get("example")
    mean_map = arr.get("current.map")
    patch = arr.get("current.patch")
    if mean_map is None:
        return None
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.8))
    norm = _log_norm(mean_map)
    im = axes[0].imshow(mean_map, cmap="magma", norm=norm, interpolation="nearest")
    axes[0].set_title(f"{lv}: mean |dL/dlogit| over all images\n(per cell, log colour)")
    axes[0].set_xlabel("grid column")
    axes[0].set_ylabel("grid row")
    fig.colorbar(im, ax=axes[0], fraction=0.04)
    s = 2 ** int(lv[1:])
    if ex is not None:
        img = ex["image"]
        g = ex["grads"].get("current")
        axes[1].imshow(img, cmap="gray", interpolation="nearest")
        if g is not None:
            gn = _log_norm(g)
            up = np.kron(g, np.ones((s, s)))[: img.shape[0], : img.shape[1]]
            _overlay(fig, axes[1], up, gn)
        pts = ex["points"]
        if len(pts):
            axes[1].scatter(
                pts[:, 0] - 0.5,
                pts[:, 1] - 0.5,
                s=90,
                facecolors="none",
                edgecolors="cyan",
                linewidths=1.5,
                label="target",
            )
        if len(ex["preds"]):
            p = ex["preds"]
            axes[1].scatter(
                p[:, 0] - 0.5,
                p[:, 1] - 0.5,
                marker="x",
                c="lime",
                s=40,
                label=f"detection >= {res['scores']['threshold']:g}",
            )
        axes[1].legend(loc="lower right", fontsize=8)
        axes[1].set_title(
            f"example image #{ex['index']}: gradient overlay\n(cyan circles = targets)"
        )
        axes[1].set_axis_off()
    else:
        axes[1].set_axis_off()
        axes[1].text(0.5, 0.5, "no image with a target", ha="center")
    if patch is not None:
        r = patch.shape[0] // 2
        pn = _log_norm(patch)
        im3 = axes[2].imshow(
            patch,
            cmap="magma",
            norm=pn,
            extent=(-r - 0.5, r + 0.5, r + 0.5, -r - 0.5),
            interpolation="nearest",
        )
        axes[2].set_title("mean |dL/dlogit| around target cells\n(cells from the target cell)")
        axes[2].set_xlabel("column offset (cells)")
        axes[2].set_ylabel("row offset (cells)")
        fig.colorbar(im3, ax=axes[2], fraction=0.04)
    sh = res["gradients"]["candidates"].get("current", {}).get("shares", {})
    fig.suptitle(
        f"{lv} classification gradient: targets {share_text(sh.get('target'))}, neighbourhood "
        f"{share_text(sh.get('neighbourhood'))}, background {share_text(sh.get('background'))}, "
        f"FP hotspots {share_text(sh.get('hotspot'))} of the mass",
        fontsize=11,
    )
    fig.tight_layout()
    return fig


def _overlay(fig: Any, ax: Any, up: np.ndarray, norm: Any) -> None:
    """Draw a gradient map over an image: colour by magnitude, opaque where it is large."""
    import matplotlib.pyplot as plt
    from matplotlib.cm import ScalarMappable

    if norm is None:
        return
    level = np.clip(norm(np.where(up > 0, up, norm.vmin)), 0, 1)
    rgba = plt.get_cmap("magma")(level)
    rgba[..., 3] = 0.15 + 0.8 * np.asarray(level) ** 1.5
    ax.imshow(rgba, interpolation="nearest")
    fig.colorbar(
        ScalarMappable(norm=norm, cmap="magma"),
        ax=ax,
        fraction=0.04,
        label="|dL/dlogit| (opaque where large)",
    )


def _plot_counterfactual(lv: str, res: dict[str, Any], arr: dict[str, Any]) -> Any:
    import matplotlib.pyplot as plt

    cands = res["gradients"]["candidates"]
    names = list(cands)
    if len(names) < 2:
        return None
    ex = arr.get("example")
    n = len(names)
    fig = plt.figure(figsize=(4.0 * n, 8.2))
    gs = fig.add_gridspec(2, n, height_ratios=[1.0, 1.1])
    ax = fig.add_subplot(gs[0, :])
    colors = {
        "target": "#d62728",
        "neighbourhood": "#ff9896",
        "background": "#7f7f7f",
        "hotspot": "#1f77b4",
    }
    left = np.zeros(n)
    for k in SHARE_COLS:
        vals = np.array([cands[c]["shares"].get(k) or 0.0 for c in names])
        ax.barh(range(n), vals, left=left, color=colors[k], label=k)
        for i, v in enumerate(vals):
            if v > 0.06:
                ax.text(
                    left[i] + v / 2,
                    i,
                    f"{v:.0%}",
                    ha="center",
                    va="center",
                    color="white",
                    fontsize=9,
                )
        left += vals
    ax.set_yticks(range(n))
    ax.set_yticklabels([_cand_label(c, cands[c]) for c in names])
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("share of the classification gradient mass")
    ax.legend(ncol=4, loc="upper center", bbox_to_anchor=(0.5, -0.18), fontsize=9)
    ax.set_title(
        f"{lv}: where the learning signal would go under each remedy "
        "(same predictions, no retraining)"
    )
    grads = (ex or {}).get("grads", {})
    for i, c in enumerate(names):
        if ex is None:
            break
        a = fig.add_subplot(gs[1, i])
        g = grads.get(c)
        if g is None:
            a.set_axis_off()
            continue
        crop, (r0, c0) = _crop_around(g, ex["points"], 2 ** int(lv[1:]))
        im = a.imshow(crop, cmap="magma", norm=_log_norm(crop), interpolation="nearest")
        fig.colorbar(im, ax=a, fraction=0.045)
        s = 2 ** int(lv[1:])
        pts = ex["points"]
        if len(pts):
            a.scatter(
                pts[:, 0] / s - 0.5 - c0,
                pts[:, 1] / s - 0.5 - r0,
                s=60,
                facecolors="none",
                edgecolors="cyan",
                linewidths=1.2,
            )
        a.set_xlim(-0.5, crop.shape[1] - 0.5)
        a.set_ylim(crop.shape[0] - 0.5, -0.5)
        a.set_title(f"{c}: |dL/dlogit|\nexample #{ex['index']} (log colour)", fontsize=9)
        a.set_xticks([])
        a.set_yticks([])
    fig.tight_layout()
    return fig


def _cand_label(name: str, c: dict[str, Any]) -> str:
    if name == "current":
        return "current loss"
    return f"{name} {params_text(c.get('params') or {})}"


def _crop_around(g: np.ndarray, pts: np.ndarray, s: int, half: int = 12) -> tuple[Any, Any]:
    """A window of the map around the first target (whole map when small)."""
    h, w = g.shape
    if (h <= 2 * half + 1 and w <= 2 * half + 1) or not len(pts):
        return g, (0, 0)
    ci, cj = int(pts[0, 1] // s), int(pts[0, 0] // s)
    r0 = min(max(ci - half, 0), max(h - 2 * half - 1, 0))
    c0 = min(max(cj - half, 0), max(w - 2 * half - 1, 0))
    return g[r0 : r0 + 2 * half + 1, c0 : c0 + 2 * half + 1], (r0, c0)
