"""``convdiag analyze CHECKPOINT --data DATA``: one streaming pass, findings, remedies."""

from __future__ import annotations

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


@click.command("analyze")
@click.argument("checkpoint", type=click.Path())
@click.option("--data", required=True, type=click.Path(), help="Dataset folder or file.")
@click.option(
    "--levels",
    default=None,
    help="Levels to analyze, e.g. P2 or P2,P4 (default: every level the model outputs).",
)
@click.option(
    "--batch",
    type=click.IntRange(min=1),
    default=None,
    help="Images per batch (default 8; the numbers do not depend on it).",
)
@click.option(
    "--max-images",
    type=click.IntRange(min=1),
    default=None,
    help="Analyze only the first N images.",
)
@click.option(
    "--radius",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Match radius in pixels (default 3).",
)
@click.option(
    "--threshold",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    default=None,
    help="Score threshold of the reported detections (default 0.5).",
)
@tensorboard_option
@dataset_options()
@model_options
@recipe_options
@run_options()
@distributed_command
def command(
    checkpoint: str,
    data: str,
    levels: str | None,
    batch: int | None,
    max_images: int | None,
    radius: float | None,
    threshold: float | None,
    dataset: DatasetOptions,
    model_opts: ModelOptions,
    recipe_opts: RecipeOptions,
    run: RunOptions,
    tensorboard: str | None,
) -> int:
    """Diagnose why CHECKPOINT does not converge on DATA and say what to change.

    One pass (forward and backward): scores against the label prior, loss against the best
    constant predictor, where the classification gradient goes (now and under each remedy),
    offset collapse, false positives; then findings with evidence and ranked remedies.

    \b
    Example: convdiag analyze runs/p2/checkpoint.pt --data data/ --out report/
    """
    from convdiag.diagnosis.findings import Finding, exit_code
    from convdiag.errors import InputError
    from convdiag.load.config import load_config
    from convdiag.report.analyze import analyze_checkpoint
    from convdiag.report.analyze_report import render_markdown, render_table
    from convdiag.report.console import emit
    from convdiag.targets.geometry import parse_levels

    cfg = load_config()
    lv_text = levels or cfg.default("levels", None)
    try:
        lv = parse_levels(lv_text) if lv_text else None
    except InputError as e:
        where = "--levels" if levels else f"{cfg.path}: levels"
        raise InputError(f"{where}: {e}") from None
    rad = radius if radius is not None else cfg.default("radius", 3.0)
    thr = threshold if threshold is not None else cfg.default("threshold", 0.5)
    if not 0 < thr < 1:
        raise InputError(f"threshold {thr}: must lie strictly between 0 and 1")
    fail_on = run.fail_on or cfg.default("fail_on", None)
    if fail_on not in (None, "info", "warning", "error", "never"):
        raise InputError(f"{cfg.path}: fail_on = {fail_on!r}: use info, warning, error or never")
    report = analyze_checkpoint(
        checkpoint,
        data,
        out=run.out,
        quiet=run.format == "json",
        dataset=dataset,
        model_opts=model_opts,
        recipe_opts=recipe_opts,
        levels=lv,
        batch_size=batch or cfg.default("batch", 8),
        max_images=max_images or cfg.default("max_images", None),
        radius=rad,
        threshold=thr,
        device=run.device,
        config=cfg,
        tensorboard=tensorboard,
    )

    def render(console: Any) -> None:
        render_table(console, report)
        if run.out:
            console.print(f"[dim]Wrote {run.out}/report.json, report.md and plots.[/]")

    emit(report, run.format, render, lambda: render_markdown(report))
    findings = [Finding.from_dict(f) for f in report["findings"]]
    return exit_code(findings, fail_on)
