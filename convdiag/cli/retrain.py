"""``convdiag retrain CHECKPOINT --data DATA``: continue with a remedy, optionally side by side."""

from __future__ import annotations

import json
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
    from convdiag.report.retrain_report import render_markdown, render_table
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
    report["skipped_remedies"] = skipped
    report["checkpoint"] = str(checkpoint)
    if out:
        from convdiag.load.files import write_json

        write_json(out / "report.json", report)
    shown = {k: v for k, v in report.items() if k != "history"}
    emit(shown, run.format, lambda c: render_table(c, report), lambda: render_markdown(report))
    return 0


def remedies_from_report(
    path: Path, is_reference: bool
) -> tuple[list[tuple[str, dict[str, Any]]], list[dict[str, Any]]]:
    """The top remedy of each finding of an analyze report that this model can take.

    Architecture advice, and level-change / fused-head for a model that is not the reference
    detector, are skipped and named with the reason.
    """
    from convdiag.errors import InputError
    from convdiag.remedies.catalogue import REMEDY_IDS

    try:
        rep = json.loads(path.read_text())
        findings = rep["findings"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise InputError(f"--from-report {path}: not an analyze report.json ({e})") from None
    picked: list[tuple[str, dict[str, Any]]] = []
    skipped: list[dict[str, Any]] = []
    order = {"error": 0, "warning": 1, "info": 2}
    for f in sorted(findings, key=lambda f: order.get(f.get("severity", "info"), 3)):
        for r in f.get("remedies", []):
            rid = r.get("id")
            if rid not in REMEDY_IDS or not r.get("applied", True):
                skipped.append({"id": rid, "why": "architecture advice, not applied by retrain"})
                continue
            if rid in ("level-change", "fused-head") and not is_reference:
                skipped.append({"id": rid, "why": "changes the architecture of a user model"})
                continue
            if rid not in [p[0] for p in picked]:
                picked.append((rid, dict(r.get("params") or {})))
            break
    if not picked:
        raise InputError(f"--from-report {path}: no remedy in it applies to this model")
    return picked, skipped
