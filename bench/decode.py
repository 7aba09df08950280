"""Benchmark matching and synthesis speed (run: python bench/decode.py).

Measured in one run, on the same machine (formerly wall-clock assertions in the tests):

1. ``DetectionMetrics.update`` on a batch of 8 images x 100 predictions x 5 targets at
   240x320, against a brute-force reference (every prediction against every target with
   ``scipy.optimize.linear_sum_assignment``, no pruning): time per batch and the ratio.
   Aim: under 50 ms per batch.
2. ``synthesize`` of 200 images of the default size: seconds of CPU time per 100 images.

Set OMP_WAIT_POLICY=PASSIVE when other processes share the cores.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy.optimize import linear_sum_assignment

from convdiag.load.synth import SynthConfig, synthesize
from convdiag.targets.decode import DetectionMetrics

AIMS = {"update_ms_per_batch": 50.0}


def _batch(seed: int = 0) -> tuple[list, list]:
    rng = np.random.default_rng(seed)
    preds = [(rng.uniform(0, 300, (100, 2)), np.sort(rng.random(100))[::-1]) for _ in range(8)]
    gts = [rng.uniform(0, 300, (5, 2)) for _ in range(8)]
    for p, g in zip(preds, gts, strict=True):
        p[0][:5] = g + 0.5  # a few true positives
    return preds, gts


def _brute(preds: list, gts: list, radius: float = 3.0) -> None:
    for (pts, _scores), g in zip(preds, gts, strict=True):
        d = np.linalg.norm(pts[:, None, :] - g[None, :, :], axis=-1)
        cost = np.where(d < radius, d, 1e6)
        linear_sum_assignment(cost)


def main(argv: list[str] | None = None) -> dict[str, float]:
    """Measure and print; returns the ratios (name -> value)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--images", type=int, default=200)
    args = ap.parse_args(argv)
    preds, gts = _batch()
    m = DetectionMetrics()
    m.update(preds, gts, [(240, 320)] * 8)
    t0 = time.perf_counter()
    for _ in range(args.repeat):
        m.update(preds, gts, [(240, 320)] * 8)
    ours = (time.perf_counter() - t0) / args.repeat
    t0 = time.perf_counter()
    for _ in range(args.repeat):
        _brute(preds, gts)
    brute = (time.perf_counter() - t0) / args.repeat
    print(f"DetectionMetrics.update : {ours * 1e3:7.2f} ms per batch of 8 (all thresholds)")
    print(f"brute-force assignment  : {brute * 1e3:7.2f} ms per batch (one threshold)")
    with tempfile.TemporaryDirectory() as tmp:
        c0 = time.process_time()
        synthesize(Path(tmp) / "d", SynthConfig(n=args.images))
        synth_cpu = time.process_time() - c0
    print(f"synthesize              : {synth_cpu:7.2f} s CPU for {args.images} images")
    return {
        "update_ms_per_batch": ours * 1e3,
        "update_vs_brute": ours / brute,
        "synth_cpu_s_per_100": synth_cpu * 100 / args.images,
    }


if __name__ == "__main__":
    main()
