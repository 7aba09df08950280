"""``convdiag train DATA``: the plain trainer for the reference detector or a user's factory."""

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
from convdiag.report.console import emit, fmt_num, md_table, progress, table
from convdiag.training.distributed import is_main


@click.command("train")
@click.argument("data", type=click.Path())
@click.option(
    "--head", default=None, help="Reference detector head: P2, P3, P4 or fused (default P2)."
)
@click.option("--steps", type=click.IntRange(min=1), default=1000, show_default=True)
@click.option("--batch", type=click.IntRange(min=1), default=8, show_default=True)
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=3e-3, show_default=True)
@click.option(
    "--crop",
    default=None,
    help="Training crop HxW, drawn anywhere; with --oversample P that share is centred near a "
    "target (default: whole images).",
)
@click.option(
    "--width",
    type=click.IntRange(min=1),
    default=16,
    show_default=True,
    help="Channel width of the reference detector.",
)
@click.option(
    "--eval-every",
    type=click.IntRange(min=0),
    default=0,
    help="Validate and save every N steps (default: steps/10).",
)
@click.option("--resume", is_flag=True, help="Continue from OUT/checkpoint.pt.")
@click.option("--force", is_flag=True, help="Replace the run already in OUT.")
@tensorboard_option
@dataset_options(with_val=True)
@model_options
@recipe_options
@run_options()
@distributed_command
def command(
    data: str,
    head: str | None,
    steps: int,
    batch: int,
    lr: float,
    crop: str | None,
    width: int,
    eval_every: int,
    resume: bool,
    force: bool,
    dataset: DatasetOptions,
    model_opts: ModelOptions,
    recipe_opts: RecipeOptions,
    run: RunOptions,
    tensorboard: str | None,
) -> int:
    """Train a detector on DATA and write OUT/checkpoint.pt, history.csv, curves.png.

    \b
    Example: convdiag train data/ --head P2 --labels hard --loss bce --steps 1500 --out runs/p2
    """
    from convdiag.errors import InputError
    from convdiag.load.datasets import load_train_val
    from convdiag.load.files import prepare_out_dir
    from convdiag.report.curves import plot_curves
    from convdiag.targets.geometry import parse_size
    from convdiag.training.batches import check_knobs
    from convdiag.training.distributed import resolve_device
    from convdiag.training.loop import write_history
    from convdiag.training.workflow import recipe_from, train_new_model

    if not run.out:
        raise InputError(
            "--out DIR is required: train writes checkpoint.pt, history.csv, curves.png"
        )
    device = resolve_device(run.device)
    if tensorboard and is_main():
        from convdiag.report.tensorboard import check_logdir

        check_logdir(tensorboard)
    if resume and force:
        raise InputError("--resume and --force: continue the run in --out, or replace it")
    held = () if resume or force else ("checkpoint.pt", "history.csv")
    out = prepare_out_dir(run.out, held, ": pass --resume to continue it or --force to replace it")
    train_ds, val_ds = load_train_val(data, dataset, seed=run.seed)
    overrides: dict[str, Any] = {"seed": run.seed, "lr": lr, "batch": batch, "head": head}
    if crop:
        try:
            overrides["crop"] = parse_size(crop)
        except InputError as e:
            raise InputError(f"--crop {e}") from None
    check_knobs(train_ds, overrides.get("crop"), batch, lr)
    recipe = recipe_from(None, recipe_opts, **overrides)
    quiet = run.format == "json"
    with progress(f"training {recipe.describe()}", steps, quiet) as advance:
        trained = train_new_model(
            recipe, train_ds, val_ds, steps, device, model_opts=model_opts, width=width, out=out,
            eval_every=eval_every, resume=resume, on_resume=lambda step: advance(step),
            given={**recipe_opts.given(), **({"head": head} if head else {})},
            on_step=lambda s, i: advance(1, _note(i)),
        )  # fmt: skip
    recipe, result = trained.recipe, trained.result
    if is_main():  # under torchrun rank 0 writes
        write_history(out / "history.csv", result.history)
        plot_curves({"train": result.history}, out / "curves.png")
    final = {k: v for k, v in result.final.items() if k != "curves"}
    if tensorboard and is_main():
        from convdiag.report.tensorboard import write_run_tensorboard

        tb = {"kind": "train", "history": {"train": result.history}, "metrics": final,
              "plots": ["curves.png"]}  # fmt: skip
        write_run_tensorboard(tb, tensorboard, 0, out)
    data_out: dict[str, Any] = {
        "checkpoint": str(out / "checkpoint.pt"),
        "recipe": recipe.to_dict(),
        "steps": result.step,
        "seconds": result.seconds,
        "final": final,
    }
    rows = list(final.items())

    def render(console: Any) -> None:
        console.print(f"[bold]Trained[/] {recipe.describe()} for {result.step} steps "
                      f"({result.seconds:.0f} s) -> {out / 'checkpoint.pt'}")  # fmt: skip
        console.print(table("validation", ["metric", "value"], rows))

    emit(data_out, run.format, render, lambda: md_table(["metric", "value"], rows))
    return 0


def _note(info: dict[str, Any]) -> str:
    if "f1_at_0.5" in info:
        return f"F1@0.5 {fmt_num(info['f1_at_0.5'])}  FP/img {fmt_num(info['fp_per_image'])}"
    return f"loss {info['loss']:.4g}"
