"""Time per training step of convdiag.train against a bare PyTorch loop (same model, batch, loss).

Both loops train the reference P2 detector on 8 images of 240x320 per step with hard labels,
BCE and the offset L1. The bare loop has every image, label map and offset map precomputed as
tensors and only indexes them; convdiag.train draws, pads and labels each batch itself.
Prints the ratio (aim: at most 1.05). Run: .venv/bin/python bench/train.py
"""

from __future__ import annotations

import os
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np
import torch
import torch.nn.functional as F

from convdiag.load.recipe import Recipe
from convdiag.load.runner import ModelRunner
from convdiag.load.sample import PointDataset, Record
from convdiag.load.synth import SynthConfig, render_synthetic
from convdiag.models.detector import reference
from convdiag.targets.labels import render_batch
from convdiag.training.loop import train

N_IMAGES, SIZE, BATCH, STEPS, WARM = 64, (240, 320), 8, 40, 5
AIMS = {"train_step_ratio": 1.05}


def _dataset() -> PointDataset:
    rng = np.random.default_rng(0)
    cfg = SynthConfig(n=N_IMAGES, size=SIZE, snr=6.0, seed=0)
    images, records = [], []
    for i in range(N_IMAGES):
        img, _mask, pts = render_synthetic(rng, cfg)
        images.append(img)
        records.append(Record(f"{i:04d}", None, SIZE, pts))  # type: ignore[arg-type]
    return PointDataset(records, lambda r: images[int(r.id)], "memory", "bench")


def _convdiag(ds: PointDataset, steps: int) -> float:
    torch.manual_seed(0)
    model = reference(head="P2", width=16, bias_init="zero")
    recipe = Recipe(head="P2", labels="hard", loss="bce", batch=BATCH, seed=0)
    times: list[float] = []
    last = [time.perf_counter()]

    def tick(step: int, info: dict[str, object]) -> None:
        now = time.perf_counter()
        times.append(now - last[0])
        last[0] = now

    train(ModelRunner(model), ds, None, recipe, steps, eval_every=10**9, on_step=tick)
    return float(np.median(times[WARM:]))


def _bare(ds: PointDataset, steps: int) -> float:
    torch.manual_seed(0)
    model = reference(head="P2", width=16, bias_init="zero")
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    images = torch.from_numpy(np.stack([ds[i].image for i in range(len(ds))]))[:, None]
    grid = (SIZE[0] // 4, SIZE[1] // 4)
    lab = render_batch([r.points for r in ds.records], [r.size for r in ds.records], grid, "P2")
    rng = np.random.default_rng(0)
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        idx = torch.from_numpy(rng.integers(0, len(ds), size=BATCH))
        out = model(images[idx])["P2"]
        cls = F.binary_cross_entropy_with_logits(out["cls"], lab.heatmap[idx])
        mask = lab.offset_mask[idx].expand_as(out["reg"])
        reg = ((out["reg"] - lab.offset[idx]).abs() * mask).sum() / mask.sum().clamp(min=1)
        opt.zero_grad(set_to_none=True)
        (cls + reg).backward()
        opt.step()
        times.append(time.perf_counter() - t0)
    return float(np.median(times[WARM:]))


def main() -> dict[str, float]:
    """Measure both loops in one run; returns {"train_step_ratio": convdiag / bare}."""
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    ds = _dataset()
    bare = _bare(ds, STEPS)
    ours = _convdiag(ds, STEPS)
    bare = min(bare, _bare(ds, STEPS))  # both measured twice around, against drift
    ours = min(ours, _convdiag(ds, STEPS))
    ratio = ours / bare
    print(f"bare PyTorch loop : {bare * 1e3:7.1f} ms/step (8 x 240x320, P2 hard BCE + offset L1)")
    print(f"convdiag.train    : {ours * 1e3:7.1f} ms/step (draws, pads and labels each batch)")
    print(f"ratio             : {ratio:7.3f}  (aim <= 1.05)")
    return {"train_step_ratio": ratio}


if __name__ == "__main__":
    main()
