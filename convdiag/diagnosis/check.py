"""The CI gate behind ``convdiag check``: label checks, a quick analysis, one result per check.

Every rule that can fire is a check: the label risks at each level, and (with a checkpoint)
every analyze rule at each analysed level. A check fails when a finding with its id (and
level) is at or above ``fail_on``; findings below the bar are kept as notes.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from convdiag.diagnosis.catalogue import KINDS
from convdiag.diagnosis.findings import Finding, severity_rank

LABEL_CHECKS = tuple(k.id for k in KINDS if "labels" in k.surfaces)
MODEL_CHECKS = tuple(
    k.id
    for k in KINDS
    if "analyze" in k.surfaces and k.severity != "info" and not k.id.startswith("label-")
)


@dataclass
class CheckResult:
    """One check: a name (``labels.P2.label-collision``), its status and the findings behind it.

    status: "passed", "failed" (a finding at or above fail_on) or "note" (findings below it).
    """

    group: str
    name: str
    level: str | None
    status: str = "passed"
    findings: list[Finding] = field(default_factory=list)

    @property
    def full_name(self) -> str:
        """group.level.name, e.g. labels.P2.label-collision."""
        return ".".join(p for p in (self.group, self.level, self.name) if p)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON."""
        return {
            "name": self.full_name,
            "group": self.group,
            "check": self.name,
            "level": self.level,
            "status": self.status,
            "findings": [f.to_dict() for f in self.findings],
        }


def grade(
    group: str, ids: tuple[str, ...], levels: list[str], findings: list[Finding], fail_on: str
) -> list[CheckResult]:
    """One CheckResult per (level, id): failed when a matching finding is at or above fail_on."""
    bar = severity_rank(fail_on) if fail_on != "never" else 99
    results = []
    for level in levels:
        for cid in ids:
            r = CheckResult(group, cid, level)
            r.findings = [f for f in findings if f.id == cid and f.level in (level, None)]
            if any(severity_rank(f.severity) >= bar for f in r.findings):
                r.status = "failed"
            elif r.findings:
                r.status = "note"
            results.append(r)
    return results


def junit_xml(results: list[CheckResult], seconds: float = 0.0) -> bytes:
    """JUnit XML: one <testcase> per check, a <failure> carrying the finding's explanation and
    evidence for each failed one, the findings below the bar in <system-out>."""
    failures = sum(r.status == "failed" for r in results)
    suites = ET.Element("testsuites", name="convdiag check", tests=str(len(results)),
                        failures=str(failures), errors="0", time=f"{seconds:.3f}")  # fmt: skip
    groups: dict[str, list[CheckResult]] = {}
    for r in results:
        groups.setdefault(r.group, []).append(r)
    for group, rs in groups.items():
        suite = ET.SubElement(
            suites,
            "testsuite",
            name=f"convdiag.{group}",
            tests=str(len(rs)),
            failures=str(sum(r.status == "failed" for r in rs)),
            errors="0",
            skipped="0",
        )
        for r in rs:
            case = ET.SubElement(
                suite, "testcase", classname=f"convdiag.{group}.{r.level or 'all'}", name=r.name
            )
            text = "\n\n".join(_describe(f) for f in r.findings)
            if r.status == "failed":
                top = r.findings[0]
                fail = ET.SubElement(
                    case, "failure", message=top.explanation.split(". ")[0], type=top.severity
                )
                fail.text = text
            elif r.findings:
                ET.SubElement(case, "system-out").text = text
    ET.indent(suites)
    return ET.tostring(suites, encoding="utf-8", xml_declaration=True) + b"\n"


def _describe(f: Finding) -> str:
    lines = [f"{f.id} ({f.severity}, {f.level or 'all levels'}): {f.explanation}", "evidence:"]
    lines += [f"  {k} = {v}" for k, v in f.evidence.items()]
    if f.remedies:
        r = f.remedies[0]
        params = ",".join(f"{k}={v}" for k, v in r.params.items())
        lines.append(f"top remedy: {r.id}{':' + params if params else ''} - {r.why}")
    return "\n".join(lines)


def resolve_from_config(value: str | None, config_path: Path | None) -> str | None:
    """A path from the config file, relative to the file's folder."""
    if value is None or config_path is None:
        return value
    p = Path(value)
    return str(p if p.is_absolute() else config_path.parent / p)
