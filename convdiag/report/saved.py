"""Reading a saved report.json back (``convdiag show``): checked, with errors naming the file.

Every kind of report a command writes reads back: ``analyze``, ``logs``, ``labels``,
``retrain`` (and its ``race`` section), ``demo``, ``sweep`` (sweep.json) and ``check``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from convdiag.errors import InputError
from convdiag.load.reads import MAX_REPORT_BYTES, read_json

KINDS = ("analyze", "logs", "logs-compare", "labels", "retrain", "race", "demo", "sweep", "check")
# what a report of each kind must hold (beyond a list of findings, when it has any)
REQUIRED = {
    "analyze": ("findings", "metrics"),
    "logs": ("findings", "metrics"),
    "logs-compare": ("comparison", "run_reports"),
    "labels": ("levels",),
    "retrain": ("history",),
    "race": ("race",),
    "demo": ("history",),
    "sweep": ("rows", "runs"),
    "check": ("checks",),
}


def report_kind(data: dict[str, Any]) -> str | None:
    """The kind of a report: its ``kind`` field, else what it holds (reports written
    before the field: analyze and logs reports, labels statistics, retrain reports)."""
    kind = data.get("kind")
    if kind in KINDS:
        return str(kind)
    if kind is not None:
        return None
    if "findings" in data and "metrics" in data:
        return "analyze"
    if "levels" in data and "dataset" in data:
        return "labels"
    if "checks" in data:
        return "check"
    if "failing_training" in data:
        return "demo"
    if "history" in data and any(k in data for k in ("remedy", "baseline")):
        return "retrain"
    return None


def report_path(path: str | Path) -> Path:
    """The report file ``path`` names: itself, or a folder's report.json (sweep.json for a
    sweep's folder)."""
    p = Path(path)
    if p.is_dir():
        p = (
            p / "report.json"
            if (p / "report.json").exists() or not (p / "sweep.json").exists()
            else p / "sweep.json"
        )
    return p


def _well_typed(f: Any) -> bool:
    """A saved finding's fields have the types the renderers and --from-report read."""
    if not isinstance(f, dict) or not {"id", "severity", "evidence"} <= set(f):
        return False
    if not (isinstance(f["id"], str) and isinstance(f["severity"], str)):
        return False
    if not isinstance(f["evidence"], dict):
        return False
    remedies = f.get("remedies", [])
    return isinstance(remedies, list) and all(
        isinstance(r, dict)
        and isinstance(r.get("id"), str)
        and isinstance(r.get("params", {}), dict)
        for r in remedies
    )


def read_report(path: str | Path) -> dict[str, Any]:
    """Load and check a saved report of any kind (KINDS); InputError naming the file
    otherwise. The kind is set in the returned data (``kind``)."""
    p = report_path(path)
    # regular files only (a FIFO or device refused without blocking), size-capped, and JSON
    # that Python cannot hold (deep nesting, 5,000-digit integers) is one line too
    data = read_json(p, MAX_REPORT_BYTES, "report")
    kind = report_kind(data) if isinstance(data, dict) else None
    if not isinstance(data, dict) or kind is None or not all(k in data for k in REQUIRED[kind]):
        raise InputError(
            f"{p}: not an analyze report nor a logs, logs-compare, labels, retrain, race, demo, "
            "sweep or check report"
        )
    if kind in ("analyze", "logs") and data.get("schema") != 1:
        raise InputError(f"{p}: report schema {data.get('schema')!r} is not supported (1)")
    findings = data.get("findings", [])
    if not isinstance(findings, list) or not all(map(_well_typed, findings)):
        raise InputError(
            f"{p}: malformed findings (each needs id and severity strings, an evidence "
            "object, and remedies as a list of {id, params} objects)"
        )
    for key in ("metrics", "analyses", "dataset"):
        if key in data and not isinstance(data[key], dict):
            raise InputError(f"{p}: malformed report: {key} must be an object")
    data["kind"] = kind
    if kind == "analyze":
        data.setdefault("analyses", {})
    return data
