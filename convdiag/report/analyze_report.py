"""Rendering of an analyze report: console (rich), Markdown, and the PNG plots.

Renderers only read the report dict (``analyze.analyze_checkpoint``) and, for plots, the
plot-only arrays of the analyses; ``convdiag show report.json`` uses the same functions.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from convdiag.report.console import fmt_num, md_table, table

SEVERITY_STYLE = {"error": "bold red", "warning": "yellow", "info": "green"}
METRIC_ROWS = (
    ("best_f1", "best F1 (0.05-0.95)"),
    ("best_threshold", "best-F1 threshold"),
    ("f1_at_0.5", "F1 @ 0.5"),
    ("precision_at_0.5", "precision @ 0.5"),
    ("recall_at_0.5", "recall (Pd) @ 0.5"),
    ("fp_per_image", "FP / image @ 0.5"),
    ("best_f1_low", "best F1 (any threshold)"),
    ("best_threshold_low", "its threshold"),
    ("auc", "AUC target vs background"),
    ("peak_score_p50", "target peak score (median)"),
    ("mean_score", "mean score"),
    ("label_prior", "label prior (mean label)"),
    ("cls_loss", "cls loss"),
    ("constant_loss", "constant-predictor loss"),
    ("loss_ratio", "cls / constant loss"),
    ("cls_loss_pos", "cls loss, positive part"),
    ("cls_loss_neg", "cls loss, negative part"),
    ("pos_grad_share", "gradient share at targets"),
    ("target_area_grad_share", "... with neighbourhood"),
    ("grad_cells_90", "cells holding 90% of gradient"),
    ("cls_grad_norm", "|grad| cls head"),
    ("reg_grad_norm", "|grad| offset head"),
    ("offset_std_ratio", "offset std ratio"),
    ("offset_r2", "offset R^2"),
    ("offset_loc_error_px", "offset error at targets (px)"),
    ("loc_error_px", "matched error @ 0.5 (px)"),
)
SHARE_COLS = ("target", "neighbourhood", "background", "hotspot")


# --------------------------------------------------------------------------- text helpers


def _params(params: dict[str, Any]) -> str:
    return ",".join(f"{k}={fmt_num(v)}" for k, v in params.items())


def remedy_text(r: dict[str, Any]) -> str:
    """``id:k=v,...`` (the form ``retrain --remedy`` takes), marked when advice only."""
    text = r["id"] + (":" + _params(r["params"]) if r.get("params") else "")
    return text if r.get("applied", True) else f"{text} (advice, not applied by retrain)"


def top_remedy(report: dict[str, Any]) -> dict[str, Any] | None:
    """The first applicable remedy of the first finding that has one."""
    for f in report.get("findings", []):
        for r in f.get("remedies", []):
            if r.get("applied", True):
                return dict(r)
    return None


def _evidence_text(ev: dict[str, Any], limit: int = 6) -> str:
    return ", ".join(f"{k} {fmt_num(v)}" for k, v in list(ev.items())[:limit])


def _title(report: dict[str, Any]) -> str:
    return f"{report.get('checkpoint', 'model')} on {report.get('data', 'data')}"


# --------------------------------------------------------------------------- console


def verdict_text(report: dict[str, Any]) -> tuple[Text, dict[str, Any] | None, str]:
    """(panel body starting with the verdict line, top finding or None, its severity)."""
    fs = report.get("findings", [])
    top = fs[0] if fs else None
    sev = top["severity"] if top else "info"
    body = Text()
    body.append("Verdict: ", style="bold")
    body.append(report.get("verdict", "-") + "\n", style=SEVERITY_STYLE.get(sev, ""))
    return body, top, sev


def summary_panel(report: dict[str, Any]) -> Panel:
    """Verdict, top finding (with its explanation) and top remedy."""
    body, top, sev = verdict_text(report)
    if top:
        body.append("Top finding: ", style="bold")
        body.append(f"{top['id']} ({top['severity']}, {top['level']})\n")
        body.append(top["explanation"] + "\n")
    rem = top_remedy(report)
    body.append("Top remedy: ", style="bold")
    if rem:
        body.append(remedy_text(rem) + "\n")
        body.append(f"  {rem.get('why', '')}\n", style="dim")
        body.append(
            f"  try: convdiag retrain {report.get('checkpoint', 'CKPT')} --data "
            f"{report.get('data', 'DATA')} --remedy {remedy_text(rem)} --compare",
            style="dim",
        )
    else:
        body.append("none needed")
    rec = report.get("recipe_text", "")
    sub = f"{report.get('images', '?')} images, recipe: {rec} ({report.get('recipe_source', '')})"
    return Panel(
        body,
        title=f"convdiag analyze: {_title(report)}",
        subtitle=sub,
        border_style=SEVERITY_STYLE.get(sev, ""),
        expand=True,
    )


def findings_rows(report: dict[str, Any]) -> list[list[Any]]:
    """Rows (severity, id, level, evidence, top remedy) of the findings table."""
    rows = []
    for f in report.get("findings", []):
        rems = [remedy_text(r) for r in f.get("remedies", [])[:3]]
        rows.append(
            [
                f["severity"],
                f["id"],
                f["level"],
                _evidence_text(f["evidence"]),
                "; ".join(rems) or "-",
            ]
        )
    return rows


def findings_table(report: dict[str, Any]) -> Table:
    """Findings as a rich table; long cells fold instead of being cut."""
    t = Table(title="Findings", title_justify="left", header_style="bold", show_lines=True)
    t.add_column("severity", no_wrap=True)
    t.add_column("id", no_wrap=True)
    t.add_column("level", no_wrap=True)
    t.add_column("evidence", overflow="fold", ratio=3)
    t.add_column("remedies (ranked)", overflow="fold", ratio=2)
    for sev, fid, level, ev, rems in findings_rows(report):
        t.add_row(
            Text(sev, style=SEVERITY_STYLE.get(sev, "")),
            fid,
            str(level),
            ev,
            rems.replace("; ", "\n"),
        )
    return t


def metric_rows(report: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    """(columns, rows) of the per-level metrics table."""
    levels = list(report.get("metrics", {}))
    rows = []
    for key, label in METRIC_ROWS:
        rows.append([label, *[report["metrics"][lv].get(key) for lv in levels]])
    return ["metric", *levels], rows


def share_rows(report: dict[str, Any], level: str) -> list[list[Any]]:
    """Rows (loss, shares by region, cells for 90%) of the counterfactual gradient table."""
    g = report.get("analyses", {}).get(level, {}).get("gradients", {})
    rows = []
    for name, c in g.get("candidates", {}).items():
        label = name if not c.get("params") else f"{name} ({_params(c['params'])})"
        rows.append([label, *[c["shares"].get(k) for k in SHARE_COLS], c["cells_for_90pct"]])
    return rows


def render_table(console: Console, report: dict[str, Any]) -> None:
    """Summary panel, findings, metrics per level, gradient shares, remedies, model notes."""
    console.print(summary_panel(report))
    console.print(findings_table(report))
    cols, rows = metric_rows(report)
    console.print(table("Metrics", cols, rows))
    for lv in report.get("metrics", {}):
        console.print(
            table(
                f"{lv}: where the classification gradient goes, now and under each remedy "
                "(same logits, no retraining)",
                ["loss", *SHARE_COLS, "cells for 90%"],
                share_rows(report, lv),
            )
        )
    parts = []
    for f in report.get("findings", []):
        if not f.get("remedies"):
            continue
        t = Text(f"{f['id']} ({f['level']}):\n", style="bold")
        for k, r in enumerate(f["remedies"], 1):
            t.append(f"  {k}. {remedy_text(r)}\n")
            if r.get("why"):
                t.append(f"     {r['why']}\n", style="dim")
        parts.append(t)
    if parts:
        console.print(Panel(Group(*parts), title="Remedies, ranked", expand=True))
    model = report.get("model", {})
    notes = []
    if model.get("missing_keys"):
        notes.append(f"missing keys: {', '.join(model['missing_keys'][:10])}")
    if model.get("unexpected_keys"):
        notes.append(f"unexpected keys: {', '.join(model['unexpected_keys'][:10])}")
    notes += list(model.get("notes", []))
    if notes:
        console.print(Text("Model: " + "; ".join(notes), style="dim"))
    if report.get("plots"):
        console.print(
            Text(f"Plots: {len(_plot_files(report))} PNG files beside report.json", style="dim")
        )


# --------------------------------------------------------------------------- markdown


def _plot_files(report: dict[str, Any]) -> list[str]:
    return [p for lv in report.get("plots", {}).values() for p in lv.values()]


PLOT_CAPTIONS = {
    "gradients": "Classification gradient |dL/dlogit|",
    "counterfactual": "Gradient under each candidate remedy (same logits)",
    "scores": "Score histograms",
    "offsets": "Offsets at target cells",
    "detections": "Detections",
}


def render_markdown(report: dict[str, Any]) -> str:
    """The report as Markdown, with the PNG plots embedded by relative link."""
    lines = [f"# convdiag analyze: {_title(report)}", ""]
    lines.append(f"**Verdict: {report.get('verdict', '-')}**")
    lines.append("")
    lines.append(
        f"{report.get('images', '?')} images, recipe: {report.get('recipe_text', '')} "
        f"(from {report.get('recipe_source', '-')})."
    )
    rem = top_remedy(report)
    if rem:
        lines += ["", f"Top remedy: `{remedy_text(rem)}` - {rem.get('why', '')}"]
    lines += ["", "## Findings", ""]
    for f in report.get("findings", []):
        lines.append(f"### {f['id']} ({f['severity']}, {f['level']})")
        lines.append("")
        lines.append(f["explanation"])
        lines.append("")
        ev = list(f["evidence"].items())
        if ev:
            lines.append(md_table(["evidence", "value"], ev))
        for k, r in enumerate(f.get("remedies", []), 1):
            lines.append(f"{k}. `{remedy_text(r)}` - {r.get('why', '')}")
        lines.append("")
    cols, rows = metric_rows(report)
    lines += ["## Metrics", "", md_table(cols, rows)]
    for lv, plots in report.get("plots", {}).items():
        lines += [f"## {lv}", ""]
        lines += [md_table(["loss", *SHARE_COLS, "cells for 90%"], share_rows(report, lv))]
        for kind, path in plots.items():
            lines += [f"![{lv} {PLOT_CAPTIONS.get(kind, kind)}]({path})", ""]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- plots


def write_plots(report: dict[str, Any], arrays: dict[str, Any], out: Path) -> dict[str, Any]:
    """Write every plot of every level under ``out``; returns {level: {kind: file name}}."""
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
                fig = _plot_scores(lv, res)
            elif kind == "offsets":
                fig = _plot_offsets(lv, res)
            else:
                fig = _plot_detections(lv, res)
            if fig is None:
                continue
            name = f"{lv}_{kind}.png"
            from convdiag.load.files import save_figure

            save_figure(fig, out / name)
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
        f"{lv} classification gradient: targets {_share(sh.get('target'))}, neighbourhood "
        f"{_share(sh.get('neighbourhood'))}, background {_share(sh.get('background'))}, "
        f"FP hotspots {_share(sh.get('hotspot'))} of the mass",
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


def _share(v: float | None) -> str:
    return "-" if v is None else f"{v:.1%}"


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
    return f"{name} {_params(c.get('params') or {})}"


def _crop_around(g: np.ndarray, pts: np.ndarray, s: int, half: int = 12) -> tuple[Any, Any]:
    """A window of the map around the first target (whole map when small)."""
    h, w = g.shape
    if (h <= 2 * half + 1 and w <= 2 * half + 1) or not len(pts):
        return g, (0, 0)
    ci, cj = int(pts[0, 1] // s), int(pts[0, 0] // s)
    r0 = min(max(ci - half, 0), max(h - 2 * half - 1, 0))
    c0 = min(max(cj - half, 0), max(w - 2 * half - 1, 0))
    return g[r0 : r0 + 2 * half + 1, c0 : c0 + 2 * half + 1], (r0, c0)


def _sig(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -700, 700)))


def _plot_scores(lv: str, res: dict[str, Any]) -> Any:
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
        f"{_share(share)} reach {sc['threshold']:g}"
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


def _plot_offsets(lv: str, res: dict[str, Any]) -> Any:
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


def _plot_detections(lv: str, res: dict[str, Any]) -> Any:
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
