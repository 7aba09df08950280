"""Benchmark ``retrain --race`` on the collapsed demo checkpoint against ``--compare``.

Run: OMP_WAIT_POLICY=PASSIVE .venv/bin/python bench/race.py [--n 560 --size 240x320 ...]

1. Synthesise the demo set and train the demo's failing recipe (P2, hard labels, BCE, zero
   bias, lr 1e-3) for ``--train-steps``: the collapsed checkpoint.
2. Race: ``--arms`` candidates from the analysis of that checkpoint, the winner trained
   ``--steps`` N steps (successive halving; total steps T over every arm).
3. Compare, every arm at the same N: one ``retrain --compare``-style run per single
   candidate remedy plus the baseline, N steps each: which remedy really wins at N, and the
   wall time of finding it that way ((k + 1) x N steps).
4. Compare at the same total steps: ``--compare`` with the top predicted remedy (what one
   would run without a race), T / 2 steps for each of its two runs.

Prints one JSON document: the winner, F1s, steps and wall times of each.

Measured here (defaults: 560 images of 240x320, 392 for training; 2 CPU cores shared with
other jobs, load ~7; torch 2.13 CPU): the failing recipe collapsed (600 steps, 185 s). The
race (4 arms from the analysis: focal-loss, soft-labels, sigma-schedule, pos-weight; rungs
at 75 / 150 / 300 steps) kept pos-weight and focal-loss after rung 0, added focal-loss +
pos-weight, stopped focal-loss after rung 1 (F1 0.022 against pos-weight's 0.254 at 150) and
picked pos-weight: F1 0.513 against the baseline's 0.065 at 300 (gain +0.449, noise 0.065),
1,200 steps in all, 380 s. Every arm at 300 steps (1,500 steps, 585 s): pos-weight 0.513,
focal-loss 0.494, soft-labels 0.022, sigma-schedule 0.015, baseline 0.065: the same winner.
``--compare`` with the top predicted remedy (focal-loss) at the race's 1,200 steps (600 per
run, 418 s): F1 0.686, baseline 0.193.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch

from convdiag.load.datasets import load_train_val
from convdiag.load.options import ModelOptions, RecipeOptions
from convdiag.load.synth import SynthConfig, synthesize
from convdiag.report.demo import baseline_recipe
from convdiag.targets.geometry import parse_size
from convdiag.training.race import RaceConfig
from convdiag.training.race_run import race_retrain
from convdiag.training.workflow import load_for_retrain, retrain_compare, train_new_model


def _f1(summary: dict[str, Any] | None) -> float | None:
    return None if not summary else summary.get("f1_at_0.5")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=560)
    ap.add_argument("--size", default="240x320")
    ap.add_argument("--train-steps", type=int, default=600)
    ap.add_argument("--steps", type=int, default=300, help="N: the race winner's steps")
    ap.add_argument("--arms", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="keep everything here (default: a temp dir)")
    args = ap.parse_args()
    torch.set_num_threads(max(1, (os.cpu_count() or 1)))
    root = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="race-bench-"))
    root.mkdir(parents=True, exist_ok=True)
    data = root / "data"
    synthesize(data, SynthConfig(n=args.n, size=parse_size(args.size), seed=args.seed,
                                 snr=6.0, clutter=0.3))  # fmt: skip
    sets = load_train_val(data, None, seed=args.seed)
    device = torch.device("cpu")
    t0 = time.perf_counter()
    train_new_model(baseline_recipe(args.seed, 1e-3), *sets, args.train_steps, device,
                    out=root / "failing", run_name="failing")  # fmt: skip
    ckpt = root / "failing" / "checkpoint.pt"
    t_train = time.perf_counter() - t0

    def fresh() -> Any:
        return load_for_retrain(ckpt, ModelOptions(), RecipeOptions(), args.seed)

    loaded, recipe, spec = fresh()
    out = root / "race"
    out.mkdir(exist_ok=True)
    cfg = RaceConfig(str(ckpt), str(data), out, recipe, seed=args.seed, steps=args.steps)
    t0 = time.perf_counter()
    rep = race_retrain(cfg, spec, loaded.model, sets, [], args.arms, None, False)
    t_race = time.perf_counter() - t0
    race = rep["race"]
    total = sum(a["step"] for a in race["arms"])
    singles = [a for a in race["arms"] if a["kind"] == "single"]

    # every arm at the same N steps: the baseline once, then each single remedy
    every: dict[str, Any] = {}
    t0 = time.perf_counter()
    for i, a in enumerate(singles):
        loaded, recipe, spec = fresh()
        rems = [(r["id"], r["params"]) for r in a["remedies"]]
        r = retrain_compare(spec, loaded.model, recipe, rems, *sets, args.steps, args.seed,
                            i == 0, None, device)  # fmt: skip
        if i == 0:
            every["baseline"] = _f1(r["baseline"])
        every[a["name"]] = _f1(r["remedy"])
    t_every = time.perf_counter() - t0
    best_every = max((k for k in every if k != "baseline"), key=lambda k: every[k] or -1.0)

    # --compare with the top predicted remedy at the race's total steps
    top = singles[0]
    loaded, recipe, spec = fresh()
    t0 = time.perf_counter()
    half = max(1, total // 2)
    rems = [(r["id"], r["params"]) for r in top["remedies"]]
    cmp_ = retrain_compare(spec, loaded.model, recipe, rems, *sets, half, args.seed, True, None,
                           device)  # fmt: skip
    t_cmp = time.perf_counter() - t0
    win = next(a for a in race["arms"] if a["name"] == race["winner"])
    last = str(race["final_rung"])
    base_arm = next(a for a in race["arms"] if a["kind"] == "baseline")
    print(json.dumps({
        "data": {"n": args.n, "size": args.size, "train_images": len(sets[0])},
        "failing_training_s": round(t_train, 1),
        "race": {
            "winner": race["winner"], "winner_f1": win["rungs"][last]["f1_at_0.5"],
            "baseline_f1": base_arm["rungs"][last]["f1_at_0.5"],
            "gain": race["gain"], "noise": race["noise"], "verdict": race["verdict"],
            "steps_winner": args.steps, "steps_total": total, "seconds": round(t_race, 1),
            "rungs": [r["steps"] for r in race["plan"]["rungs"]],
            "arms": {a["name"]: {k: v.get("f1_at_0.5") for k, v in a["rungs"].items()}
                     for a in race["arms"]},
        },
        "every_arm_at_N": {"f1": every, "best": best_every, "steps_total":
                           (len(singles) + 1) * args.steps, "seconds": round(t_every, 1)},
        "compare_top_remedy_same_total": {
            "remedy": top["name"], "steps_each": half, "f1": _f1(cmp_["remedy"]),
            "baseline_f1": _f1(cmp_["baseline"]), "seconds": round(t_cmp, 1),
        },
    }, indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
