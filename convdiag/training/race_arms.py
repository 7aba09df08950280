"""The arms of a remedy race and the training of one arm to one rung (in or out of process).

An arm is a name and the remedies applied to the checkpoint's own recipe (none: the
baseline). Each arm lives in ``OUT/arms/<name>/checkpoint.pt``, a self-describing convdiag
checkpoint (its recipe lists the remedies) that also holds the optimizer state, the step and
the history, so an arm continues from its own weights at the next rung and after --resume.
``train_arm`` is the one function that trains an arm from its file to a rung's step; the
race calls it directly (``--jobs 1``) or in spawned processes.
"""

from __future__ import annotations

import math
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from convdiag.diagnosis.remedy_catalogue import REMEDY_IDS
from convdiag.load.options import DatasetOptions, ModelOptions
from convdiag.load.recipe import Recipe
from convdiag.load.sample import PointDataset
from convdiag.remedies.apply import apply_remedy
from convdiag.training.evaluate import SUMMARY_KEYS
from convdiag.training.race_plan import halving_order

Remedies = list[tuple[str, dict[str, Any]]]
BASELINE = "baseline"
NOISE_FLOOR = 0.01  # the smallest noise between rungs the verdict assumes (F1 units)
ARCH_REMEDIES = ("level-change", "fused-head")


@dataclass
class Arm:
    """One arm: name, remedies, kind (baseline, single, combo or explicit), and what the race
    recorded: the step reached, the metric at each rung it finished, where it stopped."""

    name: str
    remedies: Remedies = field(default_factory=list)
    kind: str = "single"
    step: int = 0
    rungs: dict[int, dict[str, Any]] = field(default_factory=dict)
    stopped_at: int | None = None  # the rung after which halving stopped it
    seconds: float = 0.0

    def recipe(self, base: Recipe) -> Recipe:
        """``base`` with this arm's remedies applied."""
        r = base
        for rid, p in self.remedies:
            r = apply_remedy(r, rid, p)
        return r

    def to_dict(self) -> dict[str, Any]:
        """Plain data for race.json (rung keys as strings)."""
        return {
            "name": self.name,
            "remedies": [{"id": rid, "params": p} for rid, p in self.remedies],
            "kind": self.kind,
            "step": self.step,
            "rungs": {str(k): v for k, v in self.rungs.items()},
            "stopped_at": self.stopped_at,
            "seconds": self.seconds,
        }

    @staticmethod
    def from_dict(d: dict[str, Any]) -> Arm:
        """The arm stored by ``to_dict``."""
        return Arm(
            str(d["name"]),
            [(str(r["id"]), dict(r.get("params") or {})) for r in d.get("remedies", [])],
            str(d.get("kind", "single")),
            int(d.get("step", 0)),
            {int(k): dict(v) for k, v in (d.get("rungs") or {}).items()},
            None if d.get("stopped_at") is None else int(d["stopped_at"]),
            float(d.get("seconds", 0.0)),
        )


def arm_name(remedies: Remedies) -> str:
    """``soft-labels+focal-loss``: the remedy ids joined by '+' ('baseline' for none)."""
    return "+".join(rid for rid, _ in remedies) or BASELINE


def candidates_from_report(report: dict[str, Any], is_reference: bool, k: int) -> Remedies:
    """The first ``k`` distinct remedies of an analyze report that ``retrain`` can apply to
    this model: findings by severity (error, warning, info), each finding's remedies in its
    ranked order. Architecture changes are left out for a model that is not the reference."""
    order = {"error": 0, "warning": 1, "info": 2}
    findings = report.get("findings") or []
    out: Remedies = []
    for f in sorted(findings, key=lambda f: order.get(str(f.get("severity", "info")), 3)):
        for r in f.get("remedies") or []:
            rid = r.get("id")
            if rid not in REMEDY_IDS or not r.get("applied", True):
                continue
            if rid in ARCH_REMEDIES and not is_reference:
                continue
            if rid not in [x[0] for x in out]:
                out.append((str(rid), dict(r.get("params") or {})))
    return out[:k]


def combination(a: Arm, b: Arm, base: Recipe) -> Arm | None:
    """The arm with the remedies of ``a`` then ``b`` when both are single remedies whose
    combination changes the recipe beyond each alone; None otherwise."""
    if len(a.remedies) != 1 or len(b.remedies) != 1 or a.remedies[0][0] == b.remedies[0][0]:
        return None
    if a.remedies[0][0] in ARCH_REMEDIES or b.remedies[0][0] in ARCH_REMEDIES:
        return None  # the combination starts from the checkpoint's own architecture
    rems = [*a.remedies, *b.remedies]
    try:
        combo = Arm(arm_name(rems), rems, "combo").recipe(base).to_dict()
    except Exception:  # remedies that do not combine give no combination arm
        return None
    plain = [x.recipe(base).to_dict() for x in (a, b)]
    drop = ("remedies",)
    if any({k: v for k, v in combo.items() if k not in drop} ==
           {k: v for k, v in p.items() if k not in drop} for p in plain):  # fmt: skip
        return None
    return Arm(arm_name(rems), rems, "combo")


def best_combination(singles: Sequence[Arm], base: Recipe) -> Arm | None:
    """The combination of the two best single remedies (``singles`` best first), in either
    order (focal loss after pos-weight would undo it); when those two do not combine, the
    next pair in rank order (1+3, 2+3, 1+4, ...). None when no pair combines."""
    for j in range(1, len(singles)):
        for i in range(j):
            combo = combination(singles[i], singles[j], base) or combination(
                singles[j], singles[i], base
            )
            if combo is not None:
                return combo
    return None


def metric_at(ev: dict[str, Any], threshold: float) -> float | None:
    """F1 at ``threshold`` from an evaluation: ``f1_at_0.5`` at 0.5, else the F1 curve at
    the nearest evaluated threshold."""
    if abs(threshold - 0.5) < 1e-9:
        v = ev.get("f1_at_0.5")
        return None if v is None else float(v)
    curves = ev.get("curves") or {}
    ts, f1 = np.asarray(curves.get("thresholds", [])), np.asarray(curves.get("f1", []))
    if not len(ts) or len(ts) != len(f1):
        return None
    return float(f1[int(np.argmin(np.abs(ts - threshold)))])


@dataclass(frozen=True)
class ArmTask:
    """Train arm ``name`` from ``path`` to ``stop_at`` of a ``steps``-step schedule."""

    name: str
    path: str
    recipe: dict[str, Any]
    stop_at: int
    steps: int
    data: str
    dataset: DatasetOptions
    split_seed: int
    device: str
    model_opts: ModelOptions
    threshold: float
    deadline: float | None = None  # time.time() after which the arm stops cleanly


_DATA: dict[tuple[Any, ...], tuple[PointDataset, PointDataset]] = {}


def _datasets(task: ArmTask) -> tuple[PointDataset, PointDataset]:
    from convdiag.load.datasets import load_train_val

    key = (task.data, task.dataset, task.split_seed)
    if key not in _DATA:
        _DATA.clear()
        _DATA[key] = load_train_val(task.data, task.dataset, seed=task.split_seed)
    return _DATA[key]


def train_arm(
    task: ArmTask,
    data: tuple[PointDataset, PointDataset] | None = None,
    should_stop: Callable[[], bool] | None = None,
    on_step: Callable[[int], None] | None = None,
    cache: Any = None,
) -> dict[str, Any]:
    """Train the arm in ``task.path`` to ``task.stop_at`` (or until ``should_stop()``, or
    the deadline); the arm's file is rewritten at the end (and on an interrupt).

    Returns {"name", "step", "interrupted", "final" (SUMMARY_KEYS and "metric": F1 at the
    task's threshold), "history", "seconds"}.
    """
    import torch

    from convdiag.load.checkpoint import load_checkpoint
    from convdiag.training.distributed import resolve_device
    from convdiag.training.loop import CheckpointTarget, TrainingInterrupted, train
    from convdiag.training.workflow import ModelSpec

    train_ds, val_ds = data if data is not None else _datasets(task)
    o = task.model_opts
    loaded = load_checkpoint(task.path, o.model, dict(o.model_args), o.trust_checkpoint)
    meta = loaded.meta
    spec = ModelSpec(loaded.factory or o.model or "", dict(loaded.factory_args),
                     meta.get("adapter") or o.adapter, meta.get("outputs") or o.outputs,
                     o.pad_to)  # fmt: skip
    recipe = Recipe.from_dict(task.recipe)
    if should_stop is None and task.deadline is not None:
        deadline = task.deadline
        should_stop = lambda: time.time() >= deadline  # noqa: E731
    resume = {"step": int(meta.get("step", 0)), "history": list(meta.get("history") or []),
              "optimizer": loaded.optimizer_state}  # fmt: skip
    torch.manual_seed(recipe.seed)
    t0 = time.perf_counter()
    target = CheckpointTarget(Path(task.path), spec.factory, spec.args, spec.adapter, spec.outputs)
    try:
        res = train(
            spec.runner(loaded.model, resolve_device(task.device)), train_ds, val_ds, recipe,
            task.steps, eval_every=task.steps, target=target, run_name=task.name,
            resume=resume, on_step=(lambda s, i: on_step(s)) if on_step else None,
            stop_at=task.stop_at, should_stop=should_stop, cache=cache,
        )  # fmt: skip
    except TrainingInterrupted as e:
        return {"name": task.name, "step": e.step, "interrupted": True, "final": {},
                "history": [], "seconds": time.perf_counter() - t0}  # fmt: skip
    final = {k: res.final.get(k) for k in SUMMARY_KEYS}
    final["metric"] = metric_at(res.final, task.threshold)
    return {"name": task.name, "step": res.step, "interrupted": False, "final": final,
            "history": res.history, "seconds": time.perf_counter() - t0}  # fmt: skip


def worker_init(threads: int) -> None:
    """A spawned race worker: ``threads`` torch threads; SIGINT and SIGTERM ignored outside
    training (inside, the loop defers them to a step boundary, saves and returns)."""
    import torch

    torch.set_num_threads(threads)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def worker_run(task: ArmTask) -> dict[str, Any]:
    """``train_arm`` in a worker process."""
    return train_arm(task)


def outcome(arms: list[Arm], plan: Any, state: dict[str, Any]) -> dict[str, Any]:
    """The winner (best candidate at the last rung that every arm in it finished: the last
    rung, or after a budget stop the one before the partial rung), the baseline's
    metric there, the gain, the noise between rungs, a one-line verdict and every
    candidate's measured gain (``gains``)."""
    base = next(a for a in arms if a.kind == "baseline")
    # the last rung every arm in it finished: a budget stop leaves the current one partial
    complete = int(state.get("rung", len(plan.rungs)))
    done = [i for i in range(min(complete, len(plan.rungs))) if i in base.rungs]
    if not done:
        return {"winner": None, "verdict": "the race stopped before its first rung ended"}
    last = done[-1]
    cands = [a for a in arms if a.kind != "baseline" and last in a.rungs]
    order = halving_order([(a.name, a.rungs[last].get("metric"),
                            a.rungs[last].get("best_f1")) for a in cands])  # fmt: skip
    if not order:
        return {"winner": None, "verdict": "no candidate finished a rung"}
    win = next(a for a in cands if a.name == order[0])
    bm, wm = base.rungs[last].get("metric"), win.rungs[last].get("metric")
    gain = None if bm is None or wm is None else float(wm) - float(bm)
    noise = rung_noise(base)
    at = win.rungs[last]["step"]
    if gain is not None and gain > noise:
        text = (f"{win.name} won: F1 {wm:.3f} against the baseline's {bm:.3f} "
                f"(+{gain:.3f}; noise between rungs {noise:.3f}) at step {at}")  # fmt: skip
    else:
        g = "-" if gain is None else f"{gain:+.3f}"
        text = (f"no remedy beats the baseline by more than the noise between rungs "
                f"({noise:.3f}); the best, {win.name}, {g} at step {at}")  # fmt: skip
    return {"winner": win.name, "winner_beats_baseline": bool(gain is not None and gain > noise),
            "gain": gain, "noise": noise, "final_rung": last, "verdict": text,
            "gains": gains(arms)}  # fmt: skip


def gains(arms: list[Arm]) -> dict[str, float | None]:
    """Each candidate's measured gain: its metric minus the baseline arm's, at the last rung
    the candidate finished (None where either is missing)."""
    base = next(a for a in arms if a.kind == "baseline")
    out: dict[str, float | None] = {}
    for a in arms:
        if a.kind == "baseline" or not a.rungs:
            continue
        last = max(a.rungs)
        m, b = finite(a.rungs[last].get("metric")), finite(base.rungs.get(last, {}).get("metric"))
        out[a.name] = None if m is None or b is None else m - b
    return out


def rung_noise(base: Arm) -> float:
    """The noise between rungs: how much the baseline arm's metric (its own recipe,
    continued) moved from its second-last to its last rung, at least NOISE_FLOOR."""
    vals = [finite(base.rungs[i].get("metric")) for i in sorted(base.rungs)]
    ok = [v for v in vals if v is not None]
    return max(NOISE_FLOOR, abs(ok[-1] - ok[-2])) if len(ok) >= 2 else NOISE_FLOOR


def finite(v: Any) -> float | None:
    """``v`` as a float when finite, else None."""
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def names(arms: Sequence[Arm]) -> list[str]:
    """The arms' names."""
    return [a.name for a in arms]
