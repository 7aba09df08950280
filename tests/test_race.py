"""``retrain --race``: rung plans from steps and budgets, the halving order, and short races
on the tiny set (pruned as planned, baseline kept, resumed = uninterrupted, budgets kept)."""

from __future__ import annotations

import json
import math
import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from bad.helpers import error_line, run_cli

from convdiag.errors import InputError
from convdiag.training.race_plan import (
    BUDGET_MARGIN,
    candidate_counts,
    halving_order,
    parse_budget,
    plan_for_budget,
    plan_rungs,
    plan_seconds,
)

# --------------------------------------------------------------------------- planning

# (k, N) -> (candidates per rung, cumulative steps per rung, kept per rung, total steps).
# Total by hand: the baseline's N + each candidate's steps where it stops (the combination
# joins at rung 1 and counts from 0).
PLANS = [
    ((1, 50), ([1], [50], [0], 50 + 50)),
    ((2, 100), ([2, 2], [50, 100], [1, 0], 100 + 50 + 2 * 100)),
    ((3, 40), ([3, 3, 2], [10, 20, 40], [2, 2, 0], 40 + 10 + 20 + 2 * 40)),
    ((4, 400), ([4, 3, 2], [100, 200, 400], [2, 2, 0], 400 + 2 * 100 + 200 + 2 * 400)),
    ((8, 80), ([8, 5, 3, 2], [10, 20, 40, 80], [4, 3, 2, 0], 80 + 40 + 40 + 40 + 160)),
    ((4, 3), ([4, 3, 2], [1, 2, 3], [2, 2, 0], 3 + 2 + 2 + 6)),  # one step per rung
]


@pytest.mark.parametrize(("args", "expect"), PLANS)
def test_plan_rungs(args: tuple[int, int], expect: tuple[list[int], ...]) -> None:
    plan = plan_rungs(*args)
    counts, steps, keep, total = expect
    assert [r.candidates for r in plan.rungs] == counts
    assert [r.steps for r in plan.rungs] == steps
    assert [r.keep for r in plan.rungs] == keep
    assert plan.total_steps() == total
    assert plan.final_steps == args[1]
    assert plan.evaluations() == sum(c + 1 for c in counts)


def test_plan_without_combination_and_too_few_steps() -> None:
    assert candidate_counts(4, combo=False) == [4, 2]
    assert [r.keep for r in plan_rungs(4, 10, combo=False).rungs] == [2, 0]
    with pytest.raises(InputError, match="--steps 2"):
        plan_rungs(4, 2)  # three rungs need three steps


@pytest.mark.parametrize(
    ("k", "budget", "step_s", "eval_s", "jobs"),
    [
        (4, 1000.0, 1.0, 0.0, 1),
        (4, 600.0, 0.3, 5.0, 1),
        (2, 90.0, 0.05, 1.0, 2),
        (8, 3600, 2.0, 20, 1),
    ],
)
def test_plan_for_budget_is_the_largest_that_fits(
    k: int, budget: float, step_s: float, eval_s: float, jobs: int
) -> None:
    plan = plan_for_budget(k, budget, step_s, eval_s, jobs)
    aim = BUDGET_MARGIN * budget
    assert plan_seconds(plan, step_s, eval_s, jobs) <= aim
    bigger = plan_rungs(k, plan.final_steps + 1)
    assert plan_seconds(bigger, step_s, eval_s, jobs) > aim
    # the cost by hand: (steps x s/step + evaluations x s/eval) / jobs
    by_hand = (plan.total_steps() * step_s + plan.evaluations() * eval_s) / jobs
    assert math.isclose(plan_seconds(plan, step_s, eval_s, jobs), by_hand)


def test_a_budget_too_short_names_the_flag() -> None:
    with pytest.raises(InputError, match="--budget"):
        plan_for_budget(4, 10.0, 1.0, 5.0)


@pytest.mark.parametrize(
    ("text", "secs"),
    [("10m", 600.0), ("90s", 90.0), ("1h30m", 5400.0), ("45", 45.0), ("1.5m", 90.0)],
)
def test_parse_budget(text: str, secs: float) -> None:
    assert parse_budget(text) == secs


@pytest.mark.parametrize("text", ["", "abc", "10x", "0", "-5m", "5m junk"])
def test_parse_budget_refuses(text: str) -> None:
    with pytest.raises(InputError, match="--budget"):
        parse_budget(text)


def test_halving_order_breaks_ties_by_best_f1_then_order() -> None:
    nan = float("nan")
    scores: list[tuple[str, float | None, float | None]] = [
        ("a", 0.5, 0.6),
        ("b", 0.5, 0.7),  # same F1, better best F1: before a
        ("c", 0.8, 0.1),
        ("d", None, 0.9),  # no metric: last
        ("e", 0.5, 0.7),  # ties b exactly: after b (given order)
        ("f", nan, nan),
    ]
    assert halving_order(scores) == ["c", "b", "e", "a", "d", "f"]


# --------------------------------------------------------------------------- races


class Clock:
    """An injected clock: time moves only when a training step ticks it."""

    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def _race(
    out: Path, ckpt: Path, data: Path, steps: int | None = 12, budget: float | None = None,
    clock: Callable[[], float] | None = None, on_step: Callable[[str, int], None] | None = None,
    resume: bool = False, k: int = 2,
) -> dict[str, Any]:  # fmt: skip
    from convdiag.load.datasets import load_train_val
    from convdiag.load.options import ModelOptions, RecipeOptions
    from convdiag.training.race import RaceConfig
    from convdiag.training.race_run import race_retrain
    from convdiag.training.workflow import load_for_retrain

    loaded, recipe, spec = load_for_retrain(ckpt, ModelOptions(), RecipeOptions(), 0)
    sets = load_train_val(data, None, seed=0)
    out.mkdir(exist_ok=True)
    cfg = RaceConfig(str(ckpt), str(data), out, recipe, steps=steps, budget_s=budget)
    kw: dict[str, Any] = {"on_step": on_step}
    if clock is not None:
        kw["clock"] = clock
    return race_retrain(cfg, spec, loaded.model, sets, [], k, None, resume, **kw)


def _rungs(report: dict[str, Any]) -> dict[str, Any]:
    return {a["name"]: (a["step"], a["rungs"], a["stopped_at"]) for a in report["race"]["arms"]}


@pytest.mark.slow
def test_race_prunes_as_planned_and_a_resumed_race_equals_an_uninterrupted_one(
    tiny_dataset: Path, trained_checkpoint: Callable[..., Path], tmp_path: Path
) -> None:
    from convdiag.load.checkpoint import load_checkpoint
    from convdiag.training.race import RaceInterrupted

    ckpt = trained_checkpoint(head="P2", labels="hard", loss="bce", bias_init="zero")
    whole = _race(tmp_path / "a", ckpt, tiny_dataset)
    race = whole["race"]
    plan = race["plan"]["rungs"]
    arms = race["arms"]
    base = next(a for a in arms if a["kind"] == "baseline")
    assert base["stopped_at"] is None and base["step"] == 12
    assert set(base["rungs"]) == {str(r["index"]) for r in plan}  # kept to the end
    assert sum(a["stopped_at"] == 0 for a in arms) == plan[0]["candidates"] - plan[0]["keep"]
    assert [a["kind"] for a in arms].count("combo") == 1  # the two best singles, combined
    combo = next(a for a in arms if a["kind"] == "combo")
    assert "0" not in combo["rungs"] and "1" in combo["rungs"]
    assert race["winner"] in {a["name"] for a in arms if a["stopped_at"] is None}
    win = load_checkpoint(tmp_path / "a" / "winner.pt")
    assert win.recipe is not None and win.recipe["remedies"] == race["winner"].split("+")
    assert win.meta["step"] == 12

    # interrupt the first candidate of rung 1 at its first step there, then resume
    first = plan[0]["steps"]
    seen: list[str] = []

    def interrupt(name: str, step: int) -> None:
        if step > first and name != "baseline" and name not in seen:
            seen.append(name)
            if len(seen) == 1:
                os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(RaceInterrupted):
        _race(tmp_path / "b", ckpt, tiny_dataset, on_step=interrupt)
    state = json.loads((tmp_path / "b" / "race.json").read_text())
    assert state["rung"] == 1 and any(first < a["step"] < 12 for a in state["arms"])
    # the arms after the interrupted one did not start (the combination comes last)
    assert [a["step"] for a in state["arms"] if a["kind"] == "combo"] == [0]
    resumed = _race(tmp_path / "b", ckpt, tiny_dataset, resume=True)
    assert _rungs(resumed) == _rungs(whole)
    assert resumed["race"]["winner"] == race["winner"]
    assert resumed["race"]["verdict"] == race["verdict"]


@pytest.mark.slow
def test_budgets_are_kept_with_an_injected_clock(
    tiny_dataset: Path, trained_checkpoint: Callable[..., Path], tmp_path: Path
) -> None:
    ckpt = trained_checkpoint(head="P2", labels="hard", loss="bce", bias_init="zero")
    clock = Clock()

    def tick(name: str, step: int) -> None:
        clock.t += 1.0  # one second per training step, validations free

    rep = _race(tmp_path / "a", ckpt, tiny_dataset, None, 60.0, clock, tick)["race"]
    assert rep["stopped"] is None  # planned to fit: 6 calibration steps + the race
    assert 0.6 * 60 <= clock.t <= 60 and rep["seconds"] <= 60
    assert rep["plan"]["rungs"][-1]["steps"] >= 8

    slow = Clock()

    def slower(name: str, step: int) -> None:  # the race runs twice as slow as calibrated
        slow.t += 1.0 if name == "calibration" else 2.0

    rep = _race(tmp_path / "b", ckpt, tiny_dataset, None, 60.0, slow, slower)["race"]
    assert rep["stopped"] and rep["stopped"].startswith("budget reached")
    assert slow.t <= 60 * 1.1  # stopped cleanly at the deadline (one step past at most)
    assert rep["verdict"]
    if rep["winner"]:  # judged at the last whole rung, the one before the partial one
        assert rep["stopped"] == f"budget reached in rung {rep['final_rung'] + 1}"


@pytest.mark.slow
def test_race_on_the_command_line_and_show(
    tiny_dataset: Path, trained_checkpoint: Callable[..., Path], tmp_path: Path
) -> None:
    ckpt = trained_checkpoint(head="P2", labels="hard", loss="bce", bias_init="zero")
    out = tmp_path / "race"
    args = ["--race", "--steps", 6, "--arms", 1, "--remedy", "focal-loss", "--format", "json"]
    res = run_cli(["retrain", ckpt, "--data", tiny_dataset, *args, "--out", out])
    assert res.code == 0, res.stderr
    race = json.loads(res.stdout)
    assert race["winner"] and race["verdict"]
    assert {"race.png", "race.md", "report.json", "report.html", "winner.pt", "race.json"} <= {
        p.name for p in out.iterdir()
    }
    report = json.loads((out / "report.json").read_text())
    assert report["race"]["winner"] == race["winner"] and report["findings"]
    analyzed = run_cli(["analyze", out / "winner.pt", "--data", tiny_dataset, "--format", "json"])
    assert analyzed.code in (0, 1) and json.loads(analyzed.stdout)["recipe"]["remedies"]
    shown = run_cli(["show", out / "report.json", "--format", "markdown"])
    assert shown.code in (0, 1) and "measured gain" in shown.stdout
    again = run_cli(["retrain", ckpt, "--data", tiny_dataset, "--race", "--steps", 6,
                     "--out", out])  # fmt: skip
    assert "--resume" in error_line(again)  # a second race does not overwrite the first


BAD = [
    (["--race", "--steps", 6], "--out"),
    (["--race", "--budget", "soon"], "--budget"),
    (["--budget", "5m"], "--race"),
    (["--crop", "500x500"], "--crop"),
    (["--crop", "big"], "--crop"),
    (["--batch", "100000"], "--batch"),
    (["--lr", "0"], "--lr"),
    (["--lr", "nan"], "--lr"),
    (["--lr", "inf"], "--lr"),
]


@pytest.mark.parametrize(("args", "flag"), BAD)
def test_bad_retrain_flags_exit_2_naming_the_flag(
    args: list[Any], flag: str, tiny_dataset: Path, trained_checkpoint: Callable[..., Path],
    tmp_path: Path,
) -> None:  # fmt: skip
    ckpt = trained_checkpoint(head="P2", labels="hard", loss="bce", bias_init="zero")
    out = ["--out", tmp_path / "o"] if "--out" not in flag else []
    line = error_line(run_cli(["retrain", ckpt, "--data", tiny_dataset, "--soft", *args, *out]))
    assert flag in line
    assert not (tmp_path / "o" / "race.json").exists()


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (["--crop", "500x500"], "--crop"),
        (["--batch", "100000"], "--batch"),
        (["--lr", "inf"], "--lr"),
    ],
)
def test_bad_train_flags_exit_2_naming_the_flag(
    args: list[Any], flag: str, tiny_dataset: Path, tmp_path: Path
) -> None:
    line = error_line(
        run_cli(["train", tiny_dataset, "--steps", 2, *args, "--out", tmp_path / "t"])
    )
    assert flag in line
    assert not (tmp_path / "t" / "checkpoint.pt").exists()


# --------------------------------------------------------------------------- ranking


def test_evidence_on_this_model_outranks_the_prior() -> None:
    from convdiag.diagnosis.findings import Remedy
    from convdiag.diagnosis.remedy_catalogue import PRIOR_SOURCE, measured_why, rank

    def ids(pairs: list[tuple[str, float | None]]) -> list[str]:
        return [r.id for r in rank([(Remedy(i), g) for i, g in pairs])]

    # OHEM's prior is the worst (F1 0.01), but a measured gain beats any prior
    assert ids([("focal-loss", None), ("ohem", 0.1)]) == ["ohem", "focal-loss"]
    assert ids([("focal-loss", 0.02), ("pos-weight", 0.3)]) == ["pos-weight", "focal-loss"]
    # evidence that a remedy hurts puts it below those without evidence
    assert ids([("focal-loss", -0.2), ("ohem", None)]) == ["ohem", "focal-loss"]
    # without evidence (or none either way) the prior orders, then the given order
    assert ids([("ohem", None), ("pos-weight", 0.0), ("focal-loss", None)]) == [
        "focal-loss", "pos-weight", "ohem"
    ]  # fmt: skip
    assert ids([("loss-ramp", None), ("oversample", None)]) == ["loss-ramp", "oversample"]
    assert measured_why("focal-loss").startswith(PRIOR_SOURCE)
    assert "not measured" in measured_why("loss-ramp")


@pytest.mark.parametrize(("npp", "first"), [(500.0, "pos-weight"), (5000.0, "focal-loss")])
def test_pos_weight_gets_no_credit_where_positives_are_too_rare(npp: float, first: str) -> None:
    from convdiag.diagnosis.rules_common import Ctx, signal_remedies
    from convdiag.diagnosis.thresholds import Thresholds
    from convdiag.load.recipe import Recipe

    shares = {"current": 0.1, "pos-weight": 0.6, "focal-loss": 0.3}
    res = {"gradients": {"candidates": {k: {"target_area_grad_share": v}
                                        for k, v in shares.items()}}}  # fmt: skip
    c = Ctx("P2", res, {}, {}, {"neg_per_pos": npp}, Recipe(), Thresholds(), None, True, 3.0)
    ranked = signal_remedies(c, ["focal-loss", "pos-weight", "loss-ramp"])
    assert ranked[0].id == first
    assert ranked[-1].id == "loss-ramp"  # no counterfactual: after the measured gains
    pw = next(r for r in ranked if r.id == "pos-weight")
    assert ("no credit" in pw.why) == (npp > Thresholds().neg_per_pos_max)
