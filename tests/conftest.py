"""Shared fixtures: the fixture modules on sys.path, a tiny synthetic dataset and trained
checkpoints (session-scoped, so each recipe is trained once per test run)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"
if str(FIXTURES) not in sys.path:
    sys.path.insert(0, str(FIXTURES))

# A small synthetic set: 48 images of 96x128, SNR 5. In 300 steps (20-40 s on 2 cores) hard
# one-cell labels + BCE + zero bias collapse to background at P2 (two init seeds checked),
# soft 3x3 labels + focal loss reach F1 ~0.8, and P4 loses localisation to quantisation.
TINY = {"n": 48, "size": (96, 128), "snr": 5.0, "seed": 1}


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A synthetic dataset folder (images/, masks/, points.csv, split files)."""
    from convdiag.load.synth import SynthConfig, synthesize

    root = tmp_path_factory.mktemp("tiny") / "data"
    synthesize(root, SynthConfig(n=TINY["n"], size=TINY["size"], snr=TINY["snr"],
                                 seed=TINY["seed"]))  # fmt: skip
    return root


@pytest.fixture(scope="session")
def trained_checkpoint(
    tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory
) -> Callable[..., Path]:
    """``trained_checkpoint(head="P2", labels="hard", loss="bce", steps=300, ...)`` -> the
    path of a convdiag checkpoint trained on ``tiny_dataset`` (cached per argument set)."""
    cache: dict[tuple[tuple[str, object], ...], Path] = {}

    def train(steps: int = 300, **recipe: object) -> Path:
        import torch

        from convdiag.load.datasets import load_train_val
        from convdiag.load.recipe import Recipe
        from convdiag.training.workflow import train_new_model

        key = tuple(sorted({**recipe, "steps": steps}.items()))
        if key in cache:
            return cache[key]
        out = tmp_path_factory.mktemp("ckpt")
        train_ds, val_ds = load_train_val(tiny_dataset, None, seed=0)
        rec = Recipe(**recipe)  # type: ignore[arg-type]
        # the initial weights follow rec.seed: they must not depend on earlier tests
        train_new_model(rec, train_ds, val_ds, steps, torch.device("cpu"), out=out,
                        run_name="test", eval_every=steps)  # fmt: skip
        cache[key] = out / "checkpoint.pt"
        return cache[key]

    return train
