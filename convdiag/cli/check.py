"""``convdiag check [CHECKPOINT] --data DATA``: the CI gate (exit 1 on findings at --fail-on)."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
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
    from convdiag.analyses.label_stats import label_statistics
    from convdiag.diagnosis.check import (
        LABEL_CHECKS,
        MODEL_CHECKS,
        grade,
        junit_xml,
        resolve_from_config,
    )
    from convdiag.diagnosis.findings import Finding
    from convdiag.errors import InputError
    from convdiag.load.config import load_config
    from convdiag.load.datasets import load_dataset
    from convdiag.load.files import atomic_write_bytes, prepare_out_dir, write_json
    from convdiag.report.console import emit, md_table, table
    from convdiag.targets.geometry import parse_levels
    from convdiag.targets.schedules import parse_schedule

    t0 = time.perf_counter()
    cfg = load_config()
    d = cfg.defaults
    data = data or resolve_from_config(d.get("data"), cfg.path)
    if not data:
        raise InputError("no dataset: pass --data DATA or set data in convdiag.toml")
    checkpoint = checkpoint or resolve_from_config(d.get("checkpoint"), cfg.path)
    if dataset.split is None and d.get("split"):
        rel = resolve_from_config(d["split"], cfg.path)  # a path beside the file, else a name
        split = rel if rel and Path(rel).is_file() else d["split"]
        dataset = dataclasses.replace(dataset, split=split)
    if model_opts.model is None and d.get("model"):
        model_opts = dataclasses.replace(model_opts, model=d["model"])
    given = recipe_opts.given()
    from_cfg = {k: d[k] for k in ("labels", "kernel", "sigma", "trunc", "schedule", "loss",
                                  "pos_weight") if k in d and k not in given}  # fmt: skip
    recipe_opts = dataclasses.replace(recipe_opts, **from_cfg)
    fail_on = run.fail_on or d.get("fail_on", "error")
    if fail_on not in ("info", "warning", "error", "never"):
        raise InputError(f"{cfg.path}: fail_on = {fail_on!r}: use info, warning, error or never")
    level_text = levels or d.get("levels")
    try:
        wanted = parse_levels(level_text) if level_text else None
    except InputError as e:
        where = "--levels" if levels else f"{cfg.path}: levels"
        raise InputError(f"{where}: {e}") from None
    if junit:
        _writable(Path(junit))
    out = prepare_out_dir(run.out) if run.out else None

    ds = load_dataset(data, dataset)
    soft = recipe_opts.labels == "soft" or recipe_opts.schedule or recipe_opts.kernel
    schedule = parse_schedule(recipe_opts.schedule) if recipe_opts.schedule else None
    report: dict[str, Any] = {
        "schema": 1,
        "data": str(data),
        "checkpoint": checkpoint,
        "fail_on": fail_on,
        "config": str(cfg.path) if cfg.path else None,
    }
    model_findings: list[Finding] = []
    model_levels: list[str] = []
    if checkpoint:
        from convdiag.report.analyze import analyze_checkpoint

        analysis = analyze_checkpoint(
            checkpoint,
            data,
            None,
            run.format == "json",
            dataset=dataset,
            model_opts=model_opts,
            recipe_opts=recipe_opts,
            levels=wanted,
            max_images=max_images or d.get("max_images", 64),
            device=run.device,
            config=cfg,
        )
        model_findings = [Finding.from_dict(f) for f in analysis["findings"]]
        model_levels = list(analysis["metrics"])
        report["metrics"] = analysis["metrics"]
        report["verdict"] = analysis.get("verdict")
    label_levels = wanted or model_levels or ["P2", "P3", "P4", "P5"]
    stats = label_statistics(
        [(r.size, r.points) for r in ds.records], label_levels,
        kernel=(recipe_opts.kernel or 3) if soft and not schedule else None,
        sigma=(recipe_opts.sigma or 1.0) if soft and not schedule else None,
        trunc=recipe_opts.trunc if recipe_opts.trunc is not None else 0.1, schedule=schedule,
    )  # fmt: skip
    label_findings = [Finding.from_dict(f) for f in stats.get("findings", [])]
    results = grade("labels", LABEL_CHECKS, label_levels, label_findings, fail_on)
    if checkpoint:
        results += grade("model", MODEL_CHECKS, model_levels, model_findings, fail_on)
    failed = [r for r in results if r.status == "failed"]
    code = 1 if failed else 0
    report.update(
        passed=not failed,
        exit_code=code,
        checks=[r.to_dict() for r in results],
        findings=[f.to_dict() for f in label_findings + model_findings],
        seconds=time.perf_counter() - t0,
    )
    if junit:
        atomic_write_bytes(junit, junit_xml(results, report["seconds"]))
    if out:
        write_json(out / "report.json", report)

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


def _writable(path: Path) -> None:
    from convdiag.errors import InputError

    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise InputError(f"--junit {path}: folder {parent} does not exist")
    import os

    if not os.access(parent, os.W_OK):
        raise InputError(f"--junit {path}: folder {parent} is not writable")
