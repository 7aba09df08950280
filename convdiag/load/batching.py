"""Batches of images of any size: zero-padded at the bottom and right (DESIGN.md "Model outputs").

Each image is padded to a multiple of ``pad_to`` and to the largest image of its batch;
every statistic is then computed on the image's own grid, so padded cells never count.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from convdiag.load.sample import PointDataset


@dataclass
class Batch:
    """images [B, 1, Hp, Wp] float32; sizes: each image's own (H, W); points: [N_b, 2] (x, y)."""

    images: torch.Tensor
    sizes: list[tuple[int, int]]
    points: list[np.ndarray]
    ids: list[str]
    indices: list[int]


def padded_size(sizes: Sequence[tuple[int, int]], pad_to: int) -> tuple[int, int]:
    """(Hp, Wp): the largest H and W of the batch, rounded up to a multiple of pad_to."""
    h = max(s[0] for s in sizes)
    w = max(s[1] for s in sizes)
    return (math.ceil(h / pad_to) * pad_to, math.ceil(w / pad_to) * pad_to)


def pad_images(images: Sequence[np.ndarray], pad_to: int = 32) -> torch.Tensor:
    """Stack float32 [H, W] images into [B, 1, Hp, Wp], zero-padded at the bottom/right."""
    hp, wp = padded_size([im.shape[:2] for im in images], pad_to)  # type: ignore[misc]
    out = np.zeros((len(images), 1, hp, wp), dtype=np.float32)
    for k, im in enumerate(images):
        out[k, 0, : im.shape[0], : im.shape[1]] = im
    return torch.from_numpy(out)


def make_batch(ds: PointDataset, indices: Sequence[int], pad_to: int = 32) -> Batch:
    """Load the images at ``indices`` and pad them into one batch."""
    samples = [ds[i] for i in indices]
    return Batch(
        images=pad_images([s.image for s in samples], pad_to),
        sizes=[(int(s.image.shape[0]), int(s.image.shape[1])) for s in samples],
        points=[np.asarray(s.points, dtype=np.float64).reshape(-1, 2) for s in samples],
        ids=[s.id for s in samples],
        indices=list(indices),
    )


def iterate_batches(
    ds: PointDataset,
    batch_size: int,
    pad_to: int = 32,
    indices: Sequence[int] | None = None,
) -> Iterator[Batch]:
    """Batches over ``indices`` (default: all images) in order; memory is one batch."""
    order = list(range(len(ds))) if indices is None else list(indices)
    for start in range(0, len(order), batch_size):
        yield make_batch(ds, order[start : start + batch_size], pad_to)
