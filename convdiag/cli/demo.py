"""``convdiag demo``: the whole story on the embedded synthetic default, in a few minutes on CPU."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import click

from convdiag.cli.options import RunOptions, run_options


@click.command("demo")
@click.option(
    "--n",
    "n_images",
    type=click.IntRange(min=10),
    default=560,
    show_default=True,
    help="Synthetic images.",
)
@click.option("--size", default="240x320", show_default=True, help="Image size HxW.")
@click.option(
    "--snr",
    type=click.FloatRange(min=0, min_open=True),
    default=6.0,
    show_default=True,
    help="Target peak over sensor-noise std of the synthetic set.",
)
@click.option(
    "--clutter",
    type=click.FloatRange(min=0),
    default=0.3,
    show_default=True,
    help="Background clutter strength of the synthetic set.",
)
@click.option(
    "--lr",
    type=click.FloatRange(min=0, min_open=True),
    default=1e-3,
    show_default=True,
    help="Learning rate of every run.",
)
@click.option(
    "--steps",
    type=click.IntRange(min=1),
    default=600,
    show_default=True,
    help="Steps of the failing P2 training.",
)
@click.option(
    "--retrain-steps",
    type=click.IntRange(min=1),
    default=300,
    show_default=True,
    help="Steps of each retraining run (baseline and remedy).",
)
@click.option(
    "--remedy",
    "remedy_texts",
    multiple=True,
    help="Remedies to apply (default: soft-labels:kernel=5,sigma=1.2 and focal-loss).",
)
@run_options()
def command(
    n_images: int,
    size: str,
    snr: float,
    clutter: float,
    lr: float,
    steps: int,
    retrain_steps: int,
    remedy_texts: tuple[str, ...],
    run: RunOptions,
) -> int:
    """Show why a P2 point detector with hard labels collapses, and fix it.

    Synthesises a dim-target set, trains the P2 hard-label BCE recipe (zero bias, crops
    anywhere), shows the label statistics and the analysis of the failure, retrains with
    soft labels and focal loss next to the unchanged recipe, and prints before/after.
    """
    from convdiag.errors import InputError
    from convdiag.load.files import prepare_out_dir
    from convdiag.remedies.apply import parse_remedy
    from convdiag.report.console import emit, stderr_console
    from convdiag.report.demo import DemoConfig, render_markdown, render_table, run_demo
    from convdiag.targets.geometry import parse_size

    remedies = [parse_remedy(t) for t in remedy_texts] or None
    try:
        hw = parse_size(size)
    except InputError as e:
        raise InputError(f"--size {e}") from None
    cfg = DemoConfig(n=n_images, size=hw, steps=steps, retrain_steps=retrain_steps,
                     seed=run.seed, remedies=remedies, snr=snr, clutter=clutter, lr=lr,
                     device=run.device)  # fmt: skip
    quiet = run.format == "json"
    if run.out:
        out = prepare_out_dir(run.out)
        report = run_demo(cfg, out, stderr_console(), quiet)
    else:
        with tempfile.TemporaryDirectory(prefix="convdiag-demo-") as tmp:
            report = run_demo(cfg, Path(tmp), stderr_console(), quiet)
    shown: dict[str, Any] = {k: v for k, v in report.items() if k != "history"}
    emit(shown, run.format, lambda c: render_table(c, report), lambda: render_markdown(report))
    return 0
