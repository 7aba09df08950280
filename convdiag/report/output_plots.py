"""The PNG plots of what a model outputs at one level of an analyze report: the score
distributions, the offsets and the detections (from the report dict alone)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from convdiag.report.console import fmt_num


def _sig(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -700, 700)))


def share_text(v: float | None) -> str:
    """A share as a percentage for a plot title ("-" when unknown)."""
    return "-" if v is None else f"{v:.1%}"


def plot_scores(lv: str, res: dict[str, Any]) -> Any:
    """The score histograms and the peak score near each target at ``lv``."""
    import matplotlib.pyplot as plt

    sc = res["scores"]
    h = sc["hist"]
    edges = np.asarray(h["logit_edges"])
    centres = _sig((edges[:-1] + edges[1:]) / 2)
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.6))
    ax = axes[0]
    for key, color, label in (
        ("background", "#7f7f7f", "background cells"),
        ("neighbourhood", "#ff9896", "neighbourhood cells"),
        ("target", "#d62728", "target cells"),
    ):
        c = np.asarray(h[key], dtype=float)
        if c.sum() > 0:
            ax.step(
                centres, c / c.sum(), where="mid", color=color, label=f"{label} ({int(c.sum()):,})"
            )
    _score_axes(ax, sc)
    ax.set_ylabel("fraction of cells (log)")
    ax.set_yscale("log")
    ax.set_title(f"{lv}: score at each cell (AUC target vs background {fmt_num(sc['auc'])})")
    ax = axes[1]
    c = np.asarray(h["peak"], dtype=float)
    if c.sum() > 0:
        ax.bar(centres, c, width=np.diff(_sig(edges)), color="#d62728", align="center", alpha=0.8)
    _score_axes(ax, sc)
    ax.set_ylabel("targets")
    share = sc.get("peaks_above_threshold")
    ax.set_title(
        f"{lv}: highest score near each target (3x3 cells); "
        f"{share_text(share)} reach {sc['threshold']:g}"
    )
    fig.tight_layout()
    return fig


def _score_axes(ax: Any, sc: dict[str, Any]) -> None:
    ax.set_xscale("logit")  # log near 0 and near 1: collapsed and confident scores both show
    ax.set_xlim(1e-6, 1 - 1e-4)
    ax.axvline(sc["threshold"], color="k", ls="--", lw=1, label=f"threshold {sc['threshold']:g}")
    if sc.get("label_prior"):
        ax.axvline(
            sc["label_prior"],
            color="#2ca02c",
            ls=":",
            lw=1.5,
            label=f"label prior {sc['label_prior']:.2g}",
        )
    if sc.get("mean_score"):
        ax.axvline(
            sc["mean_score"],
            color="#9467bd",
            ls="-.",
            lw=1,
            label=f"mean score {sc['mean_score']:.2g}",
        )
    ax.set_xlabel("score (logit scale: log near 0 and near 1)")
    ax.legend(fontsize=8, loc="upper left")


def plot_offsets(lv: str, res: dict[str, Any]) -> Any:
    """Predicted against true sub-cell offsets at ``lv`` (None without offsets)."""
    import matplotlib.pyplot as plt

    off = res["offsets"]
    if not off.get("available") or not off.get("target_cells"):
        return None
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.6))
    e = np.asarray(off["h2d"]["edges"])
    for a, axis in enumerate("xy"):
        ax = axes[a]
        hh = np.asarray(off["h2d"][axis], dtype=float)
        ax.imshow(
            hh.T,
            origin="lower",
            extent=(e[0], e[-1], e[0], e[-1]),
            cmap="Blues",
            aspect="equal",
            interpolation="nearest",
        )
        ax.plot([0, 1], [0, 1], "r--", lw=1, label="perfect")
        ax.axhline(0.5, color="gray", ls=":", lw=1, label="cell centre")
        ax.set_xlabel(f"target offset d{axis} (cells)")
        ax.set_ylabel(f"predicted d{axis} (cells)")
        ax.set_title(
            f"{lv} d{axis}: std ratio {fmt_num(off['std_ratio'][axis])}, "
            f"R^2 {fmt_num(off['r2'][axis])}"
        )
        ax.legend(fontsize=8, loc="upper left")
    ax = axes[2]
    lh = off["loc_hist"]
    edges = np.asarray(lh["edges_px"])
    ax.step(edges[:-1], lh["model"], where="post", color="#1f77b4", label="offset head")
    ax.step(edges[:-1], lh["centre"], where="post", color="gray", ls="--", label="cell centre")
    rad = res["detections"].get("radius")
    if rad is None:
        rad = 3.0
    ax.axvline(rad, color="k", ls=":", lw=1, label=f"match radius {rad:g} px")
    loc = off["loc_error_px"]
    ax.set_title(
        f"{lv}: localisation error at target cells\nmean {fmt_num(loc['model_mean'])} "
        f"px (cell centre {fmt_num(loc['centre_mean'])} px)"
    )
    ax.set_xlabel("error (px)")
    ax.set_ylabel("target cells")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_detections(lv: str, res: dict[str, Any]) -> Any:
    """The detection curves at ``lv``: precision, recall and F1 against the threshold,
    recall against false positives per image, and the rest of the detections panel."""
    import matplotlib.pyplot as plt

    d = res["detections"]
    t = np.asarray(d["thresholds"])
    fig, axes = plt.subplots(2, 3, figsize=(16, 8.5))
    ax = axes[0, 0]
    for key, color in (("precision", "#1f77b4"), ("recall", "#2ca02c"), ("f1", "#d62728")):
        ax.plot(t, d[key], marker=".", color=color, label=key if key != "recall" else "recall (Pd)")
    ax.set_xscale("log")
    ax.axvline(d["threshold"], color="k", ls="--", lw=1)
    ax.set_xlabel("score threshold (log)")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(
        f"{lv}: best F1 {d['best_f1']:.2f} at {d['best_threshold']:g}"
        f" (any threshold: {d['best_f1_low']:.2f} at {d['best_threshold_low']:g})"
    )
    ax.legend(fontsize=8)
    ax = axes[0, 1]
    fp = np.asarray(d["fp_per_image"], dtype=float)
    ax.plot(np.maximum(fp, 1e-3), d["recall"], marker=".", color="#2ca02c")
    seen: set[tuple[float, float]] = set()
    for ti, x, y in zip(t, fp, d["recall"], strict=True):
        spot = (round(math.log10(max(x, 1e-3)), 1), round(y, 2))
        if ti in (0.01, 0.1, 0.5, 0.9) and spot not in seen:
            seen.add(spot)
            ax.annotate(
                f"{ti:g}", (max(x, 1e-3), y), fontsize=8, xytext=(3, 3), textcoords="offset points"
            )
    ax.set_xscale("log")
    ax.set_xlabel("false positives per image (log; 0 drawn at 0.001)")
    ax.set_ylabel("Pd (recall)")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(f"{lv}: Pd against FP per image (labels: thresholds)")
    ax = axes[0, 2]
    counts = np.asarray(d["histograms"]["fp_per_image_counts"], dtype=float)
    last = int(np.max(np.flatnonzero(counts))) if counts.any() else 0
    ax.bar(np.arange(last + 1), counts[: last + 1], color="#7f7f7f")
    ax.set_xlim(-0.6, max(last, 5) + 0.6)
    ax.set_xlabel("false positives in the image (@ 0.5; last bin = 100+)")
    ax.set_ylabel("images")
    ax.set_title(f"{lv}: FP per image @ 0.5 (mean {fmt_num(d['fp_per_image_at_0.5'])})")
    ax = axes[1, 0]
    bins = np.asarray(d["histograms"]["score_bins"])
    mid = (bins[:-1] + bins[1:]) / 2
    w = np.diff(bins)
    ax.bar(mid, d["histograms"]["fp_scores"], width=w, color="#7f7f7f", alpha=0.7, label="FP")
    ax.bar(mid, d["histograms"]["tp_scores"], width=w, color="#d62728", alpha=0.7, label="TP")
    if max(d["histograms"]["fp_scores"] + d["histograms"]["tp_scores"]) > 0:
        ax.set_yscale("log")
    ax.set_xlabel("peak score")
    ax.set_ylabel("peaks (log)")
    ax.set_title(f"{lv}: scores of matched (TP) and unmatched (FP) peaks, top 100 per image")
    ax.legend(fontsize=8)
    ax = axes[1, 1]
    h = d["histograms"]
    e = np.asarray(h["fp_distance_edges_px"], dtype=float)
    labels = [
        f"{e[i]:g}-{e[i + 1]:g}" if math.isfinite(e[i + 1]) else f">{e[i]:g}"
        for i in range(len(e) - 1)
    ]
    r = d.get("radius", 3.0)
    colors = ["#d62728" if e[i] < 2 * r else "#7f7f7f" for i in range(len(e) - 1)]
    ax.bar(range(len(labels)), h["fp_distance"], color=colors)
    if not sum(h["fp_distance"]):
        ax.text(0.5, 0.5, "no false positive at 0.5", ha="center", transform=ax.transAxes)
        ax.set_yticks([])
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels(labels, rotation=45, fontsize=8)
    ax.set_xlabel("distance to the nearest target (px)")
    ax.set_ylabel("false positives @ 0.5")
    ax.set_title(
        f"{lv}: FP near targets (red, < 2r: {h['fp_near_miss'] + h['fp_duplicate']}) "
        f"vs clutter ({h['fp_background']})"
    )
    axes[1, 2].set_axis_off()
    txt = (
        f"images {d['images']}, targets {d['targets']}\n"
        f"@ 0.5: precision {fmt_num(d['precision_at_0.5'])}, recall "
        f"{fmt_num(d['recall_at_0.5'])}, F1 {fmt_num(d['f1_at_0.5'])}\n"
        f"FP / image {fmt_num(d['fp_per_image_at_0.5'])}, FP / Mpix "
        f"{fmt_num(d['fp_per_mpix_at_0.5'])}\n"
        f"matched error {fmt_num(d['loc_error_px_at_0.5'])} px (radius {r:g} px)"
    )
    axes[1, 2].text(0.0, 0.6, txt, fontsize=11, va="center", family="monospace")
    fig.tight_layout()
    return fig
