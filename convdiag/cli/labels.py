"""``convdiag labels DATA``: label statistics per level, risks and a recommendation."""

from __future__ import annotations

import click

from convdiag.cli.options import DatasetOptions, RunOptions, dataset_options, run_options
from convdiag.load.recipe import MAX_KERNEL

DEFAULT_LEVELS = "P2,P3,P4,P5"


@click.command("labels")
@click.argument("data", type=click.Path())
@click.option("--level", default=None, help="One level to analyse, e.g. P2 (or a stride, 4).")
@click.option(
    "--levels",
    default=None,
    help=f"Comma-separated levels to analyse [default: {DEFAULT_LEVELS}].",
)
@click.option("--soft", is_flag=True, help="Add soft-label statistics (--kernel/--sigma/--trunc).")
@click.option(
    "--kernel",
    type=click.IntRange(1, MAX_KERNEL),
    default=None,
    help="Soft-label window in cells [default: 3]; implies --soft.",
)
@click.option(
    "--sigma",
    type=click.FloatRange(0, MAX_KERNEL, min_open=True),
    default=None,
    help="Soft-label sigma in cells [default: 1.0]; implies --soft.",
)
@click.option(
    "--trunc",
    type=click.FloatRange(0, 1),
    default=0.1,
    show_default=True,
    help="Soft values below this become 0.",
)
@click.option(
    "--schedule",
    default=None,
    help="Soft-label schedule: 'dynamic' or 'END:K:SIGMA,...' (statistics per phase).",
)
@click.option(
    "--radius",
    type=click.FloatRange(min=0, min_open=True),
    default=3.0,
    show_default=True,
    help="Match radius in pixels (quantisation risk).",
)
@click.option(
    "--target-radius",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Typical target radius in pixels for the sigma advice [default: the seed's 2.5].",
)
@click.option(
    "--examples",
    type=click.IntRange(min=0, max=12),
    default=3,
    show_default=True,
    help="Images shown in overlay.png (with --out).",
)
@dataset_options()
@run_options()
def command(
    data: str,
    level: str | None,
    levels: str | None,
    soft: bool,
    kernel: int | None,
    sigma: float | None,
    trunc: float,
    schedule: str | None,
    radius: float,
    target_radius: float | None,
    examples: int,
    dataset: DatasetOptions,
    run: RunOptions,
) -> int:
    """Label statistics of DATA per level: positives, collisions, quantisation, losses.

    Pooled over the dataset: cells, positive fraction, negatives per positive, collisions,
    offset quantisation against the match radius, the loss of the best constant predictor
    (BCE and focal), the share of the initial gradient on positives; with --soft the soft
    positive mass, window cells and overlaps. Where the data holds two annotations of the
    same targets (a points table beside the masks, COCO keypoints beside their boxes), the
    two are compared: label-shift when they disagree by a consistent vector (half a pixel,
    1-based indices) or by swapped x/y. Then risks (warnings) and the level, kernel and
    sigma to use.

    \b
    Examples:
      convdiag labels data/ --level P2 --soft
      convdiag labels data/ --levels P2,P3,P4 --schedule dynamic --out report/
    """
    from convdiag.diagnosis.findings import Finding, exit_code
    from convdiag.errors import InputError
    from convdiag.report.console import emit
    from convdiag.report.labels import label_report, write_label_report
    from convdiag.report.labels_report import render_markdown, render_table
    from convdiag.targets.geometry import parse_levels
    from convdiag.targets.labels import DEFAULT_KERNEL, DEFAULT_SIGMA
    from convdiag.targets.schedules import parse_schedule

    if level and levels:
        raise InputError("--level and --levels: give one of them")
    flag = "--level" if level else "--levels"
    try:
        names = parse_levels(level or levels or DEFAULT_LEVELS)
    except InputError as e:
        raise InputError(f"{flag}: {e}") from None
    if level and len(names) != 1:
        raise InputError(f"--level {level!r}: one level; use --levels for several")
    sched = parse_schedule(schedule) if schedule is not None else None
    if sched is not None and (kernel is not None or sigma is not None):
        raise InputError("--schedule sets kernel and sigma per phase: drop --kernel/--sigma")
    soft = soft or kernel is not None or sigma is not None
    k = kernel if kernel is not None else DEFAULT_KERNEL
    s = sigma if sigma is not None else DEFAULT_SIGMA

    stats, ds = label_report(
        data, dataset, names, k if soft and sched is None else None,
        s if soft and sched is None else None, trunc, sched, radius, target_radius,
    )  # fmt: skip
    plots: list[str] = []
    if run.out:
        first = (k, s) if sched is None else (sched.phases[0][1], sched.phases[0][2])
        plots = write_label_report(stats, ds, names, (*first, trunc), examples, run.out)
    emit(
        stats,
        run.format,
        lambda console: render_table(console, stats),
        lambda: render_markdown(stats, plots),
    )
    return exit_code([Finding.from_dict(f) for f in stats["findings"]], run.fail_on)
