"""Findings and remedies: the plain data every diagnosing command produces.

A Finding names what was measured (``evidence``), the thresholds it crossed, why it matters
and the ranked remedies, by the stable ids of DESIGN.md. Renderers only read these.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

# Severity of each finding id: the one table of ``diagnosis.catalogue``.
from convdiag.diagnosis.catalogue import SEVERITY_OF
from convdiag.diagnosis.thresholds import Thresholds  # registers the config's threshold keys

SEVERITIES = ("info", "warning", "error")


@dataclass
class Remedy:
    """One remedy: a stable id, its parameters and why it is proposed.

    ``applied`` is False for architecture advice that ``retrain`` never applies.
    """

    id: str
    params: dict[str, Any] = field(default_factory=dict)
    why: str = ""
    applied: bool = True

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form for JSON."""
        return asdict(self)


@dataclass
class Finding:
    """One diagnosis: id, severity, level, evidence numbers, explanation and remedies."""

    id: str
    level: str | None
    evidence: dict[str, Any]
    explanation: str
    remedies: list[Remedy] = field(default_factory=list)
    severity: str = ""

    def __post_init__(self) -> None:
        if not self.severity:
            self.severity = SEVERITY_OF.get(self.id, "info")
        if self.severity not in SEVERITIES:
            raise ValueError(f"unknown severity {self.severity!r}")

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form for JSON (schema of issue 4)."""
        return {
            "id": self.id,
            "severity": self.severity,
            "level": self.level,
            "evidence": self.evidence,
            "explanation": self.explanation,
            "remedies": [r.to_dict() for r in self.remedies],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Finding:
        """Inverse of ``to_dict``."""
        return cls(
            id=d["id"],
            level=d.get("level"),
            evidence=dict(d.get("evidence") or {}),
            explanation=d.get("explanation", ""),
            remedies=[Remedy(**r) for r in d.get("remedies") or []],
            severity=d.get("severity", ""),
        )


def severity_rank(severity: str) -> int:
    """0 for info, 1 for warning, 2 for error."""
    return SEVERITIES.index(severity)


def exit_code(findings: list[Finding], fail_on: str | None) -> int:
    """1 when a finding is at or above ``fail_on``, else 0 (no ``fail_on``: always 0)."""
    if not fail_on or fail_on == "never":
        return 0
    bar = severity_rank(fail_on)
    return int(any(severity_rank(f.severity) >= bar for f in findings))


__all__ = ["SEVERITIES", "SEVERITY_OF", "Finding", "Remedy", "Thresholds", "exit_code"]
