"""Rendering of a ``labels`` report: a table per level, findings, recommendation, plots.

Renderers only read the plain data of ``label_statistics`` (plus the ``dataset`` block the
command adds), so a saved report.json renders again without recomputing.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from convdiag.report.console import fmt_num, md_table, table

Getter = Callable[[dict[str, Any]], Any]


def _get(*path: str) -> Getter:
    def get(d: dict[str, Any]) -> Any:
        cur: Any = d
        for p in path:
            if cur is None:
                return None
            cur = cur.get(p)
        return cur

    return get


def _ratio(v: float | None) -> str | None:
    return None if v is None else f"1:{fmt_num(round(v)) if v >= 10 else fmt_num(float(v))}"


def _grid(d: dict[str, Any]) -> str:
    g = d.get("grid")
    if g:
        return f"{g[0]}x{g[1]}"
    lo, hi = d["grid_min"], d["grid_max"]
    return f"{lo[0]}x{lo[1]} .. {hi[0]}x{hi[1]}"


HARD_ROWS: list[tuple[str, Getter]] = [
    ("stride (px)", _get("stride")),
    ("grid (h x w)", _grid),
    ("images", _get("images")),
    ("targets", _get("targets")),
    ("cells", _get("cells")),
    ("positive cells", _get("positive_cells")),
    ("positive fraction", _get("pos_fraction")),
    ("positives : negatives", lambda d: _ratio(d.get("neg_per_pos"))),
    ("positives / image, mean", _get("positives_per_image", "mean")),
    ("positives / image, max", _get("positives_per_image", "max")),
    ("collisions (targets)", _get("collisions")),
    ("collision share", _get("collision_share")),
    ("quantisation mean (px)", _get("quantization_px", "mean")),
    ("quantisation p95 (px)", _get("quantization_px", "p95")),
    ("quantisation max (px)", _get("quantization_px", "max")),
    ("share beyond match radius", _get("quantization_px", "share_over_radius")),
    ("constant-predictor BCE", _get("constant_loss", "bce")),
    ("constant-predictor focal", _get("constant_loss", "focal")),
    ("pos. gradient share, BCE at prior", _get("initial_pos_grad_share")),
    ("pos. gradient share, BCE at bias 0", _get("initial_pos_grad_share_zero_bias")),
    ("pos. gradient share, focal at prior", _get("initial_pos_grad_share_focal")),
]

SOFT_ROWS: list[tuple[str, Getter]] = [
    ("soft window", lambda s: f"{s['kernel']}x{s['kernel']} sigma {s['sigma']:g}"),
    ("soft positive mass", _get("positive_mass")),
    ("soft mass / target", _get("mass_per_target")),
    ("soft non-zero cells", _get("nonzero_cells")),
    ("soft non-zero fraction", _get("nonzero_fraction")),
    ("soft mass : rest", lambda s: _ratio(s.get("neg_per_pos"))),
    ("soft cells / target, mean", _get("nonzero_cells_per_target", "mean")),
    ("soft cells / target, min", _get("nonzero_cells_per_target", "min")),
    ("soft overlapping targets", _get("overlaps")),
    ("soft constant BCE", _get("constant_loss", "bce")),
    ("soft constant focal", _get("constant_loss", "focal")),
    ("soft pos. gradient share, BCE at bias 0", _get("initial_pos_grad_share_zero_bias")),
    ("soft pos. gradient share, focal at prior", _get("initial_pos_grad_share_focal")),
]


def level_rows(stats: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    """Columns (statistic, then one per level) and rows, soft rows when present."""
    names = list(stats["levels"])
    levels = [stats["levels"][n] for n in names]
    rows = [[label, *(get(v) for v in levels)] for label, get in HARD_ROWS]
    softs = [v.get("soft") for v in levels]
    if any(s is not None for s in softs):
        rows += [
            [label, *(None if s is None else get(s) for s in softs)] for label, get in SOFT_ROWS
        ]
        phases = next((s.get("phases") for s in softs if s and s.get("phases")), None)
        for i, ph in enumerate(phases or []):
            label = f"phase < {ph['end']:g} ({ph['kernel']}x{ph['kernel']}, {ph['sigma']:g}) mass"
            rows.append([label, *(s["phases"][i]["positive_mass"] if s else None for s in softs)])
    return ["statistic", *names], rows


def _settings_line(stats: dict[str, Any]) -> str:
    s = stats.get("settings", {})
    ds = stats.get("dataset") or {}
    head = f"{ds.get('path', 'dataset')}: " if ds else ""
    if s.get("schedule"):
        lab = f"soft labels, schedule {s['schedule']} (table: first phase)"
    elif s.get("labels") == "soft":
        lab = f"soft labels {s['kernel']}x{s['kernel']}, sigma {s['sigma']:g}, trunc {s['trunc']:g}"
    else:
        lab = "hard labels (add --soft for soft-label rows)"
    return f"{head}{lab}; match radius {s.get('radius', 3):g} px"


def _recommendation_lines(rec: dict[str, Any]) -> list[str]:
    why = rec.get("why", {})
    labels = (
        f"soft {rec['kernel']}x{rec['kernel']}, sigma {rec['sigma']:g}, trunc {rec['trunc']:g}"
        if rec["labels"] == "soft"
        else "hard"
    )
    return [
        f"level {rec['level']} (stride {rec['stride']}): {why.get('level', '')}",
        f"labels {labels}: {why.get('labels', '')}",
        f"sigma {rec['sigma']:g}: {why.get('sigma', '')}",
        f"kernel {rec['kernel']}x{rec['kernel']}: {why.get('kernel', '')}",
    ]


def _finding_remedies(f: dict[str, Any]) -> str:
    parts = []
    for r in f.get("remedies", []):
        params = ",".join(f"{k}={v}" for k, v in r.get("params", {}).items())
        parts.append(r["id"] + (f":{params}" if params else ""))
    return ", ".join(parts)


def render_table(console: Console, stats: dict[str, Any]) -> None:
    """Print the per-level table, the findings and the recommendation."""
    cols, rows = level_rows(stats)
    console.print(table(f"Label statistics — {_settings_line(stats)}", cols, rows))
    findings = stats.get("findings") or []
    if findings:
        console.print("[bold]Risks[/bold] (warnings; exit code unchanged unless --fail-on)")
        for f in findings:
            console.print(
                f"  [yellow]{f['severity']}[/yellow] {f['id']} [{f['level']}]: {f['explanation']}",
                highlight=False,
            )
            rem = _finding_remedies(f)
            if rem:
                console.print(f"      remedies: {rem}", highlight=False)
    else:
        console.print("No label risks found.")
    console.print("[bold]Recommendation[/bold]")
    for line in _recommendation_lines(stats["recommendation"]):
        console.print(f"  {line}", highlight=False)
    skipped = (stats.get("dataset") or {}).get("skipped") or []
    if skipped:
        console.print(f"  skipped {len(skipped)} input(s) (see report.json)")


def render_markdown(stats: dict[str, Any], plots: Sequence[str] = ()) -> str:
    """The report as Markdown; ``plots`` are PNG names linked relative to report.md."""
    cols, rows = level_rows(stats)
    text = "# Label statistics\n\n" + _settings_line(stats) + "\n\n" + md_table(cols, rows)
    findings = stats.get("findings") or []
    text += "\n## Risks\n\n"
    if not findings:
        text += "No label risks found.\n"
    for f in findings:
        text += f"- **{f['id']}** ({f['severity']}, {f['level']}): {f['explanation']}"
        rem = _finding_remedies(f)
        text += f" Remedies: `{rem}`.\n" if rem else "\n"
    text += "\n## Recommendation\n\n"
    text += "".join(f"- {line}\n" for line in _recommendation_lines(stats["recommendation"]))
    if plots:
        text += "\n## Plots\n\n" + "".join(f"![{Path(p).stem}]({p})\n\n" for p in plots)
    return text


# --------------------------------------------------------------------------- plots


def plot_pos_fraction(stats: dict[str, Any], path: str | Path) -> None:
    """Bar chart per level: hard positive fraction and, if present, soft non-zero/mass fractions.

    Log scale, with the 1:1000 line the ``extreme-imbalance`` risk uses.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from convdiag.load.files import save_figure

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
    save_figure(fig, path)


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


def plot_overlay(
    samples: Sequence[tuple[str, np.ndarray, np.ndarray]],
    levels: Sequence[str],
    kernel: int,
    sigma: float,
    trunc: float,
    path: str | Path,
) -> None:
    """Label overlays: per image (row) the whole image with its targets, then, per level,
    hard and soft labels upsampled onto a crop of 8 x 8 cells around one target.

    samples: (id, image float32 [H, W], points [N, 2] (x, y)). Crops are 8 cells wide
    (32 px at P2, 256 px at P5) so every level's cells show at the same scale.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import LinearSegmentedColormap

    from convdiag.load.files import save_figure
    from convdiag.targets.geometry import stride_of
    from convdiag.targets.labels import render_heatmap

    strides = [stride_of(lv) for lv in levels]
    ncol = 1 + 2 * len(levels)
    nrow = max(len(samples), 1)
    fig, axes = plt.subplots(
        nrow, ncol, figsize=(1.9 * ncol + 0.6, 2.3 * nrow + 0.4), squeeze=False
    )
    label_cmap = LinearSegmentedColormap.from_list("lab", ["#3b0f70", "#e8534a", "#fcfdbf"])
    shown = None
    for row, (ident, image, pts) in enumerate(samples):
        h, w = image.shape
        pts = np.asarray(pts, dtype=np.float64).reshape(-1, 2)
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
                lab = render_heatmap(pts, (h, w), lv, kernel if soft else None, sigma, trunc)
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
    save_figure(fig, path)
