"""Your own detector, with its own output format, analyzed and retrained through an adapter.

``TinyNet`` returns ``{"heatmap": logits [B, 1, H/4, W/4], "offset": [B, 2, H/4, W/4]}``,
which is not one of the forms convdiag reads. Three small pieces make it work:

- ``factory(width)``: builds the model (``--model custom_model:factory``);
- ``adapter(raw)``: maps its output to ``(cls, reg)`` (``--adapter custom_model:adapter``);
- a plain state dict saved with ``torch.save`` by your own training loop.

The script trains TinyNet in a plain PyTorch loop with hard one-cell labels and BCE,
analyzes the saved state dict, and retrains it with the top remedy next to the unchanged
recipe. The same from the shell, in this folder::

    convdiag analyze tinynet.pt --data data --model custom_model:factory \\
        --adapter custom_model:adapter --labels hard --loss bce
    convdiag retrain tinynet.pt --data data --model custom_model:factory \\
        --adapter custom_model:adapter --labels hard --loss bce --focal --compare

    python custom_model.py [--steps 60] [--retrain-steps 200]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

import convdiag
from convdiag.load.options import ModelOptions, RecipeOptions

# How convdiag builds and calls the model; "custom_model" is this file, importable because
# Python puts the script's folder (and convdiag the working directory) on sys.path.
MODEL = ModelOptions(
    model="custom_model:factory", model_args={"width": "8"}, adapter="custom_model:adapter"
)
# A plain state dict carries no recipe: say how it was trained.
TRAINED_WITH = RecipeOptions(labels="hard", loss="bce")


def conv_bn(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    """3x3 convolution, batch norm, ReLU."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()
    )


class TinyNet(nn.Module):
    """Stride-4 point detector: images [B, 1, H, W] -> heatmap logits and offsets in cells."""

    def __init__(self, width: int = 8) -> None:
        super().__init__()
        self.body = nn.Sequential(
            conv_bn(1, width), conv_bn(width, 2 * width, 2),
            conv_bn(2 * width, 2 * width, 2), conv_bn(2 * width, 2 * width),
        )  # fmt: skip
        self.heatmap = nn.Conv2d(2 * width, 1, 1)
        self.offset = nn.Conv2d(2 * width, 2, 1)

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        """{"heatmap": logits [B, 1, H/4, W/4], "offset": (dx, dy) in [0, 1) [B, 2, H/4, W/4]}."""
        f = self.body(images)
        return {"heatmap": self.heatmap(f), "offset": torch.sigmoid(self.offset(f))}


def factory(width: int = 8) -> TinyNet:
    """Build TinyNet (convdiag passes ``--model-arg`` values as keyword arguments)."""
    return TinyNet(width)


def adapter(raw: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
    """TinyNet's output -> convdiag's ``(cls logits [B, 1, h, w], reg offsets [B, 2, h, w])``."""
    return raw["heatmap"], raw["offset"]


def train_own_loop(data: Path, steps: int, seed: int = 0) -> TinyNet:
    """Your training loop: hard one-cell labels, BCE on the heatmap, L1 on the offsets."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    train_ds, _ = convdiag.load_train_val(data)
    samples = [train_ds[i] for i in range(len(train_ds))]
    model = factory(width=8)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(steps):
        batch = [samples[i] for i in rng.choice(len(samples), 8)]
        images = torch.from_numpy(np.stack([s.image for s in batch]))[:, None]
        cls, reg = adapter(model(images))
        lab = convdiag.render_batch(
            [s.points for s in batch], [s.image.shape for s in batch], cls.shape[-2:], "P2"
        )
        loss = F.binary_cross_entropy_with_logits(cls, lab.heatmap)
        mask = lab.offset_mask.expand_as(reg)
        loss = loss + (reg - lab.offset)[mask].abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model


def main() -> None:
    """Train, save a state dict, analyze it through the adapter, retrain with the remedy."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=60, help="steps of your own training loop")
    ap.add_argument("--retrain-steps", type=int, default=200, help="steps of each retraining")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        convdiag.synthesize(
            data, convdiag.SynthConfig(n=48, size=(96, 128), snr=8.0, clutter=0.3, seed=1)
        )
        model = train_own_loop(data, args.steps)
        ckpt = Path(tmp) / "tinynet.pt"
        torch.save(model.state_dict(), ckpt)
        print(f"trained TinyNet for {args.steps} steps in a plain loop -> {ckpt.name}")

        report = convdiag.analyze_checkpoint(
            ckpt, data, quiet=True, model_opts=MODEL, recipe_opts=TRAINED_WITH
        )
        m = report["model"]
        print(f"loaded a {m['format']} through {m['factory']} and {m['adapter']}; head "
              f"parameters found by name: {m['head_parameters']}")  # fmt: skip
        print(f"verdict: {report['verdict']}")
        fixable = [(f, r) for f in report["findings"] for r in f["remedies"] if r["applied"]]
        if not fixable:
            print("nothing to fix: no finding with a remedy")
            return
        top, remedy = fixable[0]
        print(f"top finding: {top['id']} ({top['severity']})")
        print(f"top remedy: {remedy['id']} {remedy['params']}")

        fixed = convdiag.retrain(
            ckpt, data, [remedy], steps=args.retrain_steps, model_opts=MODEL,
            recipe_opts=TRAINED_WITH,
        )  # fmt: skip
        for run in ("before", "baseline", "remedy"):
            s = fixed[run]
            print(f"{run:>8}: best F1 {s['best_f1']:.2f}, F1@0.5 {s['f1_at_0.5']:.2f}, "
                  f"FP/image {s['fp_per_image']:.2f}, cls loss {s['cls_loss']:.4f} "
                  f"(constant {s['constant_loss']:.4f})")  # fmt: skip


if __name__ == "__main__":
    main()
