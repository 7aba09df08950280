"""The library call behind ``retrain --race``: candidates, start or resume, run, the report.

Candidates: the first ``arms`` applicable remedies of ``--from-report`` (an analyze
report.json), or, without one, of an analysis of the checkpoint on the validation set (the
same ``analyze_dataset`` pass as ``convdiag analyze``); each explicit ``--remedy`` adds an
arm. The report is the analysis (its findings and predicted ranking) with a ``race``
section: the plan, every arm's rungs, the winner, the gain over the baseline and the verdict.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from convdiag.errors import InputError
from convdiag.training.race import RaceConfig, load_state, run_race, start_race
from convdiag.training.race_arms import Arm, Remedies, arm_name, candidates_from_report


def pick_candidates(explicit: Remedies, predicted: Remedies, k: int) -> list[Arm]:
    """Arms: the first ``k`` predicted remedies, then each explicit remedy (no duplicates)."""
    arms: list[Arm] = []
    for rems, kind in [(r, "single") for r in predicted[:k]] + [(r, "explicit") for r in explicit]:
        name = arm_name([rems])
        if all(a.name != name for a in arms):
            arms.append(Arm(name, [rems], kind))
    if not arms:
        raise InputError(
            "--race: no candidate remedy (the analysis proposes none; add --remedy ID)"
        )
    return arms


def analysis_of(
    spec: Any, model: Any, val_ds: Any, recipe: Any, device: Any, from_report: str | None
) -> dict[str, Any]:
    """The analyze report the candidates come from: ``from_report`` read, else a fresh
    ``analyze_dataset`` of the checkpoint on the validation set."""
    if from_report:
        try:
            rep = json.loads(Path(from_report).read_text(encoding="utf-8"))
            if not isinstance(rep, dict) or not isinstance(rep.get("findings"), list):
                raise ValueError("no findings")
        except (OSError, ValueError) as e:
            raise InputError(
                f"--from-report {from_report}: not an analyze report.json ({e})"
            ) from None
        return rep
    from convdiag.remedies.analyze import analyze_dataset

    report, _ = analyze_dataset(spec.runner(model, device), val_ds, recipe, batch_size=recipe.batch)
    return report


def race_retrain(
    cfg: RaceConfig,
    spec: Any,
    model: Any,
    data: Any,
    explicit: Remedies,
    arms: int,
    from_report: str | None,
    resume: bool,
    clock: Callable[[], float] = time.monotonic,
    on_plan: Callable[[dict[str, Any]], Callable[[str, int], None] | None] | None = None,
    on_step: Callable[[str, int], None] | None = None,
) -> dict[str, Any]:
    """Run a race (or continue it with ``resume``) and return the report: the analysis with
    ``race`` = the final race state (see ``race.run_race``) and ``kind`` "race".

    ``on_plan(state)`` is called once the plan is known and returns the per-step callback
    ``on_step(arm, step)`` (a progress bar), or None; without it ``on_step`` is that callback
    (also called in the calibration of a budget, as arm "calibration").
    """
    from convdiag.training.distributed import resolve_device
    from convdiag.training.workflow import REFERENCE

    if resume:
        state = load_state(cfg.out, cfg)
        analysis = state.get("analysis") or {}
    else:
        analysis = analysis_of(spec, model, data[1], cfg.base, resolve_device(cfg.device),
                               from_report)  # fmt: skip
        predicted = candidates_from_report(analysis, spec.factory == REFERENCE, 1000)
        candidates = pick_candidates(explicit, predicted, arms)
        state = start_race(cfg, spec, model, candidates, data, clock, on_step)
        state["analysis"] = analysis
        state["predicted"] = [{"id": r, "params": p} for r, p in predicted]
    if on_plan is not None:
        on_step = on_plan(state)
    state = run_race(cfg, state, data, clock, on_step)
    report = {k: v for k, v in analysis.items() if k not in ("race",)}
    race = {k: v for k, v in state.items() if k not in ("analysis",)}
    report.update({"kind": report.get("kind", "analyze"), "race": race})
    report.setdefault("findings", [])
    report.setdefault("metrics", {})
    report.setdefault("schema", 1)
    return report
