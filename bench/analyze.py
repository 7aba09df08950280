"""Benchmark ``analyze`` (run: OMP_WAIT_POLICY=PASSIVE python bench/analyze.py).

Measured in one run, on the same machine, with the reference P2 detector (width 16) on a
procedural dim-target dataset (images rendered on the fly from their seed, so a dataset
costs no memory):

1. Time: the whole ``analyze_dataset`` (label statistics, target fit, the streaming pass
   with every analysis and counterfactual, findings) over a bare forward + backward pass
   (the training loss of the same recipe, ``loss.backward()`` into every parameter) on the
   same images, batches and model. Aim: at most 1.2.
2. Memory: peak resident memory of a fresh process analysing 2,000 images over one
   analysing 200 (aim: at most 1.1), and the same for the growth above the memory held
   before the analysis started.

Measured here (2 shared CPU cores, torch 2.13 CPU, 240x320, batch 8): bare 3.16 s, analyze
3.03 s for 200 images (ratio 0.96: the pass differentiates the heads only, not the
backbone); peak memory 381 MB at 200 and at 2,000 images (ratio 1.00).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from convdiag.load.batching import iterate_batches
from convdiag.load.recipe import Recipe
from convdiag.load.runner import ModelRunner
from convdiag.load.sample import PointDataset, Record
from convdiag.targets.losses import classification_loss, offset_l1_loss
from convdiag.targets.supervision import batch_labels

AIMS = {"analyze_over_bare_pass": 1.2, "analyze_peak_memory_large_over_small": 1.1}


def procedural_dataset(n: int, size: tuple[int, int], seed: int = 0) -> PointDataset:
    """n images of ``size`` with 1-5 Gaussian targets (sigma 1 px, peak 0.08) on noisy
    clutter (std 0.02), each rendered from its own seed when read."""
    h, w = size
    records = []
    for i in range(n):
        rng = np.random.default_rng((seed, i))
        k = int(rng.integers(1, 6))
        pts = np.stack([rng.uniform(4, w - 4, k), rng.uniform(4, h - 4, k)], axis=1)
        records.append(Record(f"{i:06d}", Path(f"{i:06d}.png"), size, pts))

    def reader(rec: Record) -> np.ndarray:
        rng = np.random.default_rng((seed, int(rec.id), 1))
        img = 0.3 + rng.normal(0, 0.02, size).astype(np.float32)
        yy, xx = np.mgrid[0:h, 0:w] + 0.5
        for x, y in rec.points:
            r0, r1 = max(int(y) - 4, 0), min(int(y) + 5, h)
            c0, c1 = max(int(x) - 4, 0), min(int(x) + 5, w)
            d2 = (xx[r0:r1, c0:c1] - x) ** 2 + (yy[r0:r1, c0:c1] - y) ** 2
            img[r0:r1, c0:c1] += 0.08 * np.exp(-d2 / 2.0)
        return np.clip(img, 0, 1)

    return PointDataset(records, reader, "procedural", "memory")


def make_model(seed: int = 0) -> torch.nn.Module:
    """The reference P2 detector with a spread-out head (an untrained head is flat)."""
    from convdiag.models.detector import reference

    torch.manual_seed(seed)
    model = reference(head="P2", width=16, prior=3e-4, bias_init="prior")
    head: Any = model.heads["P2"]
    with torch.no_grad():
        head.cls.out.weight.normal_(0, 0.5)
    return model.eval()


def bare_pass(runner: ModelRunner, ds: PointDataset, recipe: Recipe, batch: int) -> float:
    """Seconds of forward + training loss + backward over ``ds`` (the same batches)."""
    t0 = time.perf_counter()
    for b in iterate_batches(ds, batch, runner.pad_to):
        outs = runner(b.images)
        loss = torch.zeros(())
        for level, out in outs.items():
            lab = batch_labels(recipe, b, out, level, 1.0)
            loss = loss + classification_loss(recipe, out.cls, lab.heatmap, lab.valid)
            if out.reg is not None:
                loss = loss + offset_l1_loss(out.reg, lab.offset, lab.offset_mask)
        runner.model.zero_grad(set_to_none=True)
        loss.backward()
    return time.perf_counter() - t0


def analyze_pass(runner: ModelRunner, ds: PointDataset, recipe: Recipe, batch: int) -> float:
    """Seconds of the whole ``analyze_dataset`` on ``ds``."""
    from convdiag.remedies.analyze import analyze_dataset

    t0 = time.perf_counter()
    analyze_dataset(runner, ds, recipe, batch_size=batch)
    return time.perf_counter() - t0


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (MB; Linux reports KB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def memory_child(n: int, size: tuple[int, int], batch: int) -> dict[str, float]:
    """Analyse n images in this (fresh) process; report the peak memory before and after."""
    runner = ModelRunner(make_model(), pad_to=32)
    ds = procedural_dataset(n, size)
    # Warm up torch's allocator and the code paths on 2 images, then measure.
    from convdiag.remedies.analyze import analyze_dataset

    analyze_dataset(runner, procedural_dataset(2, size), Recipe(), batch_size=batch)
    before = peak_rss_mb()
    t0 = time.perf_counter()
    analyze_dataset(runner, ds, Recipe(), batch_size=batch)
    return {"n": n, "before_mb": before, "peak_mb": peak_rss_mb(),
            "seconds": time.perf_counter() - t0}  # fmt: skip


def run_child(n: int, size: tuple[int, int], batch: int) -> dict[str, float]:
    """``memory_child`` in a fresh interpreter."""
    cmd = [sys.executable, __file__, "--child", str(n), "--size", f"{size[0]}x{size[1]}",
           "--batch", str(batch)]  # fmt: skip
    env = {**os.environ, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env)
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main(argv: list[str] | None = None) -> dict[str, float]:
    """Parse arguments, print both measurements and return their ratios (bench/run_all.py)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", default="240x320", help="image size HxW")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--time-images", type=int, default=200)
    ap.add_argument("--small", type=int, default=200)
    ap.add_argument("--large", type=int, default=2000)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    h, w = (int(v) for v in args.size.lower().split("x"))
    if args.child is not None:
        print(json.dumps(memory_child(args.child, (h, w), args.batch)))
        return {}
    torch.set_num_threads(max(1, torch.get_num_threads()))
    runner = ModelRunner(make_model(), pad_to=32)
    ds = procedural_dataset(args.time_images, (h, w))
    recipe = Recipe()
    bare_pass(runner, procedural_dataset(8, (h, w)), recipe, args.batch)  # warm-up
    analyze_pass(runner, procedural_dataset(8, (h, w)), recipe, args.batch)
    bare = min(bare_pass(runner, ds, recipe, args.batch) for _ in range(args.repeat))
    full = min(analyze_pass(runner, ds, recipe, args.batch) for _ in range(args.repeat))
    print(f"time, {args.time_images} images of {h}x{w}, batch {args.batch}, "
          f"{torch.get_num_threads()} threads:")  # fmt: skip
    print(f"  bare forward+backward {bare:.2f} s, analyze {full:.2f} s, "
          f"ratio {full / bare:.2f} (aim <= 1.2)")  # fmt: skip
    small = run_child(args.small, (h, w), args.batch)
    large = run_child(args.large, (h, w), args.batch)
    grow_s = small["peak_mb"] - small["before_mb"]
    grow_l = large["peak_mb"] - large["before_mb"]
    print(f"memory, fresh processes ({h}x{w}):")
    print(
        f"  {args.small} images: peak {small['peak_mb']:.0f} MB ({small['seconds']:.1f} s); "
        f"{args.large} images: peak {large['peak_mb']:.0f} MB ({large['seconds']:.1f} s)"
    )
    print(
        f"  peak ratio {large['peak_mb'] / small['peak_mb']:.3f} (aim <= 1.1); growth above "
        f"the warm process {grow_s:.0f} MB -> {grow_l:.0f} MB"
    )
    return {
        "analyze_over_bare_pass": full / bare,
        "analyze_peak_memory_large_over_small": large["peak_mb"] / small["peak_mb"],
    }


if __name__ == "__main__":
    main()
