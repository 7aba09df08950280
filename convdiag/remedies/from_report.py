"""The remedies a saved analyze report proposes, for ``retrain --from-report``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from convdiag.errors import InputError
from convdiag.load.reads import MAX_REPORT_BYTES, read_json
from convdiag.remedies.catalogue import REMEDY_IDS


def remedies_from_report(
    path: Path, is_reference: bool
) -> tuple[list[tuple[str, dict[str, Any]]], list[dict[str, Any]]]:
    """The top remedy of each finding of an analyze report that this model can take.

    Architecture advice, and level-change / fused-head for a model that is not the reference
    detector, are skipped and named with the reason.
    """
    try:
        rep = read_json(path, MAX_REPORT_BYTES, "report")
    except InputError as e:
        raise InputError(f"--from-report {e}") from None
    findings = rep.get("findings") if isinstance(rep, dict) else None
    if not isinstance(findings, list):
        raise InputError(f"--from-report {path}: not an analyze report.json (no findings list)")
    for k, f in enumerate(findings):
        remedies = f.get("remedies", []) if isinstance(f, dict) else None
        if not isinstance(remedies, list) or not all(
            isinstance(r, dict)
            and isinstance(r.get("id"), str)
            and isinstance(r.get("params") or {}, dict)
            for r in remedies
        ):
            raise InputError(
                f"--from-report {path}: findings[{k}]: malformed remedies (a list of "
                "{id, params} objects)"
            )
        if not isinstance(f.get("severity", "info"), str):
            raise InputError(f"--from-report {path}: findings[{k}]: severity is not a string")
    picked: list[tuple[str, dict[str, Any]]] = []
    skipped: list[dict[str, Any]] = []
    order = {"error": 0, "warning": 1, "info": 2}
    for f in sorted(findings, key=lambda f: order.get(f.get("severity", "info"), 3)):
        for r in f.get("remedies", []):
            rid = r.get("id")
            if rid not in REMEDY_IDS or not r.get("applied", True):
                skipped.append(
                    {"id": rid, "why": "advice, not a recipe change: retrain does not apply it"}
                )
                continue
            if rid in ("level-change", "fused-head") and not is_reference:
                skipped.append({"id": rid, "why": "changes the architecture of a user model"})
                continue
            if rid not in [p[0] for p in picked]:
                picked.append((rid, dict(r.get("params") or {})))
            break
    if not picked:
        raise InputError(f"--from-report {path}: no remedy in it applies to this model")
    return picked, skipped
