"""``convdiag sweep DATA``: every remedy of the seed's plan trained on the same budget."""

from __future__ import annotations

from typing import Any

import click

from convdiag.cli.options import DatasetOptions, RunOptions, dataset_options, run_options


@click.command("sweep")
@click.argument("data", type=click.Path())
@click.option(
    "--arms",
    default=None,
    help="Arms to run: comma-separated names or patterns (e.g. 'hard,focal,soft3*'); "
    "default all. See --list-arms.",
)
@click.option("--list-arms", is_flag=True, help="Print the arms and their remedies, then exit.")
@click.option("--steps", type=click.IntRange(min=1), default=1500, show_default=True,
              help="Training steps of every arm.")  # fmt: skip
@click.option("--seeds", type=click.IntRange(min=1), default=1, show_default=True,
              help="Seeds per arm: --seed, --seed + 1, ...")  # fmt: skip
@click.option("--jobs", type=click.IntRange(min=1), default=1, show_default=True,
              help="Runs in parallel processes (each with cores / jobs threads).")  # fmt: skip
@click.option("--heads", default="P2", show_default=True,
              help="Reference-detector heads, e.g. P2 or P2,P4 (arms run per head).")  # fmt: skip
@click.option(
    "--soft-sigmas",
    multiple=True,
    help="Sigma list of a soft window, K=S1,S2 (repeatable; replaces that window's "
    "default; K= drops it). Defaults 3=0.8,1.0 4=1.0 5=1.0,1.2.",
)
@click.option("--batch", type=click.IntRange(min=1), default=8, show_default=True)
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=3e-3, show_default=True)
@click.option("--crop", default=None, help="Training crop HxW (default: whole images).")
@click.option("--width", type=click.IntRange(min=1), default=16, show_default=True,
              help="Channel width of the reference detector.")  # fmt: skip
@click.option("--eval-every", type=click.IntRange(min=0), default=0,
              help="Validate every N steps (default: steps/10).")  # fmt: skip
@click.option("--bias-init", type=click.Choice(["prior", "zero"]), default="prior",
              show_default=True, help="Classification bias at start of every arm.")  # fmt: skip
@dataset_options(with_val=True)
@run_options()
def command(
    data: str,
    arms: str | None,
    list_arms: bool,
    steps: int,
    seeds: int,
    jobs: int,
    heads: str,
    soft_sigmas: tuple[str, ...],
    batch: int,
    lr: float,
    crop: str | None,
    width: int,
    eval_every: int,
    bias_init: str,
    dataset: DatasetOptions,
    run: RunOptions,
) -> int:
    """Train every arm of the seed's plan from scratch on DATA with the same steps and
    seeds, and compare: soft 3x3/4x4/5x5 windows, the dynamic schedule, focal loss,
    pos_weight, OHEM, the loss ramp, soft labels with the ramp, oversampling, the fused
    head and the hard baseline.

    Writes OUT/sweep.csv (one row per arm, rewritten as arms finish), sweep.json and
    f1_vs_step.png.

    \b
    Example: convdiag sweep data/ --arms hard,focal,soft3* --seeds 2 --jobs 2 --out sweep/
    """
    from pathlib import Path

    from convdiag.errors import InputError
    from convdiag.load.datasets import load_train_val
    from convdiag.load.files import prepare_out_dir
    from convdiag.report.console import emit, md_table, progress, table
    from convdiag.report.sweep_report import render_markdown, render_table, write_outputs
    from convdiag.targets.geometry import level_name, parse_size
    from convdiag.training.distributed import resolve_device
    from convdiag.training.sweep import (
        SweepConfig,
        build_arms,
        parse_sigma_lists,
        pos_weight_from_prior,
        run_sweep,
        select_arms,
    )
    from convdiag.training.workflow import label_prior

    head_list = [h.strip() for h in heads.split(",") if h.strip()]
    try:
        head_list = [h if h == "fused" else level_name(h) for h in head_list]
    except (ValueError, InputError):
        raise InputError(
            f"--heads {heads!r}: use P2, P3, P4, P5 or fused, comma-separated"
        ) from None
    if not head_list:
        raise InputError("--heads: give at least one head")
    sigmas = parse_sigma_lists(soft_sigmas)
    if not list_arms and not run.out:
        raise InputError(
            "--out DIR is required: sweep writes sweep.csv, sweep.json, f1_vs_step.png"
        )
    resolve_device(run.device)  # a bad --device fails before any data is read
    try:
        crop_size = parse_size(crop) if crop else None
    except InputError as e:
        raise InputError(f"--crop: {e}") from None
    cfg = SweepConfig(
        data=data, dataset=dataset, steps=steps, seeds=tuple(run.seed + i for i in range(seeds)),
        split_seed=run.seed, device=run.device, batch=batch, lr=lr,
        crop=crop_size, width=width, eval_every=eval_every,
        bias_init=bias_init,
    )  # fmt: skip
    train_ds, _ = load_train_val(data, dataset, seed=run.seed)
    weights = {}
    for h in head_list:
        weights[h] = pos_weight_from_prior(label_prior(train_ds, "P2" if h == "fused" else h))
    chosen = select_arms(build_arms(head_list, weights, sigmas), arms)
    if list_arms:
        rows = [[a.name, a.describe()] for a in chosen]
        emit({"arms": [{"name": a.name, "remedies": a.describe()} for a in chosen]}, run.format,
             lambda c: c.print(table("arms", ["arm", "remedies"], rows)),
             lambda: md_table(["arm", "remedies"], rows))  # fmt: skip
        return 0
    out = prepare_out_dir(Path(str(run.out)))

    def on_arm(rows: list[dict[str, Any]], runs: list[dict[str, Any]]) -> None:
        write_outputs({"rows": rows, "runs": runs}, out, plot=False)

    total = steps * len(chosen) * len(cfg.seeds)
    with progress(f"sweep: {len(chosen)} arms x {seeds} seeds", total, run.format == "json") as adv:
        report = run_sweep(cfg, chosen, jobs, on_arm=on_arm, on_step=lambda n: adv(n))
    write_outputs(report, out)
    shown = {k: v for k, v in report.items() if k != "runs"}
    shown["files"] = [str(out / f) for f in ("sweep.csv", "sweep.json", "f1_vs_step.png")]

    def render(console: Any) -> None:
        render_table(console, report)
        console.print(f"[dim]Wrote {out}/sweep.csv, sweep.json and f1_vs_step.png.[/]")

    emit(shown, run.format, render, lambda: render_markdown(report))
    return 0
