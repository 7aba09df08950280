"""``analyze_log``: read a training log, map its columns, find the symptoms, build the report.

The report has the shape of ``analyze``'s: {"schema": 1, "kind": "logs", "verdict",
"findings": [Finding.to_dict()], "metrics": {key: series summary}, "source": {format, framework,
path, files, axis, columns, unmapped, notes, runs, run}, "reference": {prior, constant_loss, ...},
"thresholds": {...}}; with ``out``, report.json, report.md and timeline.png are written.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from convdiag.diagnosis.thresholds import Thresholds
from convdiag.errors import InputError
from convdiag.watch.frameworks import annotate, framework_of
from convdiag.watch.mapping import MappedLog, map_columns, parse_map
from convdiag.watch.symptoms import Reference, ends, find_symptoms, finite

SCHEMA = 1
# Hard labels: a constant predictor's loss is scale-free once the image holds many cells.
_CELLS = 1e6


def constant_from_prior(prior: float, loss: str) -> float:
    """Best constant predictor's loss for hard labels with positive fraction ``prior``.

    bce: -(p log p + (1 - p) log(1 - p)); focal (CenterNet): minimised numerically
    (``label_stats.constant_loss``) over C cells, p C positives.
    """
    from convdiag.analyses.label_stats import constant_loss

    c = max(_CELLS, 100.0 / prior)
    return constant_loss(loss, c, prior * c, prior * c, (1 - prior) * c)


def _offsets_needed(stride: int, rms_cells: float, radius: float) -> bool:
    """DESIGN.md rule of analyze: offsets matter when the cell-centre RMS error (px) exceeds
    0.6 x the match radius."""
    return stride * rms_cells > 0.6 * radius


def build_reference(
    mapped: MappedLog,
    level: str | None = None,
    loss: str = "bce",
    prior: float | None = None,
    data: str | os.PathLike[str] | None = None,
    dataset: Any = None,
    radius: float = 3.0,
) -> Reference:
    """The loss references: ``prior`` (``--prior``), else the dataset's label prior at
    ``level`` (``--data``; level P2 when not given), else the log's own ``constant_loss``
    column. With ``data`` the offset reference is the L1 loss of the best constant offset
    on the dataset's own offset targets (mean over both axes of mean |t - median t|), and
    the remedies get the measured soft-label size and the neighbouring levels."""
    from convdiag.targets.geometry import level_name, stride_of

    ref = Reference(loss=loss)
    if loss not in ("bce", "focal"):
        raise InputError(f"--loss {loss!r}: use bce or focal")
    if level is not None:
        ref.level = level_name(level)
    if data is not None:
        if ref.level is None:
            ref.level = "P2"
            ref.notes.append("--data without --level: level P2 assumed")
        _from_data(ref, data, dataset, radius)
    if prior is not None:
        if not (isinstance(prior, float | int) and 0 < prior < 1):
            raise InputError(f"--prior {prior!r}: must be a fraction in (0, 1)")
        ref.prior, ref.prior_source = float(prior), "--prior"
        ref.neg_per_pos = (1 - prior) / prior
    if ref.prior is not None:
        ref.constant_loss = constant_from_prior(ref.prior, loss)
        ref.constant_source = f"{loss} at the {ref.prior_source} prior"
    elif "constant_loss" in mapped.series:
        _, v = finite(mapped.series["constant_loss"])
        if len(v):
            ref.constant_loss = float(np.median(v))
            ref.constant_source = f"the log's {mapped.columns['constant_loss']} column"
    else:
        ref.notes.append(
            "cls loss not compared with the constant predictor: give --prior or --data"
        )
    if ref.level is not None and ref.offsets_needed is None:
        from convdiag.diagnosis.remedy_catalogue import soft_params_for

        ref.offsets_needed = _offsets_needed(stride_of(ref.level), math.sqrt(2 / 12), radius)
        ref.soft = soft_params_for(stride_of(ref.level), None, 0.1)
    return ref


def _from_data(ref: Reference, data: Any, dataset: Any, radius: float) -> None:
    from convdiag.analyses.targets import measure_targets
    from convdiag.diagnosis.labels import label_statistics
    from convdiag.diagnosis.remedy_catalogue import soft_params_for
    from convdiag.load.datasets import load_dataset
    from convdiag.targets.geometry import offset_targets, stride_of

    assert ref.level is not None
    ds = load_dataset(data, dataset)
    levels = sorted({ref.level, "P2", "P3", "P4", "P5"}, key=stride_of)
    stats = label_statistics([(r.size, r.points) for r in ds.records], levels, radius=radius)
    lv = stats["levels"][ref.level]
    ref.prior, ref.prior_source = float(lv["pos_fraction"]), f"{data} at {ref.level}"
    ref.neg_per_pos = lv["neg_per_pos"]
    s = stride_of(ref.level)
    for name, v in sorted(stats["levels"].items(), key=lambda kv: kv[1]["stride"]):
        few = v["collision_share"] <= 0.01
        npp = v["neg_per_pos"]
        if v["stride"] > s and ref.coarser_level is None and few and npp and npp <= 1000:
            ref.coarser_level = str(name)
        q = v["quantization_px"]["p95"]
        if v["stride"] < s and few and q is not None and q < radius:
            ref.finer_level = str(name)
    pts = [r.points for r in ds.records if len(r.points)]
    if pts:
        t = offset_targets(np.concatenate(pts), ref.level)
        ref.reg_constant = float(np.mean(np.abs(t - np.median(t, axis=0))))
        ref.reg_constant_source = f"best constant offset on {data}'s {len(t)} targets"
        rms = math.sqrt(float(np.sum(np.mean((t - 0.5) ** 2, axis=0))))
        ref.offsets_needed = _offsets_needed(s, rms, radius)
    try:
        targets = measure_targets(ds)
        ref.soft = soft_params_for(s, targets.get("radius_px"), 0.1)
    except Exception as e:  # images unreadable: keep the seed's default window
        ref.notes.append(f"target size not measured ({type(e).__name__}); soft labels 3x3")


def summarize(s: Any, column: str) -> dict[str, Any]:
    """Summary of one series: points, non-finite count, first/last step and value, min,
    max, medians of the first and last quarter and the relative change between them."""
    _, v = finite(s)
    out: dict[str, Any] = {
        "column": column,
        "points": len(s),
        "nonfinite": int((~s.finite).sum()),
        "first_at": float(s.x[0]) if len(s) else None,
        "last_at": float(s.x[-1]) if len(s) else None,
    }
    if len(v):
        a, b = ends(v)
        out.update(
            first=float(v[0]),
            last=float(v[-1]),
            min=float(v.min()),
            max=float(v.max()),
            start=a,
            end=b,
            change=None if a == 0 else b / a - 1.0,
        )
    return out


def analyze_log(
    path: str | os.PathLike[str],
    log_format: str = "auto",
    mapping: str | dict[str, str] | None = None,
    *,
    prior: float | None = None,
    data: str | os.PathLike[str] | None = None,
    dataset: Any = None,
    level: str | None = None,
    loss: str = "bce",
    margin: float = 0.3,
    reg_margin: float = 0.15,
    radius: float = 3.0,
    thresholds: Thresholds | None = None,
    run: int | None = None,
    out: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """Read the log at ``path`` and return the report (see the module docstring).

    mapping: ``--map`` text or {key: column}. prior / data / level / loss: the constant
    predictor's reference (``build_reference``). margin: the cls loss counts as "at the
    constant predictor's" within this share; reg_margin: the same for the offset loss.
    run: which run of a file holding several (1-based; default the last).
    """
    from convdiag import __version__
    from convdiag.diagnosis.rules import verdict
    from convdiag.watch.discover import read_log

    for name, v in (("--margin", margin), ("--reg-margin", reg_margin)):
        if not (math.isfinite(v) and 0 < v < 1):
            raise InputError(f"{name} {v!r}: must lie strictly between 0 and 1")
    out_dir = None
    if out is not None:
        from convdiag.load.files import prepare_out_dir

        out_dir = prepare_out_dir(out)
    user = parse_map(mapping) if isinstance(mapping, str | None) else dict(mapping)
    raw = read_log(Path(path), log_format, user.get("step"), run)
    mapped = map_columns(raw, user)
    ref = build_reference(mapped, level, loss, prior, data, dataset, radius)
    th = (thresholds or Thresholds()).replace(
        loss_margin=float(margin), reg_margin=float(reg_margin)
    )
    findings = find_symptoms(mapped, ref, th)
    framework = framework_of(raw)
    annotate(findings, framework)
    reference = ref.to_dict()
    if "reg_loss" not in mapped.series:  # no offset loss logged: its reference says nothing
        reference["reg_constant"] = reference["reg_constant_source"] = None
    report: dict[str, Any] = {
        "schema": SCHEMA,
        "kind": "logs",
        "convdiag_version": __version__,
        "verdict": verdict(findings),
        "findings": [f.to_dict() for f in findings],
        "metrics": {k: summarize(s, mapped.columns[k]) for k, s in mapped.series.items()},
        "source": {
            "format": raw.format,
            "framework": framework,
            "path": raw.path,
            "files": raw.files,
            "axis": raw.x_name,
            "columns": dict(mapped.columns),
            "unmapped": mapped.unmapped,
            "notes": list(raw.notes),
            "runs": raw.runs,
            "run": raw.run,
        },
        "reference": reference,
        "thresholds": th.to_dict(),
    }
    if out_dir is not None:
        write_report(report, mapped, out_dir)
    return report


def write_report(report: dict[str, Any], mapped: MappedLog, out: str | Path) -> None:
    """timeline.png, then report.json, report.md and report.html (which show the plot)."""
    from convdiag.load.files import atomic_write_text, write_json
    from convdiag.report.html import write_html
    from convdiag.report.logs_report import plot_timeline, render_markdown

    p = Path(out)
    plot_timeline(mapped, report, p / "timeline.png")
    report["plots"] = {"timeline": "timeline.png"}
    write_json(p / "report.json", report)
    atomic_write_text(p / "report.md", render_markdown(report))
    write_html(p, report)
