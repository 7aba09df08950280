"""``convdiag sweep``: arms and their recipes, selection, statistics over seeds, the CSV,
and (small) end-to-end runs, sequential and with --jobs 2."""

from __future__ import annotations

import csv
import io
import json
import math
import statistics
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from convdiag.cli.main import cli
from convdiag.errors import InputError
from convdiag.load.recipe import Recipe
from convdiag.report.sweep_report import CSV_COLUMNS, sweep_csv, table_rows
from convdiag.training.sweep import (
    DEFAULT_SIGMAS,
    SweepConfig,
    build_arms,
    parse_sigma_lists,
    pos_weight_from_prior,
    run_sweep,
    select_arms,
    steps_to_reach,
    summarize,
)

SEED_PLAN = [
    "soft3-s0.8", "soft3-s1.0", "soft4-s1.0", "soft5-s1.0", "soft5-s1.2", "dynamic", "focal",
    "pos-weight", "ohem", "ramp", "soft3+ramp", "oversample", "fused", "hard",
]  # fmt: skip


def test_default_arms_follow_the_seed_plan() -> None:
    arms = build_arms(["P2"], {"P2": 63.0})
    assert [a.name for a in arms] == SEED_PLAN
    base = SweepConfig(data="-", bias_init="prior").base_recipe(seed=3)
    rec = {a.name: a.recipe(base) for a in arms}
    hard = rec["hard"]
    assert (hard.head, hard.labels, hard.loss, hard.bias_init, hard.seed) == (
        "P2", "hard", "bce", "prior", 3
    )  # fmt: skip
    assert hard.pos_weight is None and hard.ohem is None and not hard.loss_ramp
    for name, k, s in (("soft3-s0.8", 3, 0.8), ("soft4-s1.0", 4, 1.0), ("soft5-s1.2", 5, 1.2)):
        r = rec[name]
        assert (r.labels, r.kernel, r.sigma, r.trunc, r.loss) == ("soft", k, s, 0.1, "bce")
    assert rec["dynamic"].schedule == "dynamic" and rec["dynamic"].soft
    assert rec["focal"].loss == "focal" and rec["focal"].labels == "hard"
    assert rec["pos-weight"].pos_weight == 63.0 and rec["pos-weight"].loss == "bce"
    assert rec["ohem"].ohem == 3.0 and rec["ohem"].labels == "hard"
    assert rec["ramp"].loss_ramp == {"start": 1.0, "end": 10.0, "ramp": 0.3, "cap": 10.0}
    sr = rec["soft3+ramp"]
    assert (sr.labels, sr.kernel, sr.sigma) == ("soft", 3, 1.0) and sr.loss_ramp
    assert rec["oversample"].oversample == 0.5
    assert rec["fused"].head == "fused" and rec["fused"].labels == "hard"
    # every arm changes exactly what its name says, nothing of the shared budget
    for r in rec.values():
        assert (r.lr, r.batch, r.seed, r.bias_init) == (hard.lr, hard.batch, 3, "prior")


def test_several_heads_and_sigma_lists() -> None:
    sig = parse_sigma_lists(["3=0.9", "4="])
    assert sig == {3: [0.9], 5: DEFAULT_SIGMAS[5]}
    arms = build_arms(["P2", "P4"], {"P2": 60.0, "P4": 9.0}, sig)
    names = [a.name for a in arms]
    assert "P2/soft3-s0.9" in names and "P4/soft5-s1.2" in names
    assert not any("soft4" in n for n in names)
    assert names.count("fused") == 1 and "P4/hard" in names
    p4 = {a.name: a for a in arms}["P4/pos-weight"]
    assert p4.head == "P4" and p4.remedy_list() == [("pos-weight", {"w": 9.0})]
    assert p4.recipe(Recipe()).head == "P4"


@pytest.mark.parametrize("text", ["3", "x=1", "3=-1", "0=1.0", "3=a"])
def test_bad_sigma_lists(text: str) -> None:
    with pytest.raises(InputError, match="--soft-sigmas"):
        parse_sigma_lists([text])


def test_select_arms_by_name_and_pattern() -> None:
    arms = build_arms(["P2"], {"P2": 10.0})
    picked = select_arms(arms, "hard, soft3*")
    assert [a.name for a in picked] == ["soft3-s0.8", "soft3-s1.0", "soft3+ramp", "hard"]
    assert select_arms(arms, None) == arms
    with pytest.raises(InputError, match="--arms 'nope'"):
        select_arms(arms, "hard,nope")


@settings(deadline=None)  # the first call imports convdiag.analyses.run
@given(st.floats(1e-6, 0.4))
def test_pos_weight_is_sqrt_of_negatives_per_positive(prior: float) -> None:
    w = pos_weight_from_prior(prior)
    ref = math.sqrt((1 - prior) / prior)
    ref = float(f"{ref:.2g}")  # two significant digits
    assert w == pytest.approx(min(max(ref, 2.0), 1000.0), rel=1e-9)


def test_steps_to_reach() -> None:
    hist = [{"step": 10, "f1_at_0.5": 0.2}, {"step": 20, "f1_at_0.5": None},
            {"step": 30, "f1_at_0.5": 0.5}, {"step": 40, "f1_at_0.5": 0.9}]  # fmt: skip
    assert steps_to_reach(hist) == 30
    assert steps_to_reach(hist, 0.95) is None
    assert steps_to_reach([]) is None


def _run(seed: int, f1: float, reach: int | None, loc: float | None) -> dict[str, Any]:
    final = {"f1_at_0.5": f1, "best_f1": f1 + 0.1, "fp_per_image": 2.0 * seed,
             "loc_error_px": loc}  # fmt: skip
    return {"arm": "a", "seed": seed, "final": final, "steps_to_f1_0.5": reach, "seconds": 1.0}


def test_summarize_mean_and_spread_over_seeds() -> None:
    arm = build_arms(["P2"], {"P2": 10.0})[-1]
    runs = [_run(0, 0.6, 100, 1.0), _run(1, 0.7, None, None), _run(2, 0.2, 300, 2.0)]
    row = summarize(arm, runs, steps=500)
    assert row["f1_at_0.5_mean"] == pytest.approx(statistics.mean([0.6, 0.7, 0.2]))
    assert row["f1_at_0.5_std"] == pytest.approx(statistics.stdev([0.6, 0.7, 0.2]))
    assert row["fp_per_image_mean"] == pytest.approx(2.0)
    assert row["loc_error_px_mean"] == pytest.approx(1.5)  # over the runs that matched
    assert row["steps_to_f1_0.5_mean"] == pytest.approx(200) and row["reached"] == 2
    one = summarize(arm, runs[:1], steps=500)
    assert one["f1_at_0.5_std"] is None and one["seeds"] == 1
    never = summarize(arm, runs[1:2], steps=500)
    assert never["steps_to_f1_0.5_mean"] is None and never["reached"] == 0
    text = sweep_csv([row, never])
    parsed = list(csv.DictReader(io.StringIO(text)))
    assert list(parsed[0]) == list(CSV_COLUMNS) and len(parsed) == 2
    assert float(parsed[0]["f1_at_0.5_mean"]) == pytest.approx(row["f1_at_0.5_mean"], rel=1e-5)
    assert parsed[1]["steps_to_f1_0.5_mean"] == ""
    rows = table_rows({"rows": [never, row]})
    # best mean F1 first: the one-seed run (0.7) before the three-seed mean (0.5)
    assert rows[0][1] == "0.7" and rows[0][5] == "never"
    assert rows[1][1].startswith("0.5 ± ") and rows[1][5].endswith("(2/3)")


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from convdiag.load.synth import SynthConfig, synthesize

    out = tmp_path_factory.mktemp("sweep") / "data"
    synthesize(out, SynthConfig(n=10, size=(32, 48), targets=(1, 2), snr=10, seed=2))
    return out


def test_run_sweep_streams_rows_and_keeps_the_budget(small: Path) -> None:
    arms = select_arms(build_arms(["P2"], {"P2": 10.0}), "hard,focal")
    cfg = SweepConfig(data=str(small), steps=4, seeds=(0, 1), batch=2, eval_every=2)
    seen: list[list[str]] = []
    stepped: list[int] = []
    report = run_sweep(cfg, arms, on_arm=lambda rows, runs: seen.append(
        [r["arm"] for r in rows]), on_step=stepped.append)  # fmt: skip
    assert seen == [["focal"], ["focal", "hard"]]  # rewritten as each arm finishes
    assert sum(stepped) == 4 * 2 * 2
    assert [(r["arm"], r["seed"]) for r in report["runs"]] == [
        ("focal", 0), ("focal", 1), ("hard", 0), ("hard", 1)
    ]  # fmt: skip
    for r in report["runs"]:
        assert [h["step"] for h in r["history"]] == [2, 4]
    a, b = (r["history"][-1]["train_loss"] for r in report["runs"][2:])
    assert a != b  # seeds differ


def invoke(*args: Any) -> Any:
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.mark.slow
def test_sweep_cli_with_two_jobs(small: Path, tmp_path: Path) -> None:
    out = tmp_path / "sw"
    res = invoke("sweep", small, "--arms", "hard,soft3-s1.0,focal", "--steps", "4", "--batch",
                 "2", "--jobs", "2", "--out", out, "--format", "json")  # fmt: skip
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    assert [r["arm"] for r in report["rows"]] == ["soft3-s1.0", "focal", "hard"]
    rows = list(csv.DictReader((out / "sweep.csv").open()))
    assert [r["arm"] for r in rows] == ["soft3-s1.0", "focal", "hard"]
    assert all(r["steps"] == "4" and r["seeds"] == "1" for r in rows)
    assert (out / "f1_vs_step.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = json.loads((out / "sweep.json").read_text())
    assert {r["history"][-1]["step"] for r in saved["runs"]} == {4}
    assert saved["config"]["jobs"] == 2


def test_sweep_cli_list_and_errors(small: Path, tmp_path: Path) -> None:
    res = invoke("sweep", small, "--list-arms", "--format", "json")
    assert res.exit_code == 0, res.output
    assert [a["name"] for a in json.loads(res.stdout)["arms"]] == SEED_PLAN
    for args, word in (
        (["--arms", "nope", "--out", tmp_path], "--arms"),
        ([], "--out"),
        (["--heads", "P9", "--out", tmp_path], "--heads"),
        (["--soft-sigmas", "3=x", "--out", tmp_path], "--soft-sigmas"),
        (["--crop", "big", "--out", tmp_path], "--crop"),
    ):
        res = invoke("sweep", small, *args)
        assert res.exit_code == 2, res.output
        lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1 and word in lines[0], res.stderr
