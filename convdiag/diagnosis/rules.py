"""Findings from measurements: rules, thresholds and the remedy catalogue.

Pure functions: ``diagnose(results, metrics, label_stats, recipe, thresholds)`` turns the
analyses of each level into ``Finding``s with their evidence (the numbers and the
thresholds they crossed), a two-sentence explanation and ranked remedies whose parameters
come from the data (soft-label sigma and kernel from the measured target size at the
level, pos_weight from the measured negatives per positive, the level to move to from the
label statistics). Verdicts come from measuring the model, never from its recipe alone.

Remedies are ranked by the evidence on this model (``remedy_catalogue.rank``): the gain in
target-area gradient share that the counterfactual gradient of the same logits under each
remedy shows (``analyses.gradients``), capped by this dataset's label statistics. Remedies
with a gain come first, those without evidence next, those the evidence says hurt last;
the prior F1 measured once on the synthetic set (``PRIOR_F1``, labelled as a prior with
``PRIOR_SOURCE`` in each remedy's text) only breaks ties. A raced report replaces all of
this with the F1 each remedy reached on the user's own model (``retrain --race``).
"""

from __future__ import annotations

from typing import Any

from convdiag.diagnosis.catalogue import ID_ORDER, TITLES
from convdiag.diagnosis.findings import Finding, severity_rank
from convdiag.diagnosis.rules_common import Ctx
from convdiag.diagnosis.rules_dead import root_causes
from convdiag.diagnosis.rules_model import collapse, nonfinite, not_judged, suppressed_checks
from convdiag.diagnosis.rules_offsets import labels, regression
from convdiag.diagnosis.rules_shift import shift, withhold_explained
from convdiag.diagnosis.rules_signal import heads, healthy, starvation
from convdiag.diagnosis.thresholds import Thresholds
from convdiag.load.recipe import Recipe
from convdiag.targets.geometry import stride_of

# --------------------------------------------------------------------------- entry points


def diagnose(
    results: dict[str, dict[str, Any]],
    metrics: dict[str, dict[str, Any]],
    label_stats: dict[str, Any],
    recipe: Recipe,
    thresholds: Thresholds | None = None,
    targets: dict[str, Any] | None = None,
    reference: bool = True,
    radius: float | None = None,
) -> list[Finding]:
    """Findings of every level, sorted: severity (error first), then ID_ORDER, then level.

    results: {level: {analysis: compute()}}; metrics: {level: level_metrics}; label_stats:
    ``label_statistics`` output covering the analysed levels (and coarser/finer ones for
    level changes); targets: ``measure_targets`` output; reference: whether the model is
    the reference detector (level-change and fused-head apply to it only). A level with no
    target cell is judged on its false positives only. With no warning or error anywhere,
    one ``healthy`` finding per level.
    """
    th = thresholds or Thresholds()
    rad = float(
        radius if radius is not None else label_stats.get("settings", {}).get("radius", 3.0)
    )
    found: list[Finding] = []
    for level, res in results.items():
        c = Ctx(
            level,
            res,
            metrics[level],
            label_stats,
            label_stats["levels"][level],
            recipe,
            th,
            targets,
            reference,
            rad,
        )
        nf = nonfinite(c)
        if nf is not None:
            found.append(nf)
        # Checks resting on non-finite outputs are left out and listed (not-judged).
        skip = suppressed_checks(c)
        if skip:
            found.append(not_judged(c, skip))
        lv: list[Finding] = []
        if not res["scores"]["target_cells"]:
            # Nothing to detect: only the false positives can be judged.
            lv += [f for f in collapse(c) if f.id == "fp-flood"]
        else:
            lv += collapse(c)
            lv += [f for f in (shift(c),) if f is not None]
            lv += regression(c)
            lv += labels(c)
            for f in (starvation(c), heads(c)):
                if f is not None:
                    lv.append(f)
        lv = root_causes(c, lv, skip)  # dead-network; remedies it makes wrong withheld
        found += withhold_explained([f for f in lv if f.id not in skip])
    if not any(severity_rank(f.severity) >= 1 for f in found):
        found += [healthy(level, metrics[level]) for level in results]
    return sort_findings(found)


def sort_findings(findings: list[Finding]) -> list[Finding]:
    """Severity (error first), then the order of ID_ORDER, then the level's stride."""

    def key(f: Finding) -> tuple[int, int, int]:
        order = ID_ORDER.index(f.id) if f.id in ID_ORDER else len(ID_ORDER)
        lv = stride_of(f.level) if f.level else 0
        return (-severity_rank(f.severity), order, lv)

    return sorted(findings, key=key)


def verdict(findings: list[Finding] | list[dict[str, Any]]) -> str:
    """One line: the top finding's title and level, and how many more there are."""
    fs = [f if isinstance(f, Finding) else Finding.from_dict(f) for f in findings]
    if not fs:
        return "no findings"
    top = fs[0]
    title = TITLES.get(top.id, top.id)
    where = f" at {top.level}" if top.level else ""
    if top.id == "healthy":
        return f"healthy{where}: no rule crossed its threshold"
    more = len([f for f in fs[1:] if f.id != "healthy"])
    tail = f" (+{more} more finding{'s' if more != 1 else ''})" if more else ""
    return f"{top.severity}: {title}{where}{tail}"


__all__ = ["ID_ORDER", "TITLES", "Thresholds", "diagnose", "sort_findings", "verdict"]
