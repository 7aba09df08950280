"""A synthetic dim point-target dataset, the kind the seed's detector struggles with.

Each image (H x W, values in [0, 1]) is the sum of

- a smooth cluttered background: a base level b ~ U(0.25, 0.45), a gentle linear gradient
  (at most +-0.03 from the centre), and 1/f clutter -- white noise filtered in Fourier space
  by (f^2 + f0^2)^(-BETA/2), scaled to a standard deviation of ``CLUTTER_STD * clutter`` --
  plus about ``6 * clutter`` extended blobs (Gaussian, sigma 2-4 px), the false alarms;
- targets: Gaussian PSFs A exp(-((x - cx)^2 + (y - cy)^2) / (2 s^2)) evaluated at pixel
  centres, s ~ U(psf), peak A = snr x NOISE_STD (``--snr 3`` is dim), centres at least
  MIN_SEPARATION px apart and BORDER px away from the edges, rounded to 1/1000 px;
- Gaussian sensor noise of standard deviation NOISE_STD;

then clipped to [0, 1] and quantised to 8 bits. A target's mask is the set of pixels where
its PSF exceeds half its peak, and always the pixel holding its centre. Every image has its
own random stream (SeedSequence(seed, spawn_key=(0, i))), so the same seed gives the same
bytes whatever else changes.
"""

from __future__ import annotations

import io
import math
import os
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from convdiag.errors import InputError
from convdiag.load.files import (
    atomic_write_bytes,
    atomic_write_text,
    make_dir,
    prepare_out_dir,
    remove_file,
    to_json,
)
from convdiag.load.options import MAX_SEED

NOISE_STD = 0.02  # sensor noise, in [0, 1] grey units (about 5 of 255 levels)
CLUTTER_STD = 0.08  # standard deviation of the 1/f clutter at --clutter 1
BETA = 1.5  # amplitude spectrum exponent of the clutter (power ~ f^-3)
F0 = 1.0 / 256.0  # clutter spectrum knee, cycles per pixel
MIN_SEPARATION = 8.0  # px between target centres
BORDER = 3.0  # px between a target centre and the image edge
SPLIT_NAMES = ("train", "val", "test")
_ID = re.compile(r"^\d{6,}\.png$")


@dataclass
class SynthConfig:
    """Parameters of a synthetic set. size is (H, W); ranges are inclusive (lo, hi)."""

    n: int = 200
    size: tuple[int, int] = (480, 640)
    targets: tuple[int, int] = (1, 5)
    psf: tuple[float, float] = (0.7, 1.2)
    snr: float = 3.0
    clutter: float = 0.5
    seed: int = 0
    empty_fraction: float = 0.0
    splits: tuple[float, float, float] = (0.7, 0.15, 0.15)

    def validate(self) -> None:
        """InputError naming the option for any value out of range."""
        h, w = self.size
        checks = [
            (self.n >= 1, "--n", f"{self.n}: need at least one image"),
            (
                min(h, w) >= 2 * BORDER + 2,
                "--size",
                f"{h}x{w}: each side needs at least {int(2 * BORDER + 2)} px",
            ),
            (
                0 <= self.targets[0] <= self.targets[1],
                "--targets",
                f"{self.targets[0]}-{self.targets[1]}: need 0 <= low <= high",
            ),
            (
                0 < self.psf[0] <= self.psf[1] <= 50,
                "--psf",
                f"{self.psf[0]}-{self.psf[1]}: need 0 < low <= high <= 50 (pixels)",
            ),
            (0 < self.snr <= 1000 and math.isfinite(self.snr), "--snr", f"{self.snr}: need > 0"),
            (0 <= self.clutter <= 10, "--clutter", f"{self.clutter}: need 0..10"),
            (0 <= self.seed <= MAX_SEED, "--seed", f"{self.seed}: need 0 to {MAX_SEED}"),
            (0 <= self.empty_fraction <= 1, "--empty", f"{self.empty_fraction}: need 0..1"),
            (
                len(self.splits) == 3
                and min(self.splits) >= 0
                and abs(sum(self.splits) - 1) < 1e-6,
                "splits",
                f"{self.splits}: need three shares >= 0 summing to 1",
            ),
        ]
        for ok, flag, what in checks:
            if not ok:
                raise InputError(f"{flag} {what}")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict."""
        d = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


def _clutter_field(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Zero-mean, unit-std 1/f noise [H, W]: white noise times (f^2 + F0^2)^(-BETA/2)."""
    h, w = shape
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :]
    amp = (fx * fx + fy * fy + F0 * F0) ** (-BETA / 2)
    amp[0, 0] = 0.0
    spec = np.fft.rfft2(rng.standard_normal((h, w))) * amp
    field = np.fft.irfft2(spec, s=(h, w))
    std = field.std()
    return field / std if std > 0 else field


def _gaussian_patch(
    shape: tuple[int, int], x: float, y: float, sigma: float, amp: float
) -> tuple[slice, slice, np.ndarray]:
    """amp * exp(-((c+.5-x)^2 + (r+.5-y)^2) / (2 sigma^2)) on the window within 4 sigma + 1."""
    h, w = shape
    r = math.ceil(4 * sigma) + 1
    cx, cy = math.floor(x), math.floor(y)
    c0, c1 = max(0, cx - r), min(w, cx + r + 1)
    r0, r1 = max(0, cy - r), min(h, cy + r + 1)
    gx = np.exp(-((np.arange(c0, c1) + 0.5 - x) ** 2) / (2 * sigma * sigma))
    gy = np.exp(-((np.arange(r0, r1) + 0.5 - y) ** 2) / (2 * sigma * sigma))
    return slice(r0, r1), slice(c0, c1), amp * gy[:, None] * gx[None, :]


def _place(rng: np.random.Generator, shape: tuple[int, int], k: int) -> np.ndarray:
    """Up to k centres [N, 2] (x, y), >= MIN_SEPARATION apart, >= BORDER from the edges."""
    h, w = shape
    out: list[tuple[float, float]] = []
    for _ in range(20):
        if len(out) >= k:
            break
        cand = rng.uniform((BORDER, BORDER), (w - BORDER, h - BORDER), size=(4 * k + 8, 2))
        cand = np.rint(cand * 1000.0) / 1000.0
        for x, y in cand:
            if len(out) >= k:
                break
            if all((x - a) ** 2 + (y - b) ** 2 >= MIN_SEPARATION**2 for a, b in out):
                out.append((float(x), float(y)))
    return np.array(out, dtype=np.float64).reshape(-1, 2)


def render_synthetic(
    rng: np.random.Generator, config: SynthConfig, n_targets: int | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One synthetic image with its mask and true target centres.

    Returns image float32 [H, W] in [0, 1] (quantised to k/255, as written to disk), mask
    uint8 [H, W] with values 0/255, points float64 [N, 2] (x, y) continuous coordinates.
    ``n_targets`` None draws 0 with probability ``config.empty_fraction``, else uniformly
    from ``config.targets``; fewer are placed when the image has no room.
    """
    h, w = config.size
    if n_targets is None:
        empty = config.empty_fraction > 0 and rng.random() < config.empty_fraction
        lo, hi = config.targets
        n_targets = 0 if empty else int(rng.integers(lo, hi + 1))
    yy = (np.arange(h) + 0.5) / h - 0.5
    xx = (np.arange(w) + 0.5) / w - 0.5
    base, gx, gy = rng.uniform(0.25, 0.45), rng.uniform(-0.06, 0.06), rng.uniform(-0.06, 0.06)
    img = base + gy * yy[:, None] + gx * xx[None, :]
    if config.clutter > 0:
        img = img + (CLUTTER_STD * config.clutter) * _clutter_field(rng, (h, w))
        for _ in range(int(rng.poisson(6.0 * config.clutter))):
            x, y = rng.uniform(0, w), rng.uniform(0, h)
            amp = config.clutter * rng.uniform(0.04, 0.12)
            rs, cs, g = _gaussian_patch((h, w), x, y, rng.uniform(2.0, 4.0), amp)
            img[rs, cs] += g
    points = _place(rng, (h, w), n_targets)
    mask = np.zeros((h, w), dtype=np.uint8)
    peak = config.snr * NOISE_STD
    sigmas = rng.uniform(config.psf[0], config.psf[1], size=len(points))
    for (x, y), s in zip(points, sigmas, strict=True):
        rs, cs, g = _gaussian_patch((h, w), x, y, float(s), peak)
        img[rs, cs] += g
        mask[rs, cs][g > 0.5 * peak] = 255
        mask[int(y), int(x)] = 255
    img += rng.normal(0.0, NOISE_STD, size=(h, w))
    q = np.rint(np.clip(img, 0.0, 1.0) * 255.0)
    return (q / 255.0).astype(np.float32), mask, points


def _png(array: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array, dtype=np.uint8)).save(
        buf, format="PNG", compress_level=1
    )
    return buf.getvalue()


def _split_counts(n: int, shares: tuple[float, float, float]) -> list[int]:
    """Largest-remainder counts of n by shares; every positive share gets one when n allows."""
    raw = [n * s for s in shares]
    counts = [math.floor(r) for r in raw]
    order = sorted(range(3), key=lambda i: (-(raw[i] - counts[i]), i))
    for i in order[: n - sum(counts)]:
        counts[i] += 1
    positive = [i for i in range(3) if shares[i] > 0]
    if n >= len(positive):
        for i in positive:
            if counts[i] == 0:
                donor = max(range(3), key=lambda j: counts[j])
                counts[donor] -= 1
                counts[i] += 1
    return counts


def _check_out(out: Path, force: bool, names: set[str]) -> None:
    existing = [p for p in ("images", "masks", "points.csv", "synth.json") if (out / p).exists()]
    if existing and not force:
        raise InputError(
            f"{out}: already holds a dataset ({', '.join(existing)}); use --force to replace it"
        )
    if force:  # remove what an earlier run wrote and this one will not
        for sub in ("images", "masks"):
            d = out / sub
            if d.is_dir():
                for f in d.iterdir():
                    if _ID.match(f.name) and f.name not in names and f.is_file():
                        remove_file(f)
        for name in (*SPLIT_NAMES, "trainval"):
            remove_file(out / f"{name}.txt")


def synthesize(
    out: str | os.PathLike[str],
    config: SynthConfig,
    force: bool = False,
    advance: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Write a synthetic dataset to ``out`` and return its summary.

    Layout: images/<id>.png (8-bit L), masks/<id>.png (0/255), points.csv (image,x,y; true
    centres; an image without targets as ``image,,``), train/val/test/trainval.txt (ids; an
    empty split is not written), synth.json (config and counts). InputError when ``out``
    already holds a dataset and ``force`` is False. ``advance(1)`` is called per image.
    """
    config.validate()
    out_dir = Path(out)
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"{out_dir}: exists and is not a folder")
    width = max(6, len(str(config.n - 1)))
    ids = [f"{i:0{width}d}" for i in range(config.n)]
    if out_dir.is_dir():
        _check_out(out_dir, force, {f"{i}.png" for i in ids})
    prepare_out_dir(out_dir, data=True)
    for sub in ("images", "masks"):
        make_dir(out_dir / sub, "DIR")

    split_rng = np.random.default_rng(np.random.SeedSequence(config.seed, spawn_key=(1,)))
    n_empty = round(config.empty_fraction * config.n)
    empty = set(split_rng.permutation(config.n)[:n_empty].tolist())
    order = split_rng.permutation(config.n)
    counts = _split_counts(config.n, config.splits)
    bounds = np.cumsum([0, *counts])
    splits = {
        name: sorted(ids[i] for i in order[bounds[k] : bounds[k + 1]])
        for k, name in enumerate(SPLIT_NAMES)
    }
    splits["trainval"] = sorted(splits["train"] + splits["val"])

    lines = ["image,x,y"]
    per_image: list[int] = []
    lo, hi = config.targets
    for i, ident in enumerate(ids):
        rng = np.random.default_rng(np.random.SeedSequence(config.seed, spawn_key=(0, i)))
        k = 0 if i in empty else int(rng.integers(lo, hi + 1))
        image, mask, points = render_synthetic(rng, config, n_targets=k)
        q = np.rint(image * 255.0).astype(np.uint8)
        atomic_write_bytes(out_dir / "images" / f"{ident}.png", _png(q))
        atomic_write_bytes(out_dir / "masks" / f"{ident}.png", _png(mask))
        name = f"images/{ident}.png"
        lines += [f"{name},{x:.3f},{y:.3f}" for x, y in points] or [f"{name},,"]
        per_image.append(len(points))
        if advance is not None:
            advance(1)
    atomic_write_text(out_dir / "points.csv", "\n".join(lines) + "\n")
    for name, members in splits.items():
        if members:
            atomic_write_text(out_dir / f"{name}.txt", "\n".join(members) + "\n")
    counts_d = {
        "images": config.n,
        "targets": int(sum(per_image)),
        "empty_images": int(sum(1 for k in per_image if k == 0)),
        "targets_per_image": float(np.mean(per_image)),
        "max_targets_per_image": int(max(per_image)),
        "splits": {name: len(members) for name, members in splits.items()},
    }
    atomic_write_text(
        out_dir / "synth.json", to_json({"config": config.to_dict(), "counts": counts_d})
    )
    return {"out": str(out_dir), "size": list(config.size), **counts_d, "config": config.to_dict()}
