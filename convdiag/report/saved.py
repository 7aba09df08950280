"""Reading a saved report.json back (``convdiag show``): checked, with errors naming the file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from convdiag.errors import InputError


def read_report(path: str) -> dict[str, Any]:
    """Load and check an analyze or logs report.json; InputError naming the file otherwise."""
    p = Path(path)
    if p.is_dir():
        p = p / "report.json"
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{p}: no such file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"{p}: cannot read ({e})") from None
    except json.JSONDecodeError as e:
        raise InputError(f"{p}: not valid JSON ({e.msg}, line {e.lineno})") from None
    if not isinstance(data, dict) or "findings" not in data or "metrics" not in data:
        raise InputError(f"{p}: not an analyze report nor a logs report (no findings and metrics)")
    if data.get("schema") != 1:
        raise InputError(f"{p}: report schema {data.get('schema')!r} is not supported (1)")
    if not isinstance(data["findings"], list) or not all(
        isinstance(f, dict) and {"id", "severity", "evidence"} <= set(f) for f in data["findings"]
    ):
        raise InputError(f"{p}: malformed findings (each needs id, severity, evidence)")
    if data.get("kind") != "logs":
        data.setdefault("analyses", {})
    return data
