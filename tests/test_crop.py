"""Training crops: inside the image, the oversampled share centred near a target, and the
checks and defaults of --crop / --batch / --lr."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from convdiag.errors import InputError
from convdiag.load.recipe import Recipe
from convdiag.load.sample import PointDataset, Record
from convdiag.training.batches import (
    ImageCache,
    check_knobs,
    draw_batch,
    retrain_knobs,
    short_retrain_defaults,
)


def _positional(h: int, w: int) -> np.ndarray:
    """img[r, c] = (r * w + c + 1) / (h * w + 1): every pixel says where it is (never 0)."""
    return ((np.arange(h * w, dtype=np.float64) + 1) / (h * w + 1)).reshape(h, w).astype(np.float32)


def _dataset(sizes: list[tuple[int, int]], points: list[np.ndarray]) -> PointDataset:
    recs = [
        Record(f"i{i}", Path(f"i{i}.png"), s, p)
        for i, (s, p) in enumerate(zip(sizes, points, strict=True))
    ]
    return PointDataset(recs, lambda r: _positional(*r.size))


def _origin(crop: np.ndarray, h: int, w: int) -> tuple[int, int]:
    """(top, left) of a crop that lies inside an h x w positional image."""
    k = round(float(crop[0, 0]) * (h * w + 1)) - 1
    return k // w, k % w


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    h=st.integers(16, 120),
    w=st.integers(16, 120),
    fh=st.floats(0.1, 1.0),
    fw=st.floats(0.1, 1.0),
    x=st.floats(0.0, 0.999),
    y=st.floats(0.0, 0.999),
    seed=st.integers(0, 10_000),
    p=st.sampled_from([0.0, 1.0]),
)
# a 1-pixel-wide crop whose rounding once fell beside its target
@example(h=16, w=16, fh=1.0, fw=0.109375, x=0.5, y=0.0, seed=0, p=1.0)
def test_crops_lie_inside_the_image_and_near_crops_hold_their_target(
    h: int, w: int, fh: float, fw: float, x: float, y: float, seed: int, p: float
) -> None:
    ch, cw = max(1, int(h * fh)), max(1, int(w * fw))
    pt = np.array([[x * w, y * h]])
    ds = _dataset([(h, w)], [pt])
    recipe = Recipe(batch=4, seed=seed, crop=(ch, cw), oversample=p)
    b = draw_batch(ds, ImageCache(ds), recipe, 0, 1, (ch, cw), np.array([0]))
    for k, (size, pts) in enumerate(zip(b.sizes, b.points, strict=True)):
        assert size == (ch, cw)
        crop = b.images[k, 0, :ch, :cw].numpy()
        assert crop.min() > 0  # no padding: the crop lies inside the image
        top, left = _origin(crop, h, w)
        assert 0 <= top <= h - ch and 0 <= left <= w - cw
        np.testing.assert_allclose(crop, _positional(h, w)[top : top + ch, left : left + cw])
        inside = (left <= pt[0, 0] < left + cw) and (top <= pt[0, 1] < top + ch)
        assert len(pts) == int(inside)  # the crop's points: the target iff it lies inside
        if p == 1.0:
            assert inside  # a crop centred near the target holds it, even when moved inside
            # away from the borders it stays centred: within a quarter of the crop (+1 px)
            cy, cx = top + ch / 2, left + cw / 2
            if (
                ch * 0.75 + 1 < pt[0, 1] < h - ch * 0.75 - 1
                and cw * 0.75 + 1 < pt[0, 0] < w - cw * 0.75 - 1
            ):
                assert abs(pt[0, 1] - cy) <= ch / 4 + 1 and abs(pt[0, 0] - cx) <= cw / 4 + 1


def test_the_oversampled_share_is_p() -> None:
    """With oversample p a crop holds the target with probability p + (1 - p) q, where q is
    the chance that a crop drawn anywhere holds it: 32x32 crops of 200x200 around the single
    target at (100, 100) give q = (32 / 169)^2 (crops start at 0..168)."""
    ds = _dataset([(200, 200)], [np.array([[100.5, 100.5]])])
    recipe = Recipe(batch=800, seed=3, crop=(32, 32), oversample=0.5)
    b = draw_batch(ds, ImageCache(ds), recipe, 0, 1, (32, 32), np.array([0]))
    share = np.mean([len(p) > 0 for p in b.points])
    q = (32 / 169) ** 2
    expect = 0.5 + 0.5 * q
    sd = np.sqrt(expect * (1 - expect) / 800)
    assert abs(share - expect) < 4 * sd


def test_near_crops_switch_to_an_image_with_targets() -> None:
    ds = _dataset([(64, 64), (64, 64)], [np.zeros((0, 2)), np.array([[30.0, 20.0]])])
    recipe = Recipe(batch=16, seed=0, crop=(16, 16), oversample=1.0)
    b = draw_batch(ds, ImageCache(ds), recipe, 0, 1, (16, 16), np.array([1]))
    assert all(len(p) == 1 for p in b.points)


# --------------------------------------------------------------------------- knobs


def test_knob_checks_name_the_flag() -> None:
    ds = _dataset([(96, 128)] * 5, [np.zeros((0, 2))] * 5)
    check_knobs(ds, (96, 128), 5, 1e-3)  # the largest image and the whole set are fine
    for kwargs, flag in [
        ({"crop": (97, 64)}, "--crop 97x64"),
        ({"crop": (64, 129)}, "--crop 64x129"),
        ({"batch": 6}, "--batch 6"),
        ({"lr": 0.0}, "--lr"),
        ({"lr": float("nan")}, "--lr"),
        ({"lr": float("inf")}, "--lr"),
        ({"lr": -1.0}, "--lr"),
    ]:
        args = {"crop": None, "batch": None, "lr": None, **kwargs}
        with pytest.raises(InputError, match=flag):
            check_knobs(ds, args["crop"], args["batch"], args["lr"])


def test_short_retrain_defaults_for_a_checkpoint_without_a_recipe() -> None:
    big = _dataset([(388, 456), (300, 400)], [np.zeros((0, 2))] * 2)
    assert short_retrain_defaults(big) == {"lr": 1e-3, "batch": 2, "crop": (128, 128)}
    small = _dataset([(96, 100)] * 10, [np.zeros((0, 2))] * 10)
    assert short_retrain_defaults(small) == {"lr": 1e-3, "batch": 8}
    odd = _dataset([(100, 200)] * 10, [np.zeros((0, 2))] * 10)
    assert short_retrain_defaults(odd)["crop"] == (96, 128)  # multiples of 32, inside
    rec, used = retrain_knobs(Recipe(), True, big, None, 1, None)
    assert (rec.batch, rec.lr, rec.crop) == (1, 1e-3, (128, 128))
    assert used == {"lr": 1e-3, "crop": (128, 128)}  # the given --batch is not a default
    rec, used = retrain_knobs(Recipe(lr=0.01), False, big, None, None, None)
    assert (rec.lr, rec.crop, used) == (0.01, None, {})  # a convdiag recipe stays as it was


@pytest.mark.slow
def test_a_foreign_checkpoint_retrains_with_short_defaults_shown(
    tiny_dataset: Path, trained_checkpoint: Callable[..., Path], tmp_path: Path
) -> None:
    import json

    import torch
    from bad.helpers import run_cli

    ckpt = trained_checkpoint(head="P2", labels="hard", loss="bce", bias_init="zero")
    sd = tmp_path / "weights.pt"
    torch.save(torch.load(ckpt, weights_only=True)["state_dict"], sd)  # no recipe
    args = ["retrain", sd, "--model", "convdiag.models:reference", "--data", tiny_dataset,
            "--soft", "--steps", 2, "--batch", 4]  # fmt: skip
    shown = run_cli(args)
    assert shown.code == 0, shown.stderr
    assert "no recipe: short-retrain defaults lr 0.001" in shown.stdout
    rep = json.loads(run_cli([*args, "--format", "json"]).stdout)
    assert rep["recipe_defaults"] == {"lr": 0.001}  # 96x128 images need no crop; batch given
    assert rep["recipes"]["remedy"]["batch"] == 4 and rep["recipes"]["remedy"]["lr"] == 0.001
