"""The finding catalogue: every finding id with its severity and title, in report order.

One table for every surface (analyze, labels, logs, check, Monitor): ``SEVERITY_OF``,
``TITLES`` and ``ID_ORDER`` are read from it. Severities follow DESIGN.md "Exit codes":
error for the collapses, the flood and non-finite outputs; warning for the risks; info for
the rest.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FindingKind:
    """One finding id: its severity, its title and the surfaces that can raise it."""

    id: str
    severity: str
    title: str
    surfaces: tuple[str, ...]


_ALL = ("analyze", "logs", "check", "monitor")
KINDS: tuple[FindingKind, ...] = (
    FindingKind("non-finite-outputs", "error", "non-finite outputs", _ALL),
    FindingKind("dead-network", "error", "dead network", ("analyze", "check")),
    # label-shift: an error past the match radius; a consistent smaller shift is a warning
    FindingKind("label-shift", "error", "label shift", ("analyze", "labels", "check")),
    FindingKind("background-collapse", "error", "background collapse", _ALL),
    FindingKind("calibration-collapse", "error", "calibration collapse", ("analyze", "check")),
    FindingKind("fp-flood", "error", "false-positive flood", ("analyze", "logs", "check")),
    FindingKind("offset-head-untrained", "error", "offset head untrained", ("analyze", "check")),
    FindingKind("regression-collapse", "error", "regression collapse", _ALL),
    FindingKind(
        "gradient-starvation", "warning", "gradient starvation", ("analyze", "check", "monitor")
    ),
    FindingKind("head-imbalance", "warning", "head imbalance", ("analyze", "check", "monitor")),
    FindingKind(
        "label-quantization", "warning", "label quantization", ("analyze", "labels", "check")
    ),
    FindingKind("label-collision", "warning", "label collision", ("analyze", "labels", "check")),
    FindingKind("extreme-imbalance", "warning", "extreme imbalance", ("labels", "check")),
    FindingKind("validation-off", "warning", "validation off", ("logs",)),
    FindingKind("loss-plateau", "warning", "loss plateau", ("logs",)),
    FindingKind("too-short", "info", "too short to judge", ("logs",)),
    FindingKind("healthy", "info", "healthy", ("analyze",)),
    FindingKind("single-class-cls-loss", "info", "cls loss 0 by design", ("logs",)),
    FindingKind("not-judged", "info", "not judged", ("analyze", "check")),
)
KIND_OF = {k.id: k for k in KINDS}
# DESIGN.md "Exit codes": the severity of each id the rules raise above info.
SEVERITY_OF = {k.id: k.severity for k in KINDS if k.severity != "info"}
TITLES = {k.id: k.title for k in KINDS}
ID_ORDER = tuple(k.id for k in KINDS)


def title(finding_id: str) -> str:
    """The display title of a finding id (the id itself when unknown)."""
    return TITLES.get(finding_id, finding_id)
