"""Training batches: the image cache, the recipe's crops (targets pasted into crops that
would hold none) and ``draw_batch``, seeded by (seed, step, rank)."""

from __future__ import annotations

import math

import numpy as np

from convdiag.load.batching import Batch, pad_images
from convdiag.load.recipe import Recipe
from convdiag.load.sample import PointDataset
from convdiag.training import distributed as dist

# Images are cached in memory for training when they fit in this many bytes.
CACHE_BYTES = 1 << 29


class ImageCache:
    """Reads dataset images once and keeps them while they fit in CACHE_BYTES."""

    def __init__(self, ds: PointDataset) -> None:
        self.ds = ds
        total = sum(r.size[0] * r.size[1] * 4 for r in ds.records)
        self.enabled = total <= CACHE_BYTES
        self.images: dict[int, np.ndarray] = {}

    def preload(self) -> None:
        """Read every image now if they are to be kept anyway: a corrupt image is then an
        InputError before the first step, not after checkpoints were written."""
        if self.enabled:
            for i in range(len(self.ds)):
                self.get(i)

    def get(self, i: int) -> np.ndarray:
        """Image i as float32 [H, W]."""
        if i in self.images:
            return self.images[i]
        img = self.ds.reader(self.ds.records[i])
        if self.enabled:
            self.images[i] = img
        return img


def effective_crop(recipe: Recipe, ds: PointDataset) -> tuple[int, int] | None:
    """The crop size: the recipe's; with oversampling and no crop, half the largest image."""
    if recipe.crop is not None:
        return recipe.crop
    if recipe.oversample > 0:
        h = max(r.size[0] for r in ds.records)
        w = max(r.size[1] for r in ds.records)
        return (max(32, math.ceil(h / 64) * 32), max(32, math.ceil(w / 64) * 32))
    return None


def _crop(
    img: np.ndarray, pts: np.ndarray, crop: tuple[int, int], top: int, left: int
) -> tuple[np.ndarray, np.ndarray]:
    ch, cw = crop
    out = np.zeros((ch, cw), dtype=np.float32)
    part = img[max(top, 0) : top + ch, max(left, 0) : left + cw]
    out[
        max(-top, 0) : max(-top, 0) + part.shape[0], max(-left, 0) : max(-left, 0) + part.shape[1]
    ] = part
    p = pts - np.array([left, top], dtype=np.float64)
    keep = (p[:, 0] >= 0) & (p[:, 0] < cw) & (p[:, 1] >= 0) & (p[:, 1] < ch)
    return out, p[keep]


def _paste_targets(
    img: np.ndarray,
    pts: np.ndarray,
    n: int,
    rng: np.random.Generator,
    cache: ImageCache,
    with_targets: np.ndarray,
    half: int = 5,
) -> tuple[np.ndarray, np.ndarray]:
    """Paste n target patches (minus their local background) at random places in ``img``."""
    h, w = img.shape
    if len(with_targets) == 0 or h <= 2 * half + 2 or w <= 2 * half + 2:
        return img, pts
    img = img.copy()
    new = [pts]
    for _ in range(n):
        src = int(with_targets[rng.integers(len(with_targets))])
        rec = cache.ds.records[src]
        sx, sy = rec.points[rng.integers(len(rec.points))]
        sh, sw = rec.size
        r0, c0 = int(sy) - half, int(sx) - half
        if r0 < 0 or c0 < 0 or r0 + 2 * half + 1 > sh or c0 + 2 * half + 1 > sw:
            continue
        patch = cache.get(src)[r0 : r0 + 2 * half + 1, c0 : c0 + 2 * half + 1]
        border = np.concatenate([patch[0], patch[-1], patch[:, 0], patch[:, -1]])
        bump = np.clip(patch - np.median(border), 0, None)
        dr = int(rng.integers(1, h - 2 * half - 1))
        dc = int(rng.integers(1, w - 2 * half - 1))
        img[dr : dr + 2 * half + 1, dc : dc + 2 * half + 1] += bump
        new.append(np.array([[sx - c0 + dc, sy - r0 + dr]]))
    return np.clip(img, 0, 1), np.concatenate(new)


def draw_batch(
    ds: PointDataset,
    cache: ImageCache,
    recipe: Recipe,
    step: int,
    pad_to: int,
    crop: tuple[int, int] | None,
    with_targets: np.ndarray,
    rank: int = 0,
    world: int = 1,
) -> Batch:
    """The training batch of ``step``: images drawn uniformly, crops, oversampling, copy-paste.

    Seeded with (recipe.seed, step), so the same step always gives the same batch. In a
    world of several processes, rank r draws its share of the batch (``batch_share``) from
    a generator seeded with (recipe.seed, step, r).
    """
    if world > 1:
        rng = np.random.default_rng((recipe.seed, step, rank))
        size = dist.batch_share(recipe.batch, rank, world)
    else:
        rng = np.random.default_rng((recipe.seed, step))
        size = recipe.batch
    idx = rng.integers(0, len(ds), size=size)
    images, points = [], []
    for i in idx:
        img, pts = cache.get(int(i)), ds.records[int(i)].points.reshape(-1, 2)
        if crop is not None:
            h, w = img.shape
            near = recipe.oversample > 0 and rng.random() < recipe.oversample
            if near and len(with_targets):
                if not len(pts):
                    j = int(with_targets[rng.integers(len(with_targets))])
                    img, pts = cache.get(j), ds.records[j].points.reshape(-1, 2)
                    h, w = img.shape
                cx, cy = pts[rng.integers(len(pts))]
                jy, jx = rng.uniform(-0.25, 0.25, size=2) * np.array(crop)
                top = round(cy + jy - crop[0] / 2)
                left = round(cx + jx - crop[1] / 2)
            else:
                top = int(rng.integers(0, max(h - crop[0], 0) + 1))
                left = int(rng.integers(0, max(w - crop[1], 0) + 1))
            img, pts = _crop(img, pts, crop, top, left)
        if recipe.copy_paste > 0:
            img, pts = _paste_targets(img, pts, recipe.copy_paste, rng, cache, with_targets)
        images.append(img)
        points.append(pts)
    return Batch(
        images=pad_images(images, pad_to),
        sizes=[(int(im.shape[0]), int(im.shape[1])) for im in images],
        points=points,
        ids=[ds.records[int(i)].id for i in idx],
        indices=[int(i) for i in idx],
    )
