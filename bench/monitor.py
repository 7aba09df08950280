"""Overhead of ``convdiag.Monitor`` on a training step (issue 5: at most 2% at every=100).

Times, on the reference P2 detector (width 16, ~44k parameters) with batches of 8 images:

- step: one plain training step (forward, BCE + offset L1, backward, Adam step);
- sample: one ``Monitor.update`` call that measures (every ``every``-th call);
- skip: one ``Monitor.update`` call that only counts.

The overhead ratio is (sample + (every - 1) x skip) / (every x step): the mean extra time
per step over the step's own time. Medians of ``--repeat`` timings each, so a shared CPU
disturbs the ratio less than an end-to-end difference would. Prints JSON; exit 1 when the
ratio exceeds ``--max-ratio``.

    OMP_WAIT_POLICY=PASSIVE python bench/monitor.py [--size 240x320] [--every 100]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable

import numpy as np
import torch

from convdiag.models.detector import reference
from convdiag.targets.geometry import parse_size
from convdiag.targets.labels import render_batch
from convdiag.targets.losses import bce_loss, offset_l1_loss
from convdiag.watch.monitor import Monitor

AIMS = {"monitor_overhead_ratio": 0.02}  # --max-ratio


def _median_time(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> dict[str, float]:
    """Run the benchmark, print its JSON and return its ratios (bench/run_all.py protocol)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="240x320", help="image size HxW")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--every", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    ap.add_argument("--max-ratio", type=float, default=0.02)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    h, w = parse_size(args.size)
    images = torch.rand(args.batch, 1, h, w)
    points = [
        np.stack([rng.uniform(0, w, 3), rng.uniform(0, h, 3)], axis=1) for _ in range(args.batch)
    ]
    model = reference("P2", width=16, prior=3e-4)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    state: dict[str, object] = {}

    def step() -> None:
        out = model(images)["P2"]
        lab = render_batch(points, [(h, w)] * args.batch, out["cls"].shape[-2:], "P2")
        loss = bce_loss(out["cls"], lab.heatmap, lab.valid) + offset_l1_loss(
            out["reg"], lab.offset, lab.offset_mask
        )
        opt.zero_grad()
        loss.backward()
        opt.step()
        state["out"], state["loss"] = out, loss

    for _ in range(3):  # warm-up: allocator, lazy imports
        step()
    t_step = _median_time(step, args.repeat)
    out, loss = state["out"], state["loss"]
    mon = Monitor("P2", every=args.every, warn=False)

    def sample() -> None:
        mon.step = 0  # due
        mon.update(out, points, loss, model=model, image_size=(h, w))

    def skip() -> None:
        mon.step = 1  # not due
        mon.update(out, points, loss, model=model, image_size=(h, w))

    for _ in range(2):
        sample()
    t_sample = _median_time(sample, args.repeat)
    t_skip = _median_time(skip, max(args.repeat, 200))
    ratio = (t_sample + (args.every - 1) * t_skip) / (args.every * t_step)
    result = {
        "size": [h, w],
        "batch": args.batch,
        "every": args.every,
        "threads": torch.get_num_threads(),
        "step_s": t_step,
        "sample_s": t_sample,
        "skip_s": t_skip,
        "sample_over_step": t_sample / t_step,
        "overhead_ratio": ratio,
        "max_ratio": args.max_ratio,
        "ok": ratio <= args.max_ratio,
    }
    print(json.dumps(result, indent=2))
    AIMS["monitor_overhead_ratio"] = args.max_ratio
    return {"monitor_overhead_ratio": ratio, "monitor_sample_over_step": t_sample / t_step}


if __name__ == "__main__":
    res = main()
    sys.exit(0 if res["monitor_overhead_ratio"] <= AIMS["monitor_overhead_ratio"] else 1)
