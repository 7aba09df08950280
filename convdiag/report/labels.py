"""``convdiag labels DATA`` as a library call: the label statistics of a dataset
(``label_report``) and the files they are written to (``write_label_report``)."""

from __future__ import annotations

import os
from typing import Any

from convdiag.diagnosis.labels import label_statistics
from convdiag.errors import InputError
from convdiag.load.datasets import load_dataset
from convdiag.load.files import atomic_write_text, prepare_out_dir, write_json
from convdiag.load.label_pairs import label_pairs
from convdiag.load.options import DatasetOptions
from convdiag.load.sample import PointDataset
from convdiag.report.html import write_html
from convdiag.report.label_plots import draw_labels, overlay_arrays
from convdiag.report.labels_report import render_markdown
from convdiag.report.saved_arrays import load_arrays, save_arrays, saved_data
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
    opts = dataset or DatasetOptions()
    ds = load_dataset(data, opts)
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
        pairs=label_pairs(ds, data, opts),
    )
    stats = {
        "kind": "labels",
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
    """Write report.npz (the overlay's arrays), the plots drawn from it (pos_fraction.png
    and, with ``examples`` > 0, the label overlay of that many images), report.json,
    report.md and report.html under ``out``; returns the plot file names."""
    # read the example images first: a corrupt one must fail before any file is written
    samples = []
    for i in example_indices(ds, examples):
        smp = ds[i]
        samples.append((smp.id, smp.image, smp.points))
    out_dir = prepare_out_dir(out)
    k, s, t = soft_params
    save_arrays(out_dir, {"overlay": overlay_arrays(samples, levels, k, s, t)} if samples else {})
    plots = draw_labels(saved_data(stats), load_arrays(out_dir), out_dir)
    stats["plots"] = plots
    write_json(out_dir / "report.json", stats)
    atomic_write_text(out_dir / "report.md", render_markdown(stats, plots))
    write_html(out_dir, stats)
    return plots
