"""``sweep``: the seed's experiment plan, every arm trained from scratch on the same budget.

An arm is a named list of remedies applied to the hard-label baseline (the head's level,
hard one-cell labels, BCE, bias at the label prior unless ``bias_init`` says otherwise).
Every arm trains a fresh reference detector for the same steps with the same seeds; its
validation history gives F1 at 0.5, best F1, FP per image, localisation error, and the
first evaluated step where F1 at 0.5 reaches 0.5 (None if never).

Default arms (in this order; ``--arms`` picks by name or shell pattern):

- ``soft{K}-s{S}``: fixed soft labels, K x K window, sigma S (cells), trunc 0.1, for the
  sigma lists 3x3: 0.8, 1.0; 4x4: 1.0; 5x5: 1.0, 1.2 (the seed's ranges);
- ``dynamic``: the seed's schedule (30% 5x5/1.2, to 70% 4x4/1.0, then 3x3/0.8);
- ``focal``: CenterNet focal loss (alpha 2, beta 4) with hard labels;
- ``pos-weight``: BCE with positive weight w = sqrt(negatives / positives) of the training
  labels at the head's level, to 2 significant digits, clamped to [2, 1000] (the geometric
  mean between no weighting and full balancing; full balancing floods false positives);
- ``ohem``: all positives and the 3 hardest negatives per positive;
- ``ramp``: the cls-loss weight ramp (1 -> 10 over the first 30%, cap 10);
- ``soft3+ramp``: soft 3x3 sigma 1.0 with the ramp;
- ``oversample``: half of the crops centred near a target;
- ``fused``: the fused P4+P2 head (coarse-to-fine), hard labels;
- ``hard``: the baseline itself.

With several heads every arm but ``fused`` runs once per head, named ``HEAD/arm``.
Runs go one after another, or in ``jobs`` spawned processes (each with
cores // jobs torch threads and OMP_WAIT_POLICY=PASSIVE).
"""

from __future__ import annotations

import fnmatch
import math
import multiprocessing
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from convdiag.errors import InputError
from convdiag.load.options import DatasetOptions
from convdiag.load.recipe import Recipe
from convdiag.remedies.apply import apply_remedy

# Soft-label windows and their sigma lists (cells), from the seed's plan.
DEFAULT_SIGMAS: dict[int, list[float]] = {3: [0.8, 1.0], 4: [1.0], 5: [1.0, 1.2]}
METRICS = ("f1_at_0.5", "best_f1", "fp_per_image", "loc_error_px", "steps_to_f1_0.5")
REACH = 0.5  # the F1 at threshold 0.5 that "steps to reach" waits for

Remedies = list[tuple[str, dict[str, Any]]]


@dataclass(frozen=True)
class Arm:
    """One arm: its name, the head it trains, and the remedies applied to the baseline."""

    name: str
    head: str
    remedies: tuple[tuple[str, tuple[tuple[str, Any], ...]], ...] = ()

    def remedy_list(self) -> Remedies:
        """The remedies as (id, params dict) pairs."""
        return [(rid, dict(p)) for rid, p in self.remedies]

    def recipe(self, base: Recipe) -> Recipe:
        """``base`` with this arm's head and remedies applied."""
        r = Recipe.from_dict({**base.to_dict(), "head": self.head})
        for rid, params in self.remedy_list():
            r = apply_remedy(r, rid, params)
        return r

    def describe(self) -> str:
        """The remedies as ``id:key=value,...`` joined by ' + ' ('baseline' when none)."""
        parts = []
        for rid, p in self.remedies:
            kv = ",".join(f"{k}={_num(v)}" for k, v in p)
            parts.append(f"{rid}:{kv}" if kv else rid)
        return " + ".join(parts) or "baseline"


def _num(v: Any) -> str:
    """A parameter as text: floats with at least one decimal (1.0, 0.8, 1.25)."""
    if isinstance(v, float):
        return f"{v:.1f}" if round(v, 1) == v else f"{v:g}"
    return str(v)


def _arm(name: str, head: str, *remedies: tuple[str, dict[str, Any]]) -> Arm:
    return Arm(name, head, tuple((rid, tuple(sorted(p.items()))) for rid, p in remedies))


def parse_sigma_lists(texts: Sequence[str]) -> dict[int, list[float]]:
    """``K=S1,S2`` items (repeatable) -> {K: [S1, S2]}, replacing those windows of the
    defaults; ``K=`` drops window K. InputError naming --soft-sigmas on bad text."""
    out = {k: list(v) for k, v in DEFAULT_SIGMAS.items()}
    for text in texts:
        k_text, sep, rest = text.partition("=")
        try:
            k = int(k_text)
            sigmas = [float(s) for s in rest.split(",") if s.strip()]
        except ValueError:
            k, sigmas = 0, []
        if not sep or k < 1 or any(not s > 0 for s in sigmas):
            raise InputError(f"--soft-sigmas {text!r}: use K=S1,S2 (window K >= 1, sigmas > 0)")
        if sigmas:
            out[k] = sigmas
        else:
            out.pop(k, None)
    return dict(sorted(out.items()))


def build_arms(
    heads: Sequence[str],
    pos_weights: dict[str, float],
    sigmas: dict[int, list[float]] | None = None,
) -> list[Arm]:
    """The default arms for each head (see the module docstring); ``pos_weights`` gives the
    positive weight per head."""
    sig = DEFAULT_SIGMAS if sigmas is None else sigmas
    arms: list[Arm] = []
    for i, head in enumerate(heads):
        pre = f"{head}/" if len(heads) > 1 else ""
        for k, ss in sig.items():
            for s in ss:
                soft = ("soft-labels", {"kernel": k, "sigma": s})
                arms.append(_arm(f"{pre}soft{k}-s{_num(s)}", head, soft))
        arms += [
            _arm(f"{pre}dynamic", head, ("sigma-schedule", {"schedule": "dynamic"})),
            _arm(f"{pre}focal", head, ("focal-loss", {})),
            _arm(f"{pre}pos-weight", head, ("pos-weight", {"w": pos_weights[head]})),
            _arm(f"{pre}ohem", head, ("ohem", {"ratio": 3.0})),
            _arm(f"{pre}ramp", head, ("loss-ramp", {})),
            _arm(
                f"{pre}soft3+ramp",
                head,
                ("soft-labels", {"kernel": 3, "sigma": 1.0}),
                ("loss-ramp", {}),
            ),
            _arm(f"{pre}oversample", head, ("oversample", {"p": 0.5})),
        ]
        if i == 0 and head != "fused":
            arms.append(_arm("fused", head, ("fused-head", {})))
        arms.append(_arm(f"{pre}hard", head))
    return arms


def select_arms(arms: Sequence[Arm], text: str | None) -> list[Arm]:
    """The arms named in ``text`` (comma-separated names or shell patterns such as
    ``soft*``), in the default order; all when None. InputError for a name matching none."""
    if not text:
        return list(arms)
    wanted = [t.strip() for t in text.split(",") if t.strip()]
    names = [a.name for a in arms]
    for w in wanted:
        if not fnmatch.filter(names, w):
            raise InputError(f"--arms {w!r}: no such arm; arms are {', '.join(names)}")
    return [a for a in arms if any(fnmatch.fnmatchcase(a.name, w) for w in wanted)]


def pos_weight_from_prior(prior: float) -> float:
    """w = sqrt(negatives per positive), 2 significant digits, in [2, 1000] (from the label
    prior p: negatives per positive = (1 - p) / p)."""
    from convdiag.diagnosis.remedy_catalogue import pos_weight_for

    return pos_weight_for((1 - prior) / prior if prior > 0 else None)


def steps_to_reach(history: Sequence[dict[str, Any]], level: float = REACH) -> int | None:
    """The first evaluated step whose F1 at 0.5 is at least ``level``; None if none."""
    for row in history:
        v = row.get("f1_at_0.5")
        if v is not None and math.isfinite(float(v)) and float(v) >= level:
            return int(row["step"])
    return None


# --------------------------------------------------------------------------- running


@dataclass
class SweepConfig:
    """What every arm shares: data, split, steps, seeds, device, training knobs."""

    data: str
    dataset: DatasetOptions = field(default_factory=DatasetOptions)
    steps: int = 1500
    seeds: tuple[int, ...] = (0,)
    split_seed: int = 0
    device: str = "cpu"
    batch: int = 8
    lr: float = 3e-3
    crop: tuple[int, int] | None = None
    width: int = 16
    pad_to: int = 32
    eval_every: int = 0
    bias_init: str = "prior"

    def base_recipe(self, seed: int) -> Recipe:
        """The hard-label baseline: P2 hard BCE with this config's training knobs."""
        return Recipe(
            head="P2", labels="hard", loss="bce", bias_init=self.bias_init, lr=self.lr,
            batch=self.batch, crop=self.crop, seed=seed,
        )  # fmt: skip


@dataclass(frozen=True)
class Task:
    """One training run: an arm with one seed."""

    arm: Arm
    seed: int
    config: SweepConfig


_DATA: dict[tuple[Any, ...], Any] = {}


def _datasets(cfg: SweepConfig) -> Any:
    """Training and validation sets, loaded once per process."""
    from convdiag.load.datasets import load_train_val

    key = (cfg.data, cfg.dataset, cfg.split_seed)
    if key not in _DATA:
        _DATA.clear()
        _DATA[key] = load_train_val(cfg.data, cfg.dataset, seed=cfg.split_seed)
    return _DATA[key]


def run_task(task: Task, on_step: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Train the arm of ``task`` from scratch with its seed; returns {"arm", "seed",
    "final" (validation summary), "history" (rows), "seconds", "steps_to_f1_0.5"}."""

    from convdiag.load.options import ModelOptions
    from convdiag.training.distributed import resolve_device
    from convdiag.training.evaluate import SUMMARY_KEYS
    from convdiag.training.workflow import train_new_model

    cfg = task.config
    train_ds, val_ds = _datasets(cfg)
    recipe = task.arm.recipe(cfg.base_recipe(task.seed))
    res = train_new_model(
        recipe, train_ds, val_ds, cfg.steps, resolve_device(cfg.device),
        model_opts=ModelOptions(pad_to=cfg.pad_to), width=cfg.width,
        seed=task.seed,  # the initial weights depend on the seed only
        run_name=task.arm.name, eval_every=cfg.eval_every,
        on_step=(lambda s, i: on_step(1)) if on_step else None,
    ).result  # fmt: skip
    return {
        "arm": task.arm.name,
        "seed": task.seed,
        "recipe": recipe.to_dict(),
        "final": {k: res.final.get(k) for k in SUMMARY_KEYS},
        "history": res.history,
        "seconds": res.seconds,
        "steps_to_f1_0.5": steps_to_reach(res.history),
    }


def _init_worker(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def _spread(values: Sequence[float | None]) -> tuple[float | None, float | None, int]:
    """(mean, sample standard deviation, count) of the finite values; std None below 2."""
    v = np.array([float(x) for x in values if x is not None and math.isfinite(float(x))])
    if not len(v):
        return None, None, 0
    return float(v.mean()), (float(v.std(ddof=1)) if len(v) > 1 else None), len(v)


def summarize(arm: Arm, runs: Sequence[dict[str, Any]], steps: int) -> dict[str, Any]:
    """One sweep.csv row: the arm, its remedies, and per metric the mean and standard
    deviation over seeds (``<metric>_mean`` / ``<metric>_std``); steps_to_f1_0.5 over the
    seeds that reached F1 0.5, with ``reached`` = how many did."""
    row: dict[str, Any] = {
        "arm": arm.name,
        "head": arm.head,
        "remedies": arm.describe(),
        "seeds": len(runs),
        "steps": steps,
    }
    for m in METRICS:
        vals = [r["steps_to_f1_0.5"] if m == "steps_to_f1_0.5" else r["final"].get(m) for r in runs]
        mean, std, n = _spread(vals)
        row[f"{m}_mean"], row[f"{m}_std"] = mean, std
        if m == "steps_to_f1_0.5":
            row["reached"] = n
    row["seconds_mean"] = _spread([r["seconds"] for r in runs])[0]
    return row


def run_sweep(
    cfg: SweepConfig,
    arms: Sequence[Arm],
    jobs: int = 1,
    on_arm: Callable[[list[dict[str, Any]], list[dict[str, Any]]], None] | None = None,
    on_step: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Train every arm with every seed; returns {"rows": one summary per arm (arm order),
    "runs": every run (arm order, then seed), "config", "seconds"}.

    ``on_arm(rows, runs)`` is called each time an arm has all its seeds (rows so far, in arm
    order), e.g. to rewrite sweep.csv; ``on_step(n)`` advances a progress bar by n steps.
    """
    if not arms:
        raise InputError("--arms: no arm to run")
    tasks = [Task(a, s, cfg) for a in arms for s in cfg.seeds]
    t0 = time.perf_counter()
    done: dict[str, list[dict[str, Any]]] = {a.name: [] for a in arms}
    rows: dict[str, dict[str, Any]] = {}

    def finished(res: dict[str, Any]) -> None:
        done[res["arm"]].append(res)
        arm = next(a for a in arms if a.name == res["arm"])
        if len(done[arm.name]) == len(cfg.seeds):
            done[arm.name].sort(key=lambda r: r["seed"])
            rows[arm.name] = summarize(arm, done[arm.name], cfg.steps)
            if on_arm:
                on_arm(_ordered(rows, arms), _runs(done, arms))

    if jobs <= 1:
        for t in tasks:
            finished(run_task(t, on_step))
    else:
        _run_parallel(tasks, jobs, finished, on_step, cfg.steps)
    return {
        "kind": "sweep",
        "rows": _ordered(rows, arms),
        "runs": _runs(done, arms),
        "config": _config_dict(cfg, arms, jobs),
        "seconds": time.perf_counter() - t0,
    }


def _run_parallel(
    tasks: list[Task],
    jobs: int,
    finished: Callable[[dict[str, Any]], None],
    on_step: Callable[[int], None] | None,
    steps: int,
) -> None:
    """Run tasks in ``jobs`` spawned processes; ``finished`` per result as they complete."""
    from convdiag.training.distributed import cpu_threads

    saved = os.environ.get("OMP_WAIT_POLICY")
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # read by OpenMP when a child starts
    try:
        ctx = multiprocessing.get_context("spawn")
        with ctx.Pool(min(jobs, len(tasks)), _init_worker, (cpu_threads(jobs),)) as pool:
            for res in pool.imap_unordered(run_task, tasks):
                if on_step:
                    on_step(steps)
                finished(res)
    finally:
        if saved is None:
            os.environ.pop("OMP_WAIT_POLICY", None)


def _ordered(rows: dict[str, dict[str, Any]], arms: Sequence[Arm]) -> list[dict[str, Any]]:
    return [rows[a.name] for a in arms if a.name in rows]


def _runs(done: dict[str, list[dict[str, Any]]], arms: Sequence[Arm]) -> list[dict[str, Any]]:
    return [r for a in arms for r in sorted(done[a.name], key=lambda r: r["seed"])]


def _config_dict(cfg: SweepConfig, arms: Sequence[Arm], jobs: int) -> dict[str, Any]:
    return {
        "data": str(cfg.data),
        "steps": cfg.steps,
        "seeds": list(cfg.seeds),
        "jobs": jobs,
        "device": cfg.device,
        "batch": cfg.batch,
        "lr": cfg.lr,
        "crop": list(cfg.crop) if cfg.crop else None,
        "width": cfg.width,
        "eval_every": cfg.eval_every or max(1, cfg.steps // 10),
        "bias_init": cfg.bias_init,
        "arms": [{"name": a.name, "head": a.head, "remedies": a.describe()} for a in arms],
    }
