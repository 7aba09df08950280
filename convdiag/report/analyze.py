"""``analyze CHECKPOINT --data DATA`` as a library call: load, analyze, write the report.

``analyze_checkpoint`` loads the checkpoint (its recipe, updated by the flags given), the
dataset and the thresholds, runs ``convdiag.remedies.analyze.analyze_dataset`` with a
progress bar, adds the checkpoint's fields and, with ``out``, writes report.json,
report.md and the plots (``write_report``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from convdiag.analyses.run import head_parameters
from convdiag.errors import InputError
from convdiag.load.runner import ModelRunner
from convdiag.remedies.analyze import analyze_dataset
from convdiag.training import distributed as dist


def analyze_checkpoint(
    checkpoint: str | os.PathLike[str],
    data: str | os.PathLike[str],
    out: str | os.PathLike[str] | None = None,
    quiet: bool = False,
    *,
    dataset: Any = None,
    model_opts: Any = None,
    recipe_opts: Any = None,
    levels: Sequence[str] | None = None,
    batch_size: int = 8,
    max_images: int | None = None,
    radius: float = 3.0,
    threshold: float = 0.5,
    device: str = "cpu",
    config: Any = None,
    tensorboard: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """Analyze CHECKPOINT on DATA; with ``out`` write report.json, report.md and the plots.

    dataset / model_opts / recipe_opts: ``options.DatasetOptions`` / ``ModelOptions`` /
    ``RecipeOptions`` (defaults when None); the recipe is the checkpoint's own, updated by
    the recipe flags given. max_images: analyze the first N images only. config: a
    ``config.Config`` (default: read from the working directory) for the thresholds.
    tensorboard: a TensorBoard run folder to write the report into, at the checkpoint's
    step (``report.tensorboard``).
    Returns the report: {"schema": 1, "verdict", "findings": [...], "metrics": {level:
    {...}}, "analyses", "labels", "targets", "model", "recipe", "settings", ...}.
    """
    from convdiag.diagnosis.rules import Thresholds
    from convdiag.load.checkpoint import load_checkpoint
    from convdiag.load.config import load_config
    from convdiag.load.datasets import load_dataset
    from convdiag.load.options import DatasetOptions, ModelOptions, RecipeOptions
    from convdiag.load.outputs import resolve_callable
    from convdiag.report.console import progress
    from convdiag.training.distributed import resolve_device
    from convdiag.training.workflow import recipe_from, stored_call

    mo = model_opts or ModelOptions()
    cfg = config if config is not None else load_config()
    th = Thresholds.from_config(cfg.thresholds)
    dev = resolve_device(device)
    if tensorboard is not None and dist.is_main():
        from convdiag.report.tensorboard import check_logdir

        check_logdir(tensorboard)
    out_dir = None
    if out is not None and dist.is_main():
        from convdiag.load.files import prepare_out_dir

        out_dir = prepare_out_dir(out)
    loaded = load_checkpoint(checkpoint, mo.model, dict(mo.model_args), mo.trust_checkpoint)
    flags = recipe_opts or RecipeOptions()
    recipe = recipe_from(loaded.recipe, flags)
    source = "checkpoint" if loaded.recipe else ("flags" if flags.given() else "default")
    ds = load_dataset(data, dataset or DatasetOptions())
    if max_images is not None:
        ds = ds.subset(list(range(min(len(ds), int(max_images)))))
    if len(ds) == 0:
        raise InputError(f"{data}: no image to analyze")
    adapter_spec, outputs = stored_call(loaded.meta, mo)
    adapter = resolve_callable(adapter_spec, "--adapter") if adapter_spec else None
    runner = ModelRunner(loaded.model.to(dev), adapter, outputs, mo.pad_to, dev)
    with progress("analyzing", dist.shard_size(len(ds)), quiet) as advance:
        report, arrays = analyze_dataset(
            runner,
            ds,
            recipe,
            levels,
            batch_size,
            radius,
            threshold,
            th,
            on_batch=lambda n: advance(n),
            # under torchrun each rank takes images rank::world; the accumulators are pooled
            shard=dist.shard_indices(len(ds)),
            pool=dist.reduce_analyses,
        )
    report["checkpoint"] = str(checkpoint)
    report["checkpoint_step"] = trained_step(loaded.meta)
    report["data"] = str(data)
    report["images"] = len(ds)
    report["targets_total"] = ds.num_targets
    report["recipe_source"] = source
    report["model"] = {
        "format": loaded.format,
        "factory": loaded.factory or mo.model,
        "adapter": adapter_spec,
        "outputs": outputs,
        "missing_keys": list(loaded.missing_keys),
        "unexpected_keys": list(loaded.unexpected_keys),
        "notes": list(getattr(loaded, "notes", [])),
        "head_parameters": {
            k: sum(p.numel() for _, p in v) for k, v in head_parameters(loaded.model).items()
        },
    }
    report["settings"].update(
        {
            "max_images": max_images,
            "device": str(dev),
            "pad_to": mo.pad_to,
            "config": str(cfg.path) if cfg.path else None,
        }
    )
    if out_dir is not None:
        write_report(report, arrays, out_dir)
    if tensorboard is not None and dist.is_main():
        from convdiag.report.tensorboard import write_analyze_tensorboard

        write_analyze_tensorboard(report, arrays, tensorboard, out_dir)
    return report


def trained_step(meta: dict[str, Any]) -> int | None:
    """The step a checkpoint was trained to, from its metadata: convdiag's ``step``,
    Lightning's ``global_step`` or mmengine's ``iter``; None when it says none."""
    for key in ("step", "global_step", "iter"):
        v = meta.get(key)
        if isinstance(v, int | float) and not isinstance(v, bool) and v >= 0:
            return int(v)
    return None


def write_report(report: dict[str, Any], arrays: dict[str, Any], out: str | Path) -> None:
    """Write report.npz (the plot arrays), the plots drawn from it, report.json, report.md
    and report.html under ``out`` (plots first: the report lists them under "plots")."""
    from convdiag.load.files import atomic_write_text, write_json
    from convdiag.report.analyze_plots import write_plots
    from convdiag.report.analyze_report import render_markdown
    from convdiag.report.html import write_html
    from convdiag.report.label_plots import with_label_overlays
    from convdiag.report.saved_arrays import load_arrays, save_arrays, saved_data

    path = Path(out)
    save_arrays(path, with_label_overlays(report, arrays))
    report["plots"] = write_plots(saved_data(report), load_arrays(path), path)
    write_json(path / "report.json", report)
    atomic_write_text(path / "report.md", render_markdown(report))
    write_html(path, report)
