"""``convdiag logs A B ...``: several runs judged by the same rules, side by side.

Each log is analysed alone (``analyze_log``, the same mapping, reference and thresholds);
the comparison report holds each run's report and a table of what differs: every finding
id with the step each run's symptom started (None where it did not fire) and the last value
of every metric key the runs share.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from convdiag.errors import InputError

SCHEMA = 1


def compare_logs(
    paths: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str] | None = None,
    **kw: Any,
) -> dict[str, Any]:
    """The comparison report of ``paths`` (two or more logs); ``kw``: ``analyze_log``'s.

    {"schema": 1, "kind": "logs-compare", "verdict", "comparison": [row records],
    "symptoms": {id: [started_at or None per run]}, "fired": {id: [bool per run]}, "finals":
    {key: [last value per run]}, "run_reports": {"1": report, ...}};
    with ``out``, report.json / report.md / report.html in ``out`` and each run's own
    report in ``out/run<k>/``.
    """
    from convdiag.watch.analysis import analyze_log

    if len(paths) < 2:
        raise InputError("logs: compare needs two or more PATHs")
    out_dir = None
    if out is not None:
        from convdiag.load.files import prepare_out_dir

        out_dir = prepare_out_dir(out)
    runs = []
    for k, p in enumerate(paths, 1):
        sub = None if out_dir is None else Path(out_dir) / f"run{k}"
        runs.append(analyze_log(p, out=sub, **kw))
    report = comparison(runs)
    if out_dir is not None:
        from convdiag.load.files import atomic_write_text, write_json
        from convdiag.report.html import write_html
        from convdiag.report.logs_compare import render_markdown

        write_json(Path(out_dir) / "report.json", report)
        atomic_write_text(Path(out_dir) / "report.md", render_markdown(report))
        write_html(Path(out_dir), report)
    return report


def comparison(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The comparison of already analysed ``logs`` reports (see ``compare_logs``)."""
    from convdiag.diagnosis.catalogue import ID_ORDER

    ids = sorted(
        {f["id"] for r in runs for f in r["findings"]},
        key=lambda i: ID_ORDER.index(i) if i in ID_ORDER else len(ID_ORDER),
    )
    symptoms = {
        i: [
            next((f["evidence"].get("started_at") for f in r["findings"] if f["id"] == i), None)
            if any(f["id"] == i for f in r["findings"])
            else None
            for r in runs
        ]
        for i in ids
    }
    fired = {i: [any(f["id"] == i for f in r["findings"]) for r in runs] for i in ids}
    keys = [k for k in runs[0]["metrics"] if all(k in r["metrics"] for r in runs[1:])]
    finals = {k: [r["metrics"][k].get("last") for r in runs] for k in keys}
    differ = [i for i in ids if len(set(fired[i])) > 1]
    verdict = (
        "the runs share every finding"
        if not differ
        else "findings differ: "
        + ", ".join(
            f"{i} in run {', '.join(str(k + 1) for k, x in enumerate(fired[i]) if x)}"
            for i in differ
        )
    )
    return {
        "schema": SCHEMA,
        "kind": "logs-compare",
        "verdict": verdict,
        "comparison": _rows(runs, symptoms, fired, finals),
        "symptoms": symptoms,
        "fired": fired,
        "finals": finals,
        "run_reports": {str(k): r for k, r in enumerate(runs, 1)},
        "findings": [],
    }


def _fmt(v: Any) -> Any:
    return f"{v:.4g}" if isinstance(v, float) else ("-" if v is None else v)


def _rows(
    runs: list[dict[str, Any]],
    symptoms: dict[str, list[Any]],
    fired: dict[str, list[bool]],
    finals: dict[str, list[Any]],
) -> list[dict[str, Any]]:
    """The side-by-side table as records: {"": what, "run 1": value, ...} per row."""
    names = [f"run {k}" for k in range(1, len(runs) + 1)]

    def row(what: str, values: list[Any]) -> dict[str, Any]:
        return {"": what, **dict(zip(names, values, strict=True))}

    out = [
        row("path", [r["source"]["path"] for r in runs]),
        row("format", [r["source"]["format"] for r in runs]),
        row("runs in the log", [f"{r['source']['run']} of {r['source']['runs']}" for r in runs]),
        row("verdict", [r["verdict"] for r in runs]),
    ]
    for fid, starts in symptoms.items():
        cells = []
        for r, on, start in zip(runs, fired[fid], starts, strict=True):
            axis = r["source"].get("axis", "step")
            cells.append(
                "-" if not on else f"from {axis} {start:g}" if start is not None else "yes"
            )
        out.append(row(fid, cells))
    out += [row(f"last {k}", [_fmt(v) for v in vals]) for k, vals in finals.items()]
    return out
