"""``convdiag check [CHECKPOINT] --data DATA``: the CI gate (exit 1 on findings at --fail-on)."""

from __future__ import annotations

from typing import Any

import click

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


@click.command("check")
@click.argument("checkpoint", required=False, type=click.Path())
@click.option(
    "--data",
    default=None,
    type=click.Path(),
    help="Dataset (default: `data` in convdiag.toml / [tool.convdiag]).",
)
@click.option("--levels", default=None, help="Levels to check, e.g. P2,P4.")
@click.option(
    "--max-images",
    type=click.IntRange(min=1),
    default=None,
    help="Analyze only the first N images (default 64, or the config's max_images).",
)
@click.option(
    "--junit",
    type=click.Path(dir_okay=False),
    default=None,
    help="Write JUnit XML here: one test case per check.",
)
@dataset_options()
@model_options
@recipe_options
@run_options(default_fail_on=None)
def command(
    checkpoint: str | None,
    data: str | None,
    levels: str | None,
    max_images: int | None,
    junit: str | None,
    dataset: DatasetOptions,
    model_opts: ModelOptions,
    recipe_opts: RecipeOptions,
    run: RunOptions,
) -> int:
    """Run the label checks and, with a checkpoint, a quick analysis; exit 1 on findings.

    Settings come from convdiag.toml or [tool.convdiag] in pyproject.toml in the working
    directory (data, split, checkpoint or model, levels, label recipe, thresholds, fail_on);
    flags override them. Exit codes: 0 passed, 1 a finding at or above --fail-on (default
    error), 2 bad input or config, 3 internal error.
    """
    from convdiag.report.check import run_check
    from convdiag.report.console import emit, md_table, table

    report, results, fail_on = run_check(
        checkpoint, data, levels, max_images, junit, dataset, model_opts, recipe_opts, run
    )
    failed = [r for r in results if r.status == "failed"]
    code = int(report["exit_code"])
    rows = [(r.full_name, r.status, r.findings[0].severity if r.findings else "-",
             _evidence(r.findings[0]) if r.findings else "") for r in results
            if r.status != "passed"]  # fmt: skip
    summary = (f"{len(results)} checks, {len(failed)} failed at --fail-on {fail_on}, "
               f"{sum(r.status == 'note' for r in results)} below it")  # fmt: skip

    def render(console: Any) -> None:
        verdict = "[bold red]FAILED[/]" if failed else "[bold green]PASSED[/]"
        console.print(f"{verdict} convdiag check: {summary}")
        if rows:
            console.print(table(None, ["check", "status", "severity", "evidence"], rows))

    def markdown() -> str:
        head = f"## convdiag check: {'FAILED' if failed else 'PASSED'}\n\n{summary}\n\n"
        return head + (md_table(["check", "status", "severity", "evidence"], rows) if rows else "")

    emit({k: v for k, v in report.items() if k != "metrics"}, run.format, render, markdown)
    return code


def _evidence(f: Any) -> str:
    items = [f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in f.evidence.items()]
    return ", ".join(items[:3])
