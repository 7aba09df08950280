"""``retrain --race``: successive halving over remedies, from one checkpoint, on one budget.

Every arm starts from the checkpoint's weights with the same seed, hence the same data order
(batches are seeded by (seed, step)) and the same validation split. At the end of each rung
(``race_plan``) every surviving arm is evaluated: F1 at the report's threshold, best F1 as
the tie-breaker. The better half of the candidates go on from their own weights; the baseline
arm (the checkpoint's own recipe) always goes on, for the comparison. After rung 0 the two
best single remedies are combined into one more arm, which trains from the checkpoint to the
rung-1 steps. The last rung's best candidate is the winner.

``OUT/race.json`` holds the plan and every arm's state, rewritten after each arm's rung, and
every arm its checkpoint (``race_arms``): Ctrl-C or SIGTERM lets the training arms save at a
step boundary, raises ``RaceInterrupted`` (exit 130), and ``resume`` continues to the result
an uninterrupted race gives. A time budget is planned from a short calibration (seconds per
step and per validation, on the baseline arm, not kept) and enforced by a deadline checked at
every step: when it is reached the race stops cleanly and reports the last finished rung.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from convdiag.errors import InputError
from convdiag.load.files import copy_file, write_json
from convdiag.load.options import DatasetOptions, ModelOptions
from convdiag.load.recipe import Recipe
from convdiag.training.race_arms import BASELINE, Arm, ArmTask, best_combination, outcome, train_arm
from convdiag.training.race_plan import RacePlan, halving_order, plan_for_budget, plan_rungs

START = "_start"  # the checkpoint's weights as an arm file: where the combination starts
CALIBRATION_STEPS = 5


class RaceInterrupted(KeyboardInterrupt):
    """The race stopped on SIGINT/SIGTERM after every arm saved; ``--resume`` continues."""


@dataclass
class RaceConfig:
    """What a race needs: the checkpoint, data, how to load them, seed, out, budget."""

    checkpoint: str
    data: str
    out: Path
    base: Recipe
    dataset: DatasetOptions = field(default_factory=DatasetOptions)
    model_opts: ModelOptions = field(default_factory=ModelOptions)
    seed: int = 0
    device: str = "cpu"
    threshold: float = 0.5
    steps: int | None = None
    budget_s: float | None = None
    jobs: int = 1


def start_race(
    cfg: RaceConfig,
    spec: Any,
    model: Any,
    candidates: list[Arm],
    data: Any,
    clock: Callable[[], float] = time.monotonic,
    on_step: Callable[[str, int], None] | None = None,
) -> dict[str, Any]:
    """A new race: plan it (``steps``, or ``budget_s`` after a calibration), write every
    arm's starting checkpoint under ``cfg.out/arms`` and race.json; returns the state."""
    from convdiag.load.checkpoint import save_checkpoint
    from convdiag.training.evaluate import SUMMARY_KEYS, evaluate
    from convdiag.training.workflow import remedy_model

    val_ds = data[1]
    base = cfg.base
    t0 = clock()
    before = evaluate(spec.runner(model, _device(cfg)), val_ds, base, batch_size=base.batch)
    if cfg.budget_s is not None:
        step_s, eval_s = _calibrate(cfg, spec, model, data, clock, on_step)
        plan = plan_for_budget(len(candidates), cfg.budget_s - (clock() - t0), step_s,
                               eval_s, cfg.jobs)  # fmt: skip
    else:
        plan = plan_rungs(len(candidates), int(cfg.steps or 0))
    base = Recipe.from_dict({**base.to_dict(), "seed": cfg.seed, "steps": plan.final_steps})
    arms = [Arm(BASELINE, [], "baseline"), *candidates]
    start = {"run": "start", "step": 0, "progress": 0.0, **{k: before.get(k) for k in SUMMARY_KEYS}}
    for arm in [Arm(START, [], "start"), *arms]:
        _new_arm_file(cfg, spec, model, base, arm, start, save_checkpoint, remedy_model)
    state: dict[str, Any] = {
        "kind": "race",
        "checkpoint": str(cfg.checkpoint),
        "data": str(cfg.data),
        "seed": cfg.seed,
        "threshold": cfg.threshold,
        "budget_s": cfg.budget_s,
        "jobs": cfg.jobs,
        "plan": plan.to_dict(),
        "base": base.to_dict(),
        "before": {k: before.get(k) for k in SUMMARY_KEYS},
        "arms": [a.to_dict() for a in arms],
        "rung": 0,
        "elapsed_s": clock() - t0,
        "stopped": None,
        "start_row": start,
    }
    write_json(cfg.out / "race.json", state)
    return state


def _device(cfg: RaceConfig) -> Any:
    from convdiag.training.distributed import resolve_device

    return resolve_device(cfg.device)


def _new_arm_file(cfg: RaceConfig, spec: Any, model: Any, base: Recipe, arm: Arm,
                  start: dict[str, Any], save: Any, remedy_model: Any) -> None:  # fmt: skip
    rec = arm.recipe(base)
    rspec, rmodel = remedy_model(spec, model, base, rec)
    path = arm_path(cfg.out, arm.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    history = [{**start, "run": arm.name}] if rec.head == base.head else []
    meta = {"step": 0, "steps": base.steps, "interrupted": False, "history": history,
            "run": arm.name, "adapter": rspec.adapter, "outputs": rspec.outputs}  # fmt: skip
    save(path, rmodel, rspec.factory, rspec.args, rec.to_dict(), meta=meta)


def arm_path(out: Path, name: str) -> Path:
    """OUT/arms/<name>/checkpoint.pt."""
    return out / "arms" / name.replace("/", "_") / "checkpoint.pt"


def _calibrate(
    cfg: RaceConfig,
    spec: Any,
    model: Any,
    data: Any,
    clock: Callable[[], float],
    on_step: Callable[[str, int], None] | None = None,
) -> tuple[float, float]:
    """(seconds per training step, seconds per arm and rung besides its steps), measured on
    a throwaway copy of the baseline arm: one warm-up step (not timed), CALIBRATION_STEPS
    timed steps, then one validation and one save and load of the arm's checkpoint."""
    import copy
    import tempfile

    from convdiag.load.checkpoint import load_checkpoint, save_checkpoint
    from convdiag.training.evaluate import evaluate
    from convdiag.training.loop import train

    train_ds, val_ds = data
    rec = Recipe.from_dict(cfg.base.to_dict())
    runner = spec.runner(copy.deepcopy(model), _device(cfg))
    cache = shared_cache(train_ds)
    times: list[float] = []

    def tick(step: int, info: Any) -> None:
        if on_step:
            on_step("calibration", step)
        times.append(clock())

    train(runner, train_ds, None, rec, (CALIBRATION_STEPS + 1) * 20,
          stop_at=CALIBRATION_STEPS + 1, on_step=tick, cache=cache)  # fmt: skip
    t1 = clock()
    evaluate(runner, val_ds, rec, batch_size=rec.batch)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "arm.pt"
        save_checkpoint(path, runner.model, spec.factory, spec.args, rec.to_dict())
        o = cfg.model_opts
        load_checkpoint(path, o.model, dict(o.model_args), o.trust_checkpoint)
    t2 = clock()
    step_s = (times[-1] - times[0]) / CALIBRATION_STEPS
    return max(step_s, 1e-6), max(t2 - t1, 0.0)


def run_race(
    cfg: RaceConfig,
    state: dict[str, Any],
    data: Any,
    clock: Callable[[], float] = time.monotonic,
    on_step: Callable[[str, int], None] | None = None,
) -> dict[str, Any]:
    """Run (or continue) the race in ``state`` to its end or its budget; returns the state
    with "winner", "verdict" and "seconds". RaceInterrupted on SIGINT/SIGTERM."""
    plan = RacePlan.from_dict(state["plan"])
    base = Recipe.from_dict(state["base"])
    arms = [Arm.from_dict(a) for a in state["arms"]]
    t_start = clock() - float(state.get("elapsed_s", 0.0))
    deadline = None if state.get("budget_s") is None else t_start + float(state["budget_s"])

    def save() -> None:
        state["arms"] = [a.to_dict() for a in arms]
        state["elapsed_s"] = clock() - t_start
        write_json(cfg.out / "race.json", state)

    last = len(plan.rungs) - 1
    interrupted: list[bool] = []  # an arm was interrupted: start no other one
    with _deferred() as stop_requested:

        def stop() -> bool:
            return stop_requested() or bool(interrupted)

        for rung in plan.rungs[int(state["rung"]) :]:
            alive = [a for a in arms if a.stopped_at is None]
            todo = [a for a in alive if rung.index not in a.rungs]
            tasks = [_task(cfg, a, base, rung.steps, plan, state) for a in todo]
            for arm, res in _run_tasks(cfg, tasks, todo, data, deadline, clock, on_step, stop):
                arm.step = int(res["step"])
                arm.seconds += float(res["seconds"])
                if not res["interrupted"] and arm.step >= rung.steps:
                    final = {k: _finite_or_none(v) for k, v in res["final"].items()}
                    arm.rungs[rung.index] = {"step": arm.step, **final}
                if res["interrupted"]:
                    interrupted.append(True)
                save()
            if interrupted or stop_requested():
                save()
                raise RaceInterrupted(f"interrupted in rung {rung.index}")
            if any(rung.index not in a.rungs for a in alive):
                state["stopped"] = f"budget reached in rung {rung.index}"
                break
            if rung.index < last:
                _halve(cfg.out, arms, rung.index, rung.keep, plan, base)
            state["rung"] = rung.index + 1
            save()
    state.update(outcome(arms, plan, state))
    state["seconds"] = clock() - t_start
    save()
    _copy_winner(cfg.out, state.get("winner"))
    return state


def _task(cfg: RaceConfig, arm: Arm, base: Recipe, stop_at: int, plan: RacePlan,
          state: dict[str, Any]) -> ArmTask:  # fmt: skip
    rec = arm.recipe(base)
    return ArmTask(arm.name, str(arm_path(cfg.out, arm.name)), rec.to_dict(), stop_at,
                   plan.final_steps, str(cfg.data), cfg.dataset, cfg.seed, cfg.device,
                   cfg.model_opts, float(state["threshold"]))  # fmt: skip


def _run_tasks(cfg: RaceConfig, tasks: list[ArmTask], arms: list[Arm], data: Any,
               deadline: float | None, clock: Callable[[], float],
               on_step: Callable[[str, int], None] | None,
               stop_requested: Callable[[], bool],
               ) -> Iterator[tuple[Arm, dict[str, Any]]]:  # fmt: skip
    """Each task's result with its arm, in task order (one process) or as they finish."""
    if cfg.jobs <= 1 or len(tasks) <= 1:
        for arm, task in zip(arms, tasks, strict=True):
            if stop_requested() or (deadline is not None and clock() >= deadline):
                return
            stop = (lambda: clock() >= deadline) if deadline is not None else None
            tick = _ticker(on_step, arm.name)
            yield arm, train_arm(task, data, stop, tick, shared_cache(data[0]))
        return
    from convdiag.training.distributed import cpu_threads
    from convdiag.training.race_arms import worker_init, worker_run

    wall = None if deadline is None else time.time() + (deadline - clock())
    tasks = [ArmTask(**{**t.__dict__, "deadline": wall}) for t in tasks]
    by_name = {a.name: a for a in arms}
    saved = os.environ.get("OMP_WAIT_POLICY")
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        ctx = multiprocessing.get_context("spawn")
        jobs = min(cfg.jobs, len(tasks))
        with ctx.Pool(jobs, worker_init, (cpu_threads(jobs),)) as pool:
            _POOLS.append(pool)
            try:
                for res in pool.imap_unordered(worker_run, tasks):
                    if on_step:  # the steps the worker trained, for a progress bar
                        for step in range(by_name[res["name"]].step + 1, res["step"] + 1):
                            on_step(res["name"], step)
                    yield by_name[res["name"]], res
            finally:
                _POOLS.remove(pool)
    finally:
        if saved is None:
            os.environ.pop("OMP_WAIT_POLICY", None)


_POOLS: list[Any] = []


@contextmanager
def _deferred() -> Iterator[Callable[[], bool]]:
    """SIGINT/SIGTERM between arms mark the race to stop after the running arms saved;
    SIGTERM is passed on to worker processes (Ctrl-C reaches them from the terminal)."""
    got: list[int] = []

    def handler(signum: int, frame: Any) -> None:
        got.append(signum)
        if signum == signal.SIGTERM:
            for pool in _POOLS:
                for p in getattr(pool, "_pool", []):
                    if p.pid:
                        os.kill(p.pid, signal.SIGTERM)

    try:
        old = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
        for s in old:
            signal.signal(s, handler)
    except ValueError:
        yield lambda: False
        return
    try:
        yield lambda: bool(got)
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def _ticker(on_step: Callable[[str, int], None] | None, name: str) -> Callable[[int], None] | None:
    if on_step is None:
        return None
    return lambda s: on_step(name, s)


_CACHES: dict[int, Any] = {}


def shared_cache(ds: Any) -> Any:
    """One ImageCache per training set in this process (every arm trains on the same images)."""
    from convdiag.training.batches import ImageCache

    if id(ds) not in _CACHES or _CACHES[id(ds)].ds is not ds:
        _CACHES.clear()
        cache = ImageCache(ds)
        cache.preload()
        _CACHES[id(ds)] = cache
    return _CACHES[id(ds)]


def _halve(out: Path, arms: list[Arm], index: int, keep: int, plan: RacePlan,
           base: Recipe) -> None:  # fmt: skip
    """Stop all but the best ``keep`` candidates after rung ``index``; after rung 0 add the
    combination of the two best single remedies."""
    cands = [a for a in arms if a.stopped_at is None and a.kind != "baseline"]
    order = halving_order(
        [(a.name, a.rungs[index].get("metric"), a.rungs[index].get("best_f1")) for a in cands]
    )
    for name in order[keep:]:
        next(a for a in cands if a.name == name).stopped_at = index
    if index == 0 and plan.combo:
        singles = [next(a for a in cands if a.name == n) for n in order]
        singles = [a for a in singles if a.kind in ("single", "explicit")]
        combo = best_combination(singles, base)
        if combo is not None and all(a.name != combo.name for a in arms):
            dst = arm_path(out, combo.name)
            dst.parent.mkdir(parents=True, exist_ok=True)
            copy_file(arm_path(out, START), dst)
            arms.append(combo)


def _finite_or_none(v: Any) -> Any:
    """Non-finite floats as None, as race.json stores them (a resumed race reads them so)."""
    return None if isinstance(v, float) and not math.isfinite(v) else v


def _copy_winner(out: Path, winner: str | None) -> None:
    if winner:
        copy_file(arm_path(out, winner), out / "winner.pt")


def load_state(out: Path, cfg: RaceConfig) -> dict[str, Any]:
    """race.json of a race to resume; InputError naming --resume when it is missing or was
    run on another checkpoint or dataset."""
    path = out / "race.json"
    if not path.exists():
        raise InputError(f"--resume: {path} does not exist (no race to continue)")
    import json

    try:
        state = json.loads(path.read_text(encoding="utf-8"))
        if not all(k in state for k in ("plan", "arms", "rung", "base")):
            raise KeyError("plan, arms, rung, base")
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise InputError(f"--resume: {path} is not a race state ({e})") from None
    for key, want in (("checkpoint", cfg.checkpoint), ("data", cfg.data)):
        if str(state.get(key)) != str(want):
            raise InputError(f"--resume: {path} raced {key} {state.get(key)}, not {want}")
    return state
