"""convdiag.Monitor inside a plain PyTorch training loop (runs in a few seconds on a CPU).

Two short runs of the reference P2 detector on synthetic dim point targets:

- ``hard``: one-cell hard labels, plain BCE, a zero-initialised classification bias and
  images without any target signal to learn from: the model can only learn the prior, so
  the monitor warns "background collapse" (and gradient starvation on the way down);
- ``focal``: the same model with CenterNet focal loss on bright targets: it learns, and the
  monitor stays quiet.

    python examples/monitor_loop.py [--steps 100] [--every 10] [--run hard|focal|both]
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import torch

from convdiag.models.detector import reference
from convdiag.targets.labels import render_batch
from convdiag.targets.losses import bce_loss, centernet_focal_loss, offset_l1_loss
from convdiag.watch.monitor import ConvdiagWarning, Monitor

SIZE = (48, 64)  # (H, W)
LEVEL = "P2"


def make_batch(
    rng: np.random.Generator, batch: int, amplitude: float
) -> tuple[torch.Tensor, list[np.ndarray]]:
    """Images [B, 1, H, W] in [0, 1]: noise plus 1-3 Gaussian spots (sigma 1 px) of
    ``amplitude``; and their points [N, 2] (x, y) per image."""
    h, w = SIZE
    yy, xx = np.mgrid[0:h, 0:w] + 0.5
    images, points = [], []
    for _ in range(batch):
        n = int(rng.integers(1, 4))
        pts = np.stack([rng.uniform(4, w - 4, n), rng.uniform(4, h - 4, n)], axis=1)
        img = 0.2 + 0.05 * rng.standard_normal((h, w))
        for x, y in pts:
            img += amplitude * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / 2.0)
        images.append(np.clip(img, 0, 1))
        points.append(pts)
    return torch.from_numpy(np.stack(images)[:, None].astype(np.float32)), points


def train(run: str, steps: int, every: int, seed: int = 0) -> Monitor:
    """Train one recipe for ``steps`` steps with a Monitor; return the monitor."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    focal = run == "focal"
    model = reference(LEVEL, width=8, prior=0.01, bias_init="prior" if focal else "zero")
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    monitor = Monitor(level=LEVEL, every=every, loss="focal" if focal else "bce")
    amplitude = 0.6 if focal else 0.0  # no signal: only the prior can be learned
    for _ in range(steps):
        images, points = make_batch(rng, 8, amplitude)
        out = model(images)[LEVEL]
        lab = render_batch(points, [SIZE] * len(points), out["cls"].shape[-2:], LEVEL)
        if focal:
            cls = centernet_focal_loss(out["cls"], lab.heatmap, lab.valid)
        else:
            cls = bce_loss(out["cls"], lab.heatmap, lab.valid)
        loss = cls + offset_l1_loss(out["reg"], lab.offset, lab.offset_mask)
        opt.zero_grad()
        loss.backward()
        # after backward (the head gradients are this step's), before the next zero_grad
        monitor.update(out, points, loss, model=model, image_size=images.shape[-2:])
        opt.step()
    return monitor


def main() -> None:
    """Run the chosen recipes and print what the monitor found."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--every", type=int, default=10)
    ap.add_argument("--run", choices=["hard", "focal", "both"], default="both")
    args = ap.parse_args()
    torch.set_num_threads(1)
    for run in ("hard", "focal") if args.run == "both" else (args.run,):
        t0 = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvdiagWarning)
            monitor = train(run, args.steps, args.every)
        print(f"== {run}: {args.steps} steps in {time.perf_counter() - t0:.1f} s")
        for w in caught:
            print(f"warning: {w.message}")
        last = monitor.history[-1]
        print(
            f"last check (step {last['step']}): peak median {last['peak_score_p50']:.3g}, "
            f"cls/constant loss {last['loss_ratio']:.3g}, positive gradient share "
            f"{last['pos_grad_share']:.3g}, |grad| cls {last['cls_grad_norm']:.3g} "
            f"reg {last['reg_grad_norm']:.3g}"
        )
        findings = monitor.report()
        print("findings:", ", ".join(f"{f.id} ({f.severity})" for f in findings) or "none")


if __name__ == "__main__":
    main()
