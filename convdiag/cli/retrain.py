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
)
from convdiag.report.console import emit, progress
from convdiag.training.distributed import is_main


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
    from convdiag.training.distributed import resolve_device
    from convdiag.training.workflow import (
        REFERENCE,
        load_for_retrain,
        retrain_compare,
    )

    device = resolve_device(run.device)
    remedies = [parse_remedy(t) for t in remedy_texts]
    remedies += [(rid, {}) for flag, rid in ((soft, "soft-labels"), (focal, "focal-loss"),
                                             (dynamic, "sigma-schedule")) if flag]  # fmt: skip
    loaded, recipe, spec = load_for_retrain(checkpoint, model_opts, recipe_opts, run.seed)
    skipped: list[dict[str, Any]] = []
    if from_report:
        picked, skipped = remedies_from_report(Path(from_report), spec.factory == REFERENCE)
        remedies += picked
    out = prepare_out_dir(run.out) if run.out and is_main() else None
    train_ds, val_ds = load_train_val(data, dataset, seed=run.seed)
    runs = 2 if compare else 1
    with progress("retraining", steps * runs, run.format == "json") as advance:
        report = retrain_compare(
            spec, loaded.model, recipe, remedies, train_ds, val_ds, steps, run.seed, compare, out,
            device, eval_every, on_step=lambda name, s, i: advance(1, name),
        )  # fmt: skip
    write_retrain(report, out)
    report["skipped_remedies"] = skipped
    report["checkpoint"] = str(checkpoint)
    if out:
        from convdiag.load.files import write_json

        write_json(out / "report.json", report)
    shown = {k: v for k, v in report.items() if k != "history"}
    emit(shown, run.format, lambda c: render_table(c, report), lambda: render_markdown(report))
    return 0
