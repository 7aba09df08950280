"""``convdiag retrain CHECKPOINT --data DATA``: continue with a remedy, optionally side by side."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from convdiag.cli.distributed import distributed_command
from convdiag.cli.options import (
    DatasetOptions,
    ModelOptions,
    RecipeOptions,
    RunOptions,
    dataset_options,
    model_options,
    recipe_options,
    run_options,
    tensorboard_option,
)
from convdiag.report.console import emit, progress
from convdiag.training.distributed import is_main


def race_options(f: Any) -> Any:
    """--crop, --batch, --lr and the race options, folded into ``knobs``."""
    from convdiag.cli.options import _fold

    opts = [
        click.option("--crop", default=None, help="Training crop HxW, drawn anywhere; with "
                     "--oversample P that share centred near a target."),
        click.option("--batch", type=click.IntRange(min=1), default=None,
                     help="Batch size (default: the checkpoint's recipe, else 8)."),
        click.option("--lr", type=float, default=None,
                     help="Learning rate (default: the checkpoint's recipe, else 1e-3)."),
        click.option("--race", is_flag=True, help="Race the candidate remedies against the "
                     "checkpoint's own recipe by successive halving; the winner is kept."),
        click.option("--budget", default=None, help="Race wall-clock budget, e.g. 10m, 90s "
                     "(instead of --steps: the winner's steps then follow from the budget)."),
        click.option("--arms", "k", type=click.IntRange(min=1), default=4, show_default=True,
                     help="Race: how many predicted remedies race (--remedy adds more)."),
        click.option("--jobs", type=click.IntRange(min=1), default=1, show_default=True,
                     help="Race: arms trained side by side in this many processes."),
        click.option("--resume", is_flag=True, help="Race: continue the race in --out."),
    ]  # fmt: skip
    names = ["crop", "batch", "lr", "race", "budget", "k", "jobs", "resume"]

    def build(**v: Any) -> dict[str, Any]:
        from convdiag.errors import InputError
        from convdiag.targets.geometry import parse_size

        if v["crop"] is not None:
            try:
                v["crop"] = parse_size(v["crop"])
            except InputError as e:
                raise InputError(f"--crop {e}") from None
        if not v["race"]:
            for k in ("budget", "resume"):
                if v[k]:
                    raise InputError(f"--{k} is a race option: add --race")
        return v

    return _fold(opts, names, "knobs", build)(f)


@click.command("retrain")
@click.argument("checkpoint", type=click.Path())
@click.option("--data", required=True, type=click.Path(), help="Dataset folder or file.")
@click.option(
    "--remedy",
    "remedy_texts",
    multiple=True,
    help="Remedy ID[:key=value,...] (repeatable), e.g. soft-labels:kernel=5,sigma=1.2.",
)
@click.option("--soft", is_flag=True, help="Shorthand for --remedy soft-labels.")
@click.option("--focal", is_flag=True, help="Shorthand for --remedy focal-loss.")
@click.option("--dynamic", is_flag=True, help="Shorthand for --remedy sigma-schedule (dynamic).")
@click.option(
    "--from-report",
    type=click.Path(),
    default=None,
    help="Apply the top remedies of an analyze report.json that fit this model.",
)
@click.option("--steps", type=click.IntRange(min=1), default=500, show_default=True)
@click.option(
    "--compare",
    is_flag=True,
    help="Also continue the checkpoint's own recipe for the same steps and seed.",
)
@click.option(
    "--eval-every",
    type=click.IntRange(min=0),
    default=0,
    help="Validate every N steps (default: steps/10).",
)
@tensorboard_option
@race_options
@dataset_options(with_val=True)
@model_options
@recipe_options
@run_options()
@distributed_command
def command(
    checkpoint: str,
    data: str,
    remedy_texts: tuple[str, ...],
    soft: bool,
    focal: bool,
    dynamic: bool,
    from_report: str | None,
    steps: int,
    compare: bool,
    eval_every: int,
    dataset: DatasetOptions,
    model_opts: ModelOptions,
    recipe_opts: RecipeOptions,
    run: RunOptions,
    tensorboard: str | None,
    knobs: dict[str, Any],
) -> int:
    """Retrain CHECKPOINT on DATA with a remedy and show before / baseline / remedy.

    \b
    Example: convdiag retrain ckpt.pt --data data/ --soft --focal --compare --out runs/fix
    """
    from convdiag.load.datasets import load_train_val
    from convdiag.load.files import prepare_out_dir
    from convdiag.remedies.apply import parse_remedy
    from convdiag.remedies.from_report import remedies_from_report
    from convdiag.report.retrain_report import render_markdown, render_table, write_retrain
    from convdiag.training.batches import retrain_knobs
    from convdiag.training.distributed import resolve_device
    from convdiag.training.workflow import (
        REFERENCE,
        load_for_retrain,
        retrain_compare,
    )

    device = resolve_device(run.device)
    if tensorboard and is_main():
        from convdiag.report.tensorboard import check_logdir

        check_logdir(tensorboard)
    remedies = [parse_remedy(t) for t in remedy_texts]
    remedies += [(rid, {}) for flag, rid in ((soft, "soft-labels"), (focal, "focal-loss"),
                                             (dynamic, "sigma-schedule")) if flag]  # fmt: skip
    loaded, recipe, spec = load_for_retrain(checkpoint, model_opts, recipe_opts, run.seed)
    skipped: list[dict[str, Any]] = []
    if from_report:
        picked, skipped = remedies_from_report(Path(from_report), spec.factory == REFERENCE)
        remedies += picked
    train_ds, val_ds = load_train_val(data, dataset, seed=run.seed)
    recipe, defaulted = retrain_knobs(recipe, loaded.recipe is None, train_ds, knobs["crop"],
                                      knobs["batch"], knobs["lr"], spec.pad_to)  # fmt: skip
    if knobs["race"]:
        sets = (train_ds, val_ds)
        if tensorboard:
            from convdiag.report.analyze import trained_step

            knobs = {**knobs, "tensorboard": tensorboard, "start": trained_step(loaded.meta) or 0}
        return _race(checkpoint, data, dataset, model_opts, run, knobs, recipe, defaulted,
                     spec, loaded.model, sets, remedies, from_report, steps)  # fmt: skip
    out = prepare_out_dir(run.out) if run.out and is_main() else None
    runs = 2 if compare else 1
    with progress("retraining", steps * runs, run.format == "json") as advance:
        report = retrain_compare(
            spec, loaded.model, recipe, remedies, train_ds, val_ds, steps, run.seed, compare, out,
            device, eval_every, on_step=lambda name, s, i: advance(1, name),
        )  # fmt: skip
    report["skipped_remedies"] = skipped
    report["recipe_defaults"] = defaulted
    report["checkpoint"] = str(checkpoint)
    write_retrain(report, out)
    if tensorboard and is_main():
        from convdiag.report.analyze import trained_step
        from convdiag.report.tensorboard import write_run_tensorboard

        write_run_tensorboard(report, tensorboard, trained_step(loaded.meta) or 0, out)
    shown = {k: v for k, v in report.items() if k != "history"}
    note = _defaults_note(defaulted)

    def table_(c: Any) -> None:
        render_table(c, report)
        c.print(note) if note else None

    emit(shown, run.format, table_, lambda: render_markdown(report) + (f"\n{note}\n" * bool(note)))
    return 0


def _defaults_note(used: dict[str, Any]) -> str:
    from convdiag.training.batches import describe_knobs

    if not used:
        return ""
    return (f"  the checkpoint has no recipe: short-retrain defaults {describe_knobs(used)} "
            "(--lr, --batch, --crop to change)")  # fmt: skip


def _race(checkpoint: str, data: str, dataset: DatasetOptions, model_opts: ModelOptions,
          run: RunOptions, knobs: dict[str, Any], recipe: Any, defaulted: dict[str, Any],
          spec: Any, model: Any, sets: Any, remedies: list[Any], from_report: str | None,
          steps: int) -> int:  # fmt: skip
    """``retrain --race``: run or resume the race, write its outputs, print the verdict."""
    import os
    import sys
    from contextlib import ExitStack

    from convdiag.errors import InputError
    from convdiag.load.files import prepare_out_dir
    from convdiag.report.race_report import race_markdown, render_race, write_race
    from convdiag.training.race import RaceConfig, RaceInterrupted
    from convdiag.training.race_plan import parse_budget
    from convdiag.training.race_run import race_retrain

    if not run.out:
        raise InputError("--race needs --out DIR: every arm keeps its checkpoint there")
    budget = parse_budget(knobs["budget"]) if knobs["budget"] else None
    ctx = click.get_current_context()
    if budget and ctx.get_parameter_source("steps") == click.core.ParameterSource.COMMANDLINE:
        raise InputError("--budget and --steps: give one (the budget plans the steps)")
    if knobs["resume"]:
        out = prepare_out_dir(run.out)
    else:
        out = prepare_out_dir(run.out, ("race.json",), "; add --resume to continue it")
    jobs = max(1, min(knobs["jobs"], os.cpu_count() or 1))
    cfg = RaceConfig(str(checkpoint), str(data), out, recipe, dataset, model_opts, run.seed,
                     run.device, steps=None if budget else steps, budget_s=budget,
                     jobs=jobs)  # fmt: skip
    quiet = run.format == "json"
    with ExitStack() as stack:

        def on_plan(state: dict[str, Any]) -> Any:
            from convdiag.training.race_plan import RacePlan

            total = RacePlan.from_dict(state["plan"]).total_steps()
            advance = stack.enter_context(progress("racing", total, quiet))
            return lambda name, s: advance(1, name)

        try:
            report = race_retrain(cfg, spec, model, sets, remedies, knobs["k"], from_report,
                                  knobs["resume"], on_plan=on_plan)  # fmt: skip
        except RaceInterrupted:
            print(f"convdiag: interrupted: every arm saved in {out}; continue with the same "
                  "command and --resume", file=sys.stderr)  # fmt: skip
            return 130
    race = report["race"]
    race["recipe_defaults"] = defaulted
    write_race(report, out)
    if knobs.get("tensorboard"):
        from convdiag.report.tensorboard import write_tensorboard

        last = max((int(r.get("step") or 0) for a in race.get("arms", [])
                    for r in (a.get("rungs") or {}).values()), default=0)  # fmt: skip
        start = int(knobs["start"])
        write_tensorboard(report, knobs["tensorboard"], start + last, out, history_start=start)
    note = _defaults_note(defaulted)

    def table_(c: Any) -> None:
        render_race(c, race)
        c.print(note) if note else None
        c.print(f"  winner's checkpoint: {out / 'winner.pt'}") if race.get("winner") else None

    emit(race, run.format, table_, lambda: race_markdown(race))
    return 0
