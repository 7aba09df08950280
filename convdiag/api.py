"""Friendly one-call versions of ``convdiag train`` and ``convdiag retrain`` for Python users.

Thin wrappers over ``convdiag.training.workflow``: they take paths and option dataclasses, as the
commands take flags, and return what the commands print (a ``TrainResult``, a retrain
report dict). ``train`` here is the dataset-level trainer; the step loop over a
``ModelRunner`` is ``convdiag.training.loop.train``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

from convdiag.errors import InputError

if TYPE_CHECKING:
    from convdiag.diagnosis.findings import Remedy
    from convdiag.load.options import DatasetOptions, ModelOptions, RecipeOptions
    from convdiag.load.recipe import Recipe
    from convdiag.training.loop import TrainResult

PathLike = Union[str, "os.PathLike[str]"]
RemedySpec = Union[str, tuple[str, Mapping[str, Any]], Mapping[str, Any], "Remedy"]


def as_remedy(spec: RemedySpec) -> tuple[str, dict[str, Any]]:
    """One remedy as (id, params) from ``"ID[:key=value,...]"``, ``(id, params)``, a report's
    remedy dict ``{"id", "params"}`` or a ``Remedy``; InputError for an unknown id or key."""
    from convdiag.diagnosis.findings import Remedy
    from convdiag.remedies.apply import parse_remedy
    from convdiag.remedies.catalogue import REMEDY_DEFAULTS

    if isinstance(spec, str):
        return parse_remedy(spec)
    if isinstance(spec, Remedy):
        rid, params = spec.id, dict(spec.params)
    elif isinstance(spec, Mapping):
        rid, params = str(spec.get("id")), dict(spec.get("params") or {})
    elif isinstance(spec, tuple) and len(spec) == 2:
        rid, params = str(spec[0]), dict(spec[1] or {})
    else:
        raise InputError(f"remedy {spec!r}: use 'ID[:key=value,...]', (id, params) or a Remedy")
    if rid not in REMEDY_DEFAULTS:
        parse_remedy(rid)  # raises the one-line error naming the known ids
    unknown = set(params) - set(REMEDY_DEFAULTS[rid])
    if unknown:
        known = ", ".join(REMEDY_DEFAULTS[rid]) or "none"
        raise InputError(f"remedy {rid}: unknown parameter {sorted(unknown)[0]!r} (known: {known})")
    return rid, params


def train(
    data: PathLike,
    recipe: Recipe | None = None,
    steps: int = 300,
    out: PathLike | None = None,
    *,
    model_opts: ModelOptions | None = None,
    dataset: DatasetOptions | None = None,
    width: int = 16,
    device: str = "cpu",
    eval_every: int = 0,
    quiet: bool = True,
) -> TrainResult:
    """Train a detector on ``data`` for ``steps`` steps, as ``convdiag train`` does.

    recipe: how to train (default ``Recipe()``: P2, hard labels, BCE, prior bias; its
    ``seed`` seeds the split, the initial weights and the batches). model_opts: a user's
    factory/adapter (default: the reference detector with ``recipe.head`` and ``width``
    channels, its classification bias at the hard-label prior p = positive cells / cells
    when ``bias_init="prior"``). The validation set is the dataset's val/test split, else a
    seeded 20% hold-out. With ``out``: ``out/checkpoint.pt`` (self-describing),
    ``history.csv`` and ``curves.png``. Returns the ``TrainResult`` (history rows, final
    validation metrics, ``checkpoint`` path or None).
    """
    import torch

    from convdiag.load.datasets import load_train_val
    from convdiag.load.recipe import Recipe
    from convdiag.report.console import progress
    from convdiag.training.distributed import resolve_device
    from convdiag.training.workflow import train_new_model

    rec = recipe if recipe is not None else Recipe()
    dev: torch.device = resolve_device(device)
    out_dir = _prepare(out)
    train_ds, val_ds = load_train_val(data, dataset, seed=rec.seed)
    with progress(f"training {rec.describe()}", steps, quiet) as advance:
        result = train_new_model(
            rec, train_ds, val_ds, steps, dev, model_opts=model_opts, width=width, out=out_dir,
            eval_every=eval_every, on_step=lambda s, i: advance(1),
        ).result  # fmt: skip
    if out_dir is not None:
        from convdiag.report.curves import plot_curves
        from convdiag.training.loop import write_history

        write_history(out_dir / "history.csv", result.history)
        plot_curves({"train": result.history}, out_dir / "curves.png")
    return result


def retrain(
    checkpoint: PathLike,
    data: PathLike,
    remedies: Sequence[RemedySpec],
    steps: int = 300,
    compare: bool = True,
    out: PathLike | None = None,
    *,
    seed: int = 0,
    model_opts: ModelOptions | None = None,
    recipe_opts: RecipeOptions | None = None,
    dataset: DatasetOptions | None = None,
    device: str = "cpu",
    eval_every: int = 0,
    quiet: bool = True,
) -> dict[str, Any]:
    """Continue ``checkpoint`` with ``remedies`` applied, as ``convdiag retrain`` does.

    remedies: ``"soft-labels:kernel=5,sigma=1.2"``, ``("focal-loss", {})``, a report's remedy
    dict or a ``Remedy``, applied in order to the checkpoint's own recipe (a convdiag
    checkpoint carries it; otherwise ``recipe_opts`` describes how it was trained).
    model_opts: factory, adapter, ... for a checkpoint that does not name its model. With
    ``compare`` the unchanged recipe is continued too, from the same weights for the same
    ``steps`` and ``seed``. Returns the report: {"before", "baseline" (None without
    compare), "remedy"} summaries (F1 at 0.5, best F1, precision, recall, FP per image,
    localisation error, cls loss and the constant predictor's), "recipes", "remedies",
    "history"; with ``out``: retrained.pt, baseline.pt, history.csv, curves.png and
    report.json there.
    """
    from convdiag.load.datasets import load_train_val
    from convdiag.load.options import ModelOptions, RecipeOptions
    from convdiag.report.console import progress
    from convdiag.report.retrain_report import write_retrain
    from convdiag.training.distributed import resolve_device
    from convdiag.training.workflow import load_for_retrain, retrain_compare

    parsed = [as_remedy(r) for r in remedies]
    dev = resolve_device(device)
    loaded, recipe, spec = load_for_retrain(
        checkpoint, model_opts or ModelOptions(), recipe_opts or RecipeOptions(), seed
    )
    out_dir = _prepare(out)
    train_ds, val_ds = load_train_val(data, dataset, seed=seed)
    with progress("retraining", steps * (2 if compare else 1), quiet) as advance:
        report: dict[str, Any] = retrain_compare(
            spec, loaded.model, recipe, parsed, train_ds, val_ds, steps, seed, compare, out_dir,
            dev, eval_every, on_step=lambda name, s, i: advance(1),
        )  # fmt: skip
    write_retrain(report, out_dir)
    report["checkpoint"] = str(checkpoint)
    return report


def _prepare(out: PathLike | None) -> Path | None:
    if out is None:
        return None
    from convdiag.load.files import prepare_out_dir

    return prepare_out_dir(out)
