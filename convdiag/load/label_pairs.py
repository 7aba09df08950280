"""A second annotation of a dataset's targets, for ``labels`` to compare with the first.

Two sources are read: a mask folder with a points table beside it (``points.csv`` or the
folder's one CSV: the table's points against the mask centroids; the masks are what the
samples use), and COCO annotations with one visible keypoint and a box (read while the
COCO file is scanned: ``PointDataset.label_pairs``). The table is read as a points dataset
would be (``--coords`` applies, its images looked up in the mask folder's images); a table
that cannot be read, or that names none of the masks' images, is noted on stderr and not
compared: it is not what convdiag trains on.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

from convdiag.errors import InputError
from convdiag.load.datasets import find_table, mask_layout
from convdiag.load.options import DatasetOptions
from convdiag.load.points_table import scan_points
from convdiag.load.sample import LabelPairs, PointDataset
from convdiag.load.sources import note


def label_pairs(
    ds: PointDataset, data: str | os.PathLike[str], opts: DatasetOptions | None = None
) -> LabelPairs | None:
    """The second annotation of ``ds`` (loaded from ``data`` with ``opts``), or None."""
    if ds.label_pairs is not None or ds.format != "masks":
        return ds.label_pairs
    root = Path(data)
    layout = mask_layout(root) if root.is_dir() else None
    if layout is None:
        return None
    try:
        table = find_table(root)
    except InputError as e:
        note(f"no points table compared with the masks: {e}")
        return None
    if table is None:
        return None
    by_id = {r.id: r for r in ds.records}
    try:
        src = scan_points(table, replace(opts or DatasetOptions(), images=str(layout[0])))
        common = sorted(set(src.ids) & set(by_id))
        if not common:
            note(f"{table}: names none of the images in {layout[0]}; not compared with the masks")
            return None
        rows = src.build(common).records
    except InputError as e:
        note(f"{table}: not compared with the masks ({e})")
        return None
    images = {r.id: (r.points, by_id[r.id].points, r.size) for r in rows}
    return LabelPairs("table points", "mask centroids", str(table), "mask centroids", images)
