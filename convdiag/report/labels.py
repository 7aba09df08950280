"""``convdiag labels DATA`` as a library call: the label statistics of a dataset
(``label_report``) and the files they are written to (``write_label_report``)."""

from __future__ import annotations

import os
from typing import Any

from convdiag.diagnosis.labels import label_statistics
from convdiag.errors import InputError
from convdiag.load.datasets import load_dataset
from convdiag.load.files import atomic_write_text, prepare_out_dir, write_json
from convdiag.load.options import DatasetOptions
from convdiag.load.sample import PointDataset
from convdiag.report.html import write_html
from convdiag.report.labels_report import plot_overlay, plot_pos_fraction, render_markdown
from convdiag.targets.schedules import Schedule


def label_report(
    data: str | os.PathLike[str],
    dataset: DatasetOptions | None,
    names: list[str],
    kernel: int | None,
    sigma: float | None,
    trunc: float,
    sched: Schedule | None,
    radius: float,
    target_radius: float | None,
) -> tuple[dict[str, Any], PointDataset]:
    """Load DATA and measure its labels at the levels ``names`` (soft with ``kernel`` /
    ``sigma``, or per phase of ``sched``); returns (the labels report, the dataset)."""
    ds = load_dataset(data, dataset or DatasetOptions())
    if len(ds) == 0:
        raise InputError(f"{data}: no images")
    records = [(r.size, r.points) for r in ds.records]
    stats = label_statistics(
        records,
        names,
        kernel=kernel,
        sigma=sigma,
        trunc=trunc,
        schedule=sched,
        radius=radius,
        target_radius_px=target_radius,
    )
    stats = {
        "dataset": {
            "path": str(data),
            "format": ds.format,
            "images": len(ds),
            "targets": ds.num_targets,
            "skipped": [{"file": f, "reason": r} for f, r in ds.skipped],
            "ignored_masks": len(ds.ignored_masks),  # masks of no image: not samples
        },
        **stats,
    }
    return stats, ds


def example_indices(ds: PointDataset, n: int) -> list[int]:
    """Up to n images spread over the dataset, preferring images with targets."""
    with_targets = [i for i, r in enumerate(ds.records) if len(r.points)]
    pool = with_targets or list(range(len(ds)))
    if n <= 0 or not pool:
        return []
    picks = sorted({pool[round(j * (len(pool) - 1) / max(n - 1, 1))] for j in range(n)})
    return picks[:n]


def write_label_report(
    stats: dict[str, Any],
    ds: PointDataset,
    levels: list[str],
    soft_params: tuple[int, float, float],
    examples: int,
    out: str | os.PathLike[str],
) -> list[str]:
    """Write report.json, report.md, pos_fraction.png and (with ``examples`` > 0) the label
    overlay of that many images under ``out``; returns the plot file names."""
    # read the example images first: a corrupt one must fail before any file is written
    samples = []
    for i in example_indices(ds, examples):
        smp = ds[i]
        samples.append((smp.id, smp.image, smp.points))
    out_dir = prepare_out_dir(out)
    plots = ["pos_fraction.png"]
    plot_pos_fraction(stats, out_dir / "pos_fraction.png")
    if samples:
        k, s, t = soft_params
        plot_overlay(samples, levels, k, s, t, out_dir / "overlay.png")
        plots.insert(0, "overlay.png")
    write_json(out_dir / "report.json", stats)
    atomic_write_text(out_dir / "report.md", render_markdown(stats, plots))
    write_html(out_dir, {"kind": "labels", **stats}, plots)
    return plots
