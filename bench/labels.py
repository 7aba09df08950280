"""Benchmark label rendering and label statistics (run: python bench/labels.py).

Measured in one run, on the same machine:

1. Batch soft labels, 64 images x 5 targets, P2 of 480x640 (3x3, sigma 1.0, trunc 0.1):
   ``batch_heatmap`` (the heatmap alone) and ``render_batch`` (heatmap, valid mask, offsets)
   against a per-target numpy loop in the CenterNet style (draw_gaussian with a slice
   maximum, then torch.from_numpy) and against allocating the zeroed map alone (the floor).
2. ``label_statistics`` on one million targets (200,000 images of 480x640, 1-5 targets),
   levels P2..P5, hard only and with soft 3x3 statistics.

Set OMP_WAIT_POLICY=PASSIVE when other processes share the cores.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable

import numpy as np
import torch

from convdiag.diagnosis.labels import label_statistics
from convdiag.targets.labels import batch_heatmap, render_batch


def best_of(fn: Callable[[], object], repeat: int, number: int) -> float:
    """Best mean time (s) per call over ``repeat`` rounds of ``number`` calls."""
    fn()
    best = math.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        best = min(best, (time.perf_counter() - t0) / number)
    return best


def centernet_loop(
    points: list[np.ndarray], grid: tuple[int, int], stride: int, k: int, sigma: float, trunc: float
) -> torch.Tensor:
    """CenterNet-style reference: per target, max a k x k Gaussian patch into the map."""
    h, w = grid
    out = np.zeros((len(points), 1, h, w), dtype=np.float32)
    r = k // 2
    d = np.arange(-r, r + 1)
    g = np.exp(-(d[:, None] ** 2 + d[None, :] ** 2) / (2 * sigma**2))
    g[g < trunc] = 0
    g = g.astype(np.float32)
    for b, pts in enumerate(points):
        for x, y in pts:
            i, j = int(y // stride), int(x // stride)
            t, bo = min(i, r), min(h - i, r + 1)
            le, ri = min(j, r), min(w - j, r + 1)
            np.maximum(
                out[b, 0, i - t : i + bo, j - le : j + ri],
                g[r - t : r + bo, r - le : r + ri],
                out=out[b, 0, i - t : i + bo, j - le : j + ri],
            )
    return torch.from_numpy(out)


def bench_render(repeat: int) -> dict[str, float]:
    rng = np.random.default_rng(0)
    size, grid, level = (480, 640), (120, 160), "P2"
    pts = [rng.uniform([0, 0], [size[1], size[0]], (5, 2)) for _ in range(64)]
    sizes = [size] * 64
    k, sigma, trunc = 3, 1.0, 0.1

    ref = centernet_loop(pts, grid, 4, k, sigma, trunc)
    ours = batch_heatmap(pts, sizes, grid, level, k, sigma, trunc)
    assert torch.equal(ref, ours), "batch rendering differs from the CenterNet loop"

    t_floor = best_of(lambda: torch.zeros(64, 1, *grid), repeat, 50)
    t_floor_all = best_of(
        lambda: (
            torch.zeros(64, 1, *grid),
            torch.zeros(64, 1, *grid, dtype=torch.bool),
            torch.zeros(64, 2, *grid),
            torch.zeros(64, 1, *grid, dtype=torch.bool),
        ),
        repeat,
        50,
    )
    t_loop = best_of(lambda: centernet_loop(pts, grid, 4, k, sigma, trunc), repeat, 50)
    t_heat = best_of(lambda: batch_heatmap(pts, sizes, grid, level, k, sigma, trunc), repeat, 50)
    t_full = best_of(lambda: render_batch(pts, sizes, grid, level, k, sigma, trunc), repeat, 50)
    print("batch soft labels: 64 images x 5 targets, P2 of 480x640, 3x3 sigma 1.0 trunc 0.1")
    print(f"  floor: zeroed heatmap            {t_floor * 1e3:7.3f} ms")
    print(f"  floor: zeroed four outputs       {t_floor_all * 1e3:7.3f} ms")
    print(f"  CenterNet numpy loop (heatmap)   {t_loop * 1e3:7.3f} ms")
    print(
        f"  batch_heatmap                    {t_heat * 1e3:7.3f} ms  "
        f"loop/ours {t_loop / t_heat:5.2f}x  ours/floor {t_heat / t_floor:5.2f}x"
    )
    print(
        f"  render_batch (+valid, offsets)   {t_full * 1e3:7.3f} ms  "
        f"ours/floor(four outputs) {t_full / t_floor_all:5.2f}x"
    )
    return {
        "labels_loop_over_batch_heatmap": t_loop / t_heat,
        "labels_batch_heatmap_over_floor": t_heat / t_floor,
        "labels_render_batch_over_floor": t_full / t_floor_all,
    }


def bench_stats(n_targets: int) -> None:
    rng = np.random.default_rng(1)
    counts = rng.integers(1, 6, n_targets // 3)
    counts = counts[: int(np.searchsorted(np.cumsum(counts), n_targets)) + 1]
    counts[-1] -= counts.sum() - n_targets
    pts = rng.uniform([0, 0], [640, 480], (n_targets, 2))
    records = [((480, 640), p) for p in np.split(pts, np.cumsum(counts)[:-1])]
    print(f"label_statistics: {n_targets:,} targets on {len(records):,} images of 480x640, P2..P5")
    for name, kw in (("hard", {}), ("soft 3x3", {"kernel": 3, "sigma": 1.0})):
        t0 = time.perf_counter()
        out = label_statistics(records, ["P2", "P3", "P4", "P5"], **kw)  # type: ignore[arg-type]
        dt = time.perf_counter() - t0
        p2 = out["levels"]["P2"]
        print(f"  {name:9s} {dt:6.2f} s   (P2 positives 1:{p2['neg_per_pos']:,.0f})")


def main(argv: list[str] | None = None) -> dict[str, float]:
    """Run both benchmarks; returns the rendering ratios (bench/run_all.py protocol)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    ratios = bench_render(args.repeat)
    bench_stats(args.targets)
    return ratios


if __name__ == "__main__":
    main()
