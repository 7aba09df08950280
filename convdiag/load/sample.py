"""The dataset types every loader returns.

A dataset is a list of records (image id, image path, size (H, W), target points), with
images read lazily, so memory does not grow with the dataset. Points are (x, y) in
continuous pixel coordinates (DESIGN.md "Coordinates"); images without targets are kept.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass
class Record:
    """One image: id, path, size (H, W) and points [N, 2] float64 (x, y)."""

    id: str
    image_path: Path
    size: tuple[int, int]
    points: np.ndarray


@dataclass
class Sample:
    """A loaded image: id, image float32 [H, W] in [0, 1], points [N, 2] (x, y)."""

    id: str
    image: np.ndarray
    points: np.ndarray


@dataclass
class LabelPairs:
    """Two annotations of the same targets, to compare: per image id, ``images[id]`` =
    (labels [N, 2], reference [M, 2], the image's size (H, W)), points (x, y) px.
    ``labels`` names the annotation a fix would move (e.g. "points.csv"), ``reference``
    the one it is compared with (e.g. "mask centroids"); ``file`` where the labels were
    read; ``trained`` which of the two the dataset's samples use."""

    labels: str
    reference: str
    file: str
    trained: str
    images: dict[str, tuple[np.ndarray, np.ndarray, tuple[int, int]]]


@dataclass
class PointDataset:
    """Records plus what was skipped while loading, and a reader for one image.

    ``reader(record)`` returns the image as float32 grey [H, W] in [0, 1].
    ``skipped`` lists (file, reason) for inputs left out under ``--on-mismatch skip``;
    ``ignored_masks`` the masks of a mask folder that belong to no image (not samples);
    ``label_pairs`` a second annotation of the same targets found while reading (COCO
    keypoints beside their boxes), else None.
    """

    records: list[Record]
    reader: Callable[[Record], np.ndarray]
    source: str = ""
    format: str = ""
    skipped: list[tuple[str, str]] = field(default_factory=list)
    ignored_masks: list[str] = field(default_factory=list)
    label_pairs: LabelPairs | None = None

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> Sample:
        r = self.records[i]
        return Sample(r.id, self.reader(r), r.points)

    def subset(self, indices: list[int]) -> PointDataset:
        """A dataset of the records at ``indices`` (same reader)."""
        return PointDataset(
            [self.records[i] for i in indices], self.reader, self.source, self.format, []
        )

    @property
    def num_targets(self) -> int:
        """Total number of target points."""
        return int(sum(len(r.points) for r in self.records))
