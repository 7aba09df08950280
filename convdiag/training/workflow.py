"""Library behind ``train``, ``retrain`` and ``demo``: build or load a model, train, compare.

Commands only parse options, call these, and render what they return.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from convdiag.errors import InputError
from convdiag.load.files import prepare_out_dir
from convdiag.load.levels import level_name
from convdiag.load.options import ModelOptions, RecipeOptions
from convdiag.load.recipe import Recipe
from convdiag.load.runner import ModelRunner
from convdiag.load.sample import PointDataset
from convdiag.remedies.apply import apply_remedy
from convdiag.targets.geometry import grid_size, point_to_cell
from convdiag.training.distributed import is_main
from convdiag.training.evaluate import SUMMARY_KEYS, evaluate
from convdiag.training.loop import CheckpointTarget, TrainResult, train

REFERENCE = "convdiag.models:reference"


def label_prior(ds: PointDataset, level: str) -> float:
    """Share of cells (own grids, pooled) holding a target centre: the hard-label prior."""
    pos, cells = 0, 0
    for r in ds.records:
        h, w = grid_size(r.size, level)
        cells += h * w
        if len(r.points):
            c = point_to_cell(r.points, level)
            pos += len({(int(i), int(j)) for i, j in c})
    return pos / cells if cells else 0.0


def recipe_from(stored: dict[str, Any] | None, flags: RecipeOptions, **overrides: Any) -> Recipe:
    """The recipe: the checkpoint's own (if any), then explicit flags, then ``overrides``."""
    d = dict(stored or {})
    given = flags.given()
    if "labels" in given or "kernel" in given or "sigma" in given:
        d.setdefault("labels", "soft" if given.get("labels") != "hard" else "hard")
    d.update(given)
    d.update({k: v for k, v in overrides.items() if v is not None})
    return Recipe.from_dict(d)


@dataclass
class ModelSpec:
    """How a model is built: factory string and arguments, adapter and output kind."""

    factory: str = REFERENCE
    args: dict[str, Any] = field(default_factory=dict)
    adapter: str | None = None
    outputs: str = "logits"
    pad_to: int = 32

    def build(self) -> torch.nn.Module:
        """A fresh model from the factory."""
        from convdiag.load.factory import build_model

        return build_model(self.factory, self.args)

    def runner(self, model: torch.nn.Module, device: torch.device) -> ModelRunner:
        """Wrap a model with this spec's adapter, output kind and padding."""
        adapter: Callable[[Any], Any] | None = None
        if self.adapter:
            from convdiag.load.outputs import resolve_callable

            adapter = resolve_callable(self.adapter, "--adapter")
        return ModelRunner(model.to(device), adapter, self.outputs, self.pad_to, device)


def stored_call(meta: dict[str, Any], opts: ModelOptions) -> tuple[str | None, str]:
    """(adapter, outputs) to call a checkpoint's model: the flags, else what it was trained with."""
    adapter = opts.adapter or meta.get("adapter") or None
    if adapter and not opts.adapter and not opts.trust_checkpoint:
        from convdiag.load.factory import is_own

        if not isinstance(adapter, str) or not is_own(adapter):
            raise InputError(
                f"the checkpoint names the adapter {adapter}: refusing to import code named "
                f"by the file; pass --adapter {adapter} if it is yours, or --trust-checkpoint"
            )
    outputs = opts.outputs if opts.outputs != "logits" else meta.get("outputs") or "logits"
    return adapter, outputs


def load_for_retrain(
    checkpoint: str | os.PathLike[str], opts: ModelOptions, flags: RecipeOptions, seed: int
) -> tuple[Any, Recipe, ModelSpec]:
    """Load ``checkpoint`` with what continuing it needs: (LoadedCheckpoint, its recipe with
    the given flags and seed applied, the ModelSpec that rebuilds and calls its model)."""
    from convdiag.load.checkpoint import load_checkpoint

    loaded = load_checkpoint(checkpoint, opts.model, dict(opts.model_args), opts.trust_checkpoint)
    recipe = recipe_from(loaded.recipe, flags, seed=seed)
    adapter, outputs = stored_call(loaded.meta, opts)
    factory = loaded.factory or opts.model or REFERENCE
    spec = ModelSpec(factory, dict(loaded.factory_args), adapter, outputs, opts.pad_to)
    return loaded, recipe, spec


def new_model_spec(recipe: Recipe, opts: ModelOptions, prior: float, width: int = 16) -> ModelSpec:
    """The spec of a new model: the reference detector for ``recipe``, or the user's factory."""
    if opts.model and opts.model != REFERENCE:
        from convdiag.load.factory import parse_model_args

        return ModelSpec(
            opts.model, parse_model_args(opts.model_args), opts.adapter, opts.outputs, opts.pad_to
        )
    if prior >= 1.0:
        raise InputError(
            f"every {recipe.level} cell of the training images holds a target (label prior "
            f"{prior:g}): the reference detector's prior bias cannot be set and there is no "
            "background to learn; use a finer level (--head) or check the labels"
        )
    args: dict[str, Any] = {
        "head": recipe.head,
        "width": width,
        "prior": float(max(prior, 1e-6)),
        "bias_init": recipe.bias_init,
    }
    return ModelSpec(REFERENCE, args, None, "logits", opts.pad_to)


def run_training(
    spec: ModelSpec,
    model: torch.nn.Module,
    train_ds: PointDataset,
    val_ds: PointDataset,
    recipe: Recipe,
    steps: int,
    out: Path | None,
    ckpt_name: str,
    device: torch.device,
    run_name: str,
    eval_every: int = 0,
    resume: dict[str, Any] | None = None,
    on_step: Callable[[int, dict[str, Any]], None] | None = None,
) -> TrainResult:
    """Train ``model`` (built from ``spec``) for ``steps`` steps with ``recipe``.

    Seeds torch with ``recipe.seed`` first (the batches are seeded by (seed, step)), so the
    same weights, recipe and data give the same run. With ``out``, the self-describing
    checkpoint ``out/ckpt_name`` (factory, arguments, adapter, weights, recipe) is written
    at each validation. Returns the ``TrainResult``: history rows, ``final`` validation
    metrics, steps reached, checkpoint path, seconds.
    """
    torch.manual_seed(recipe.seed)
    target = (
        CheckpointTarget(out / ckpt_name, spec.factory, spec.args, spec.adapter, spec.outputs)
        if out
        else None
    )
    return train(
        spec.runner(model, device),
        train_ds,
        val_ds,
        recipe,
        steps,
        eval_every=eval_every,
        target=target,
        run_name=run_name,
        resume=resume,
        on_step=on_step,
    )


def train_new_model(
    recipe: Recipe,
    train_ds: PointDataset,
    val_ds: PointDataset,
    steps: int,
    device: torch.device,
    *,
    model_opts: ModelOptions | None = None,
    width: int = 16,
    seed: int | None = None,
    out: Path | None = None,
    ckpt_name: str = "checkpoint.pt",
    run_name: str = "train",
    eval_every: int = 0,
    resume: bool = False,
    on_resume: Callable[[int], None] | None = None,
    on_step: Callable[[int, dict[str, Any]], None] | None = None,
    given: dict[str, Any] | None = None,
) -> NewRun:
    """Build a new model for ``recipe`` and train it: the hard-label prior of ``train_ds``
    at ``recipe.level`` -> ``new_model_spec`` -> ``torch.manual_seed(seed)`` (default
    ``recipe.seed``: the initial weights follow the seed only) -> ``spec.build()`` ->
    ``run_training``.

    With ``resume`` (needs ``out``), the model, optimizer state, step and history come from
    ``out/ckpt_name`` (its stored recipe, when it has one, replaces ``recipe``) and
    ``on_resume(step)`` is called before training continues. ``given`` (the recipe flags the
    user typed) must agree with the stored recipe's head, level and label kind.
    """
    opts = model_opts if model_opts is not None else ModelOptions()
    spec = new_model_spec(recipe, opts, label_prior(train_ds, recipe.level), width)
    torch.manual_seed(recipe.seed if seed is None else seed)
    model = spec.build()
    state = None
    if resume:
        from convdiag.load.checkpoint import load_checkpoint

        ckpt = (out or Path(".")) / ckpt_name
        if out is None or not ckpt.exists():
            raise InputError(f"--resume: {ckpt} does not exist")
        loaded = load_checkpoint(ckpt, trust=opts.trust_checkpoint)
        model = loaded.model
        state = {
            "step": loaded.meta.get("step", 0),
            "history": loaded.meta.get("history", []),
            "optimizer": loaded.optimizer_state,
        }
        if loaded.recipe:
            recipe = recipe_from(loaded.recipe, RecipeOptions())
            _check_resume(ckpt, recipe, given or {})
        if on_resume is not None:
            on_resume(int(state["step"]))
    result = run_training(
        spec, model, train_ds, val_ds, recipe, steps, out, ckpt_name, device, run_name,
        eval_every, resume=state, on_step=on_step,
    )  # fmt: skip
    return NewRun(spec, model, recipe, result)


def _check_resume(ckpt: Path, stored: Recipe, given: dict[str, Any]) -> None:
    """InputError when a flag contradicts the run being resumed (head/level, label kind):
    the checkpoint's weights and its stored arguments would disagree."""
    kind = "soft" if {"kernel", "sigma"} & given.keys() else None  # as recipe_from reads them
    wanted = {"head": given.get("head"), "labels": given.get("labels") or kind}
    for key, value in wanted.items():
        if value is None:
            continue
        if key == "head" and value != "fused":
            value = level_name(value)
        if value != getattr(stored, key):
            flag = "--head" if key == "head" else "--labels"
            raise InputError(
                f"--resume: {flag} {value} contradicts the run in {ckpt} "
                f"({key} {getattr(stored, key)}); drop {flag}, or start a new run with --force"
            )


@dataclass
class NewRun:
    """What ``train_new_model`` made: the spec that rebuilds the model, the trained model,
    the recipe it trained with and the ``TrainResult``."""

    spec: ModelSpec
    model: torch.nn.Module
    recipe: Recipe
    result: TrainResult


def summary(ev: dict[str, Any]) -> dict[str, Any]:
    """The before/baseline/remedy fields of a report from an evaluation."""
    return {k: ev.get(k) for k in SUMMARY_KEYS}


def transfer_weights(src: torch.nn.Module, dst: torch.nn.Module) -> int:
    """Copy every parameter/buffer whose name and shape match; returns how many were copied."""
    sd, dd = src.state_dict(), dst.state_dict()
    keep = {k: v for k, v in sd.items() if k in dd and dd[k].shape == v.shape}
    dst.load_state_dict(keep, strict=False)
    return len(keep)


def remedy_model(
    spec: ModelSpec, model: torch.nn.Module, recipe: Recipe, remedy: Recipe
) -> tuple[ModelSpec, torch.nn.Module]:
    """The model a remedy trains: a copy, or for level-change / fused-head a new reference
    detector with that head and every matching weight copied over."""
    if remedy.head == recipe.head:
        return spec, copy.deepcopy(model)
    if spec.factory != REFERENCE:
        raise InputError(
            "level-change and fused-head change the architecture and apply to the reference "
            f"detector only; this model comes from {spec.factory}"
        )
    new = ModelSpec(spec.factory, {**spec.args, "head": remedy.head}, None, "logits", spec.pad_to)
    torch.manual_seed(remedy.seed)  # the new head's initial weights follow the seed
    m = new.build()
    transfer_weights(model, m)
    return new, m


def retrain_compare(
    spec: ModelSpec,
    model: torch.nn.Module,
    recipe: Recipe,
    remedies: list[tuple[str, dict[str, Any]]],
    train_ds: PointDataset,
    val_ds: PointDataset,
    steps: int,
    seed: int,
    compare: bool,
    out: Path | None,
    device: torch.device,
    eval_every: int = 0,
    on_step: Callable[[str, int, dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Continue ``model`` with the remedies applied (and, with ``compare``, with its own recipe).

    Both runs start from the same weights with the same steps and seed. Returns the report:
    {"before", "baseline" (or None), "remedy"} summaries, the recipes, and the histories;
    with ``out`` writes retrained.pt, history.csv, curves.png and report.json there.
    """
    if not remedies:
        raise InputError(
            "no remedy given: use --soft, --focal, --dynamic, --remedy ID or --from-report"
        )
    base = Recipe.from_dict({**recipe.to_dict(), "seed": seed, "steps": steps})
    fixed = base
    for rid, params in remedies:
        fixed = apply_remedy(fixed, rid, params)
    main = is_main()  # under torchrun only rank 0 evaluates and writes
    if out and main:
        out = prepare_out_dir(out)
    runner = spec.runner(model, device)
    before = evaluate(runner, val_ds, base, batch_size=base.batch) if main else {}
    runs: dict[str, TrainResult] = {}
    if compare:
        runs["baseline"] = run_training(
            spec, copy.deepcopy(model), train_ds, val_ds, base, steps, out,
            "baseline.pt", device, "baseline", eval_every,
            on_step=(lambda s, i: on_step("baseline", s, i)) if on_step else None,
        )  # fmt: skip
    rspec, rmodel = remedy_model(spec, model, base, fixed)
    # The remedy's curve starts from the same weights, measured under the remedy's own loss.
    remedy_start = (
        evaluate(rspec.runner(rmodel, device), val_ds, fixed, batch_size=fixed.batch)
        if main
        else {}
    )
    runs["remedy"] = run_training(
        rspec, rmodel, train_ds, val_ds, fixed, steps, out, "retrained.pt", device, "remedy",
        eval_every, on_step=(lambda s, i: on_step("remedy", s, i)) if on_step else None,
    )  # fmt: skip
    starts = {"baseline": before, "remedy": remedy_start}
    report: dict[str, Any] = {
        "before": summary(before),
        "baseline": summary(runs["baseline"].final) if "baseline" in runs else None,
        "remedy": summary(runs["remedy"].final),
        "recipes": {"baseline": base.to_dict(), "remedy": fixed.to_dict()},
        "remedies": [{"id": rid, "params": p} for rid, p in remedies],
        "steps": steps,
        "seed": seed,
        "level": runs["remedy"].final.get("level"),
        "seconds": {k: r.seconds for k, r in runs.items()},
        "history": {k: [_start_row(k, starts[k]), *r.history] for k, r in runs.items()},
    }
    return report


def _start_row(run: str, ev: dict[str, Any]) -> dict[str, Any]:
    row = {"run": run, "step": 0, "progress": 0.0, **summary(ev)}
    row["loss_ratio"] = ev.get("loss_ratio")
    return row


def deltas(report: dict[str, Any]) -> list[tuple[str, Any, Any, Any]]:
    """Rows (metric, before, baseline, remedy) of a retrain report."""
    keys = SUMMARY_KEYS
    b, base, rem = report["before"], report.get("baseline") or {}, report["remedy"]
    return [(k, b.get(k), base.get(k), rem.get(k)) for k in keys]
