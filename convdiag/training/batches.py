"""Training batches: the image cache, the recipe's crops (targets pasted into crops that
would hold none) and ``draw_batch``, seeded by (seed, step, rank); the checks of the
training knobs (``check_knobs``) and the knobs a checkpoint without a recipe gets.

Memory: images are cached only while the whole set fits in CACHE_BYTES; otherwise each
batch reads its images, so what training holds is bounded by the batch, not the set."""

from __future__ import annotations

import math
from typing import Any

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


def _inside(start: int, size: int, length: int) -> int:
    """``start`` moved so that [start, start + length) lies inside [0, size) when it fits
    (a crop centred near a target still holds it: the target is within length / 4 of the
    centre, and the shift moves the window toward the image, over the target)."""
    if length > size:
        return start
    return min(max(start, 0), size - length)


def _holding(start: int, at: float, length: int) -> int:
    """``start`` moved so that [start, start + length) holds the pixel of ``at`` (a crop a
    few pixels long can otherwise round past its target)."""
    cell = math.floor(at)
    return min(max(start, cell - length + 1), cell)


def check_knobs(
    ds: PointDataset, crop: tuple[int, int] | None, batch: int | None, lr: float | None
) -> None:
    """InputError naming the flag for a crop larger than every image (in height or width),
    a batch larger than the training set, or a learning rate that is not finite and > 0."""
    from convdiag.errors import InputError

    if crop is not None and ds.records:
        h = max(r.size[0] for r in ds.records)
        w = max(r.size[1] for r in ds.records)
        if crop[0] > h or crop[1] > w:
            raise InputError(
                f"--crop {crop[0]}x{crop[1]}: larger than the largest training image ({h}x{w})"
            )
    if batch is not None and batch > len(ds):
        raise InputError(f"--batch {batch}: larger than the {len(ds)} training images")
    if lr is not None and not (math.isfinite(lr) and lr > 0):
        raise InputError(f"--lr {lr}: use a finite learning rate > 0")


def short_retrain_defaults(ds: PointDataset, pad_to: int = 32) -> dict[str, Any]:
    """Training knobs for a checkpoint that carries no recipe (a foreign model): lr 1e-3
    (continuing trained weights, not from scratch), batch 8 (at most the set), and crops of
    at most 128 x 128 (multiples of ``pad_to``) when the images are larger, so that a short
    retrain costs a bounded time per step whatever the image size."""
    out: dict[str, Any] = {"lr": 1e-3, "batch": max(1, min(8, len(ds)))}
    if ds.records:
        h = min(r.size[0] for r in ds.records)
        w = min(r.size[1] for r in ds.records)
        if max(h, w) > 128:
            out["crop"] = (_fit(h, pad_to), _fit(w, pad_to))
    return out


def _fit(size: int, pad_to: int) -> int:
    """min(128, size) rounded down to a multiple of pad_to (at least pad_to, at most size)."""
    c = min(128, size)
    return max(min(pad_to, size), c - c % pad_to) if pad_to > 0 else c


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
                top = _inside(_holding(round(cy + jy - crop[0] / 2), cy, crop[0]), h, crop[0])
                left = _inside(_holding(round(cx + jx - crop[1] / 2), cx, crop[1]), w, crop[1])
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


def retrain_knobs(
    recipe: Recipe,
    foreign: bool,
    ds: PointDataset,
    crop: tuple[int, int] | None,
    batch: int | None,
    lr: float | None,
    pad_to: int = 32,
) -> tuple[Recipe, dict[str, Any]]:
    """The recipe a retrain trains with: the given --crop/--batch/--lr (checked against
    ``ds``), and for a ``foreign`` checkpoint (no stored recipe) ``short_retrain_defaults``
    for those not given. Returns (recipe, the defaults used: {} for a convdiag checkpoint)."""
    check_knobs(ds, crop, batch, lr)
    given = {k: v for k, v in (("crop", crop), ("batch", batch), ("lr", lr)) if v is not None}
    used = {}
    if foreign:
        used = {k: v for k, v in short_retrain_defaults(ds, pad_to).items() if k not in given}
    return Recipe.from_dict({**recipe.to_dict(), **used, **given}), used


def describe_knobs(used: dict[str, Any]) -> str:
    """'lr 0.001, batch 8, crop 128x128' for the defaults ``retrain_knobs`` used."""
    parts = []
    for k, v in used.items():
        parts.append(f"crop {v[0]}x{v[1]}" if k == "crop" else f"{k} {v:g}")
    return ", ".join(parts)
