"""``convdiag check`` as a library call: the settings from convdiag.toml and the flags,
the label checks and, with a checkpoint, a quick analysis, graded at ``fail_on``."""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path
from typing import Any

from convdiag.diagnosis.check import (
    LABEL_CHECKS,
    MODEL_CHECKS,
    CheckResult,
    grade,
    junit_xml,
    resolve_from_config,
)
from convdiag.diagnosis.findings import Finding
from convdiag.diagnosis.labels import label_statistics
from convdiag.errors import InputError
from convdiag.load.config import load_config
from convdiag.load.datasets import load_dataset
from convdiag.load.files import atomic_write_bytes, prepare_out_dir, write_json
from convdiag.load.options import DatasetOptions, ModelOptions, RecipeOptions, RunOptions
from convdiag.report.html import write_html
from convdiag.targets.geometry import parse_levels
from convdiag.targets.schedules import parse_schedule


def run_check(
    checkpoint: str | None,
    data: str | None,
    levels: str | None,
    max_images: int | None,
    junit: str | None,
    dataset: DatasetOptions,
    model_opts: ModelOptions,
    recipe_opts: RecipeOptions,
    run: RunOptions,
) -> tuple[dict[str, Any], list[CheckResult], str]:
    """Run the checks of ``convdiag check``; writes ``junit`` and ``run.out``/report.json
    when given. Returns (the report, with "passed" and "exit_code", the graded checks,
    the fail_on level used). Flags override convdiag.toml / [tool.convdiag]."""
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
        "kind": "check",
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
        write_html(out, report)
    return report, results, fail_on


def _writable(path: Path) -> None:
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise InputError(f"--junit {path}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise InputError(f"--junit {path}: folder {parent} is not writable")
