"""Losses against plain numpy float64 references, and autograd gradient checks."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from convdiag.errors import InputError
from convdiag.load.recipe import Recipe
from convdiag.remedies.apply import apply_remedy
from convdiag.targets import losses

# ---------------------------------------------------------------- independent references


def _np_sig(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def ref_bce(x, y, v, w=1.0):
    p = _np_sig(x)
    cell = -(w * y * np.log(p) + (1 - y) * np.log(1 - p))
    return np.sum(cell[v]) / max(1, v.sum())


def ref_centernet(x, y, v, a=2.0, b=4.0):
    p = _np_sig(x)
    total = 0.0
    for pi, yi, vi in zip(p.ravel(), y.ravel(), v.ravel(), strict=True):
        if not vi:
            continue
        if yi == 1:
            total += -((1 - pi) ** a) * math.log(pi)
        else:
            total += -((1 - yi) ** b) * pi**a * math.log(1 - pi)
    return total / max(1, int(((y == 1) & v).sum()))


def ref_sigmoid_focal(x, y, v, al=0.25, g=2.0):
    p = _np_sig(x)
    cell = -al * y * (1 - p) ** g * np.log(p) - (1 - al) * (1 - y) * p**g * np.log(1 - p)
    return np.sum(cell[v]) / max(1, int(((y == 1) & v).sum()))


def ref_ohem(x, y, v, ratio, w=1.0):
    p = _np_sig(x)
    cell = -(w * y * np.log(p) + (1 - y) * np.log(1 - p))
    flat_cell, flat_y, flat_v = cell.ravel(), y.ravel(), v.ravel()
    pos = [i for i in range(flat_cell.size) if flat_v[i] and flat_y[i] > 0]
    neg = [i for i in range(flat_cell.size) if flat_v[i] and flat_y[i] == 0]
    k = math.ceil(ratio * max(len(pos), 1))
    # Highest loss first; equal losses: lower index first.
    neg_sorted = sorted(neg, key=lambda i: (-flat_cell[i], i))[:k]
    kept = pos + neg_sorted
    return sum(flat_cell[i] for i in kept) / len(kept), sorted(kept)


def random_batch(seed: int, shape=(2, 1, 6, 7), soft=True, invalid=True):
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 3, size=shape)
    y = np.zeros(shape)
    if soft:
        y = np.where(rng.random(shape) < 0.3, rng.uniform(0, 1, shape), 0.0)
    y[rng.random(shape) < 0.08] = 1.0
    y.reshape(-1)[rng.integers(0, y.size)] = 1.0
    v = np.ones(shape, bool)
    if invalid:
        v[..., -2:, :] = rng.random(v[..., -2:, :].shape) < 0.3
    return x, y, v


def t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.asarray(a))


# ---------------------------------------------------------------- values


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("w", [None, 7.5])
def test_bce_matches_reference(seed: int, w: float | None) -> None:
    x, y, v = random_batch(seed)
    got = losses.bce_loss(t(x), t(y), t(v), pos_weight=w).item()
    assert got == pytest.approx(ref_bce(x, y, v, 1.0 if w is None else w), rel=1e-10)


@pytest.mark.parametrize("seed", range(4))
def test_centernet_focal_matches_reference(seed: int) -> None:
    x, y, v = random_batch(seed)
    assert losses.centernet_focal_loss(t(x), t(y), t(v)).item() == pytest.approx(
        ref_centernet(x, y, v), rel=1e-10
    )
    got = losses.centernet_focal_loss(t(x), t(y), t(v), alpha=1.5, beta=3.0).item()
    assert got == pytest.approx(ref_centernet(x, y, v, 1.5, 3.0), rel=1e-10)


@pytest.mark.parametrize("seed", range(4))
def test_sigmoid_focal_matches_reference(seed: int) -> None:
    x, y, v = random_batch(seed)
    got = losses.sigmoid_focal_loss(t(x), t(y), t(v), alpha=0.3, gamma=1.5).item()
    assert got == pytest.approx(ref_sigmoid_focal(x, y, v, 0.3, 1.5), rel=1e-10)


@given(seed=st.integers(0, 10_000))
@settings(max_examples=30, deadline=None)
def test_sigmoid_focal_gamma0_is_scaled_bce(seed: int) -> None:
    # gamma = 0, alpha = 0.5: each cell is half its BCE, so the sum is 0.5 * mean-BCE * n_valid
    # and the focal normaliser divides it by n_pos instead of n_valid.
    x, y, v = random_batch(seed)
    n_valid, n_pos = v.sum(), max(1, ((y == 1) & v).sum())
    bce = losses.bce_loss(t(x), t(y), t(v)).item()
    sf = losses.sigmoid_focal_loss(t(x), t(y), t(v), alpha=0.5, gamma=0.0).item()
    assert sf == pytest.approx(0.5 * bce * n_valid / n_pos, rel=1e-9)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("ratio", [0.0, 1.0, 3.0, 1000.0])
def test_ohem_matches_reference(seed: int, ratio: float) -> None:
    x, y, v = random_batch(seed, shape=(3, 1, 5, 5))
    expected, kept = ref_ohem(x, y, v, ratio, 2.0)
    got = losses.ohem_bce_loss(t(x), t(y), t(v), ratio=ratio, pos_weight=2.0).item()
    assert got == pytest.approx(expected, rel=1e-10)
    cell = losses.ohem_bce_loss(t(x), t(y), t(v), ratio=ratio, pos_weight=2.0, reduction="none")
    assert sorted(np.flatnonzero(cell.numpy().ravel() != 0)) == [
        i for i in kept if cell.numpy().ravel()[i] != 0
    ]


def test_ohem_ties_are_deterministic() -> None:
    # All negatives have the same loss: the k lowest flat indices are kept.
    x = torch.zeros(1, 1, 4, 4, dtype=torch.float64)
    y = torch.zeros_like(x)
    y[0, 0, 3, 3] = 1.0
    keep = losses.ohem_bce_loss(x, y, ratio=3.0, reduction="none").numpy().ravel() > 0
    assert np.flatnonzero(keep).tolist() == [0, 1, 2, 15]


def test_ohem_without_positives_keeps_ratio_negatives() -> None:
    x = torch.tensor([[[[0.0, 3.0, -1.0, 2.0]]]], dtype=torch.float64)
    y = torch.zeros_like(x)
    got = losses.ohem_bce_loss(x, y, ratio=2.0).item()
    cells = -np.log(1 - _np_sig(np.array([3.0, 2.0])))
    assert got == pytest.approx(cells.mean(), rel=1e-12)


def test_reductions_and_invalid_cells() -> None:
    x, y, v = random_batch(3)
    for fn in (losses.bce_loss, losses.centernet_focal_loss, losses.sigmoid_focal_loss):
        cell = fn(t(x), t(y), t(v), reduction="none")
        assert cell.shape == x.shape
        assert (cell.numpy()[~v] == 0).all()
        assert fn(t(x), t(y), t(v), reduction="sum").item() == pytest.approx(cell.sum().item())
    # Padding cells never count, whatever their logits (even non-finite).
    x2 = x.copy()
    x2[~v] = np.nan
    for fn in (losses.bce_loss, losses.centernet_focal_loss, losses.sigmoid_focal_loss):
        a = t(x2).requires_grad_()
        loss = fn(a, t(y), t(v))
        loss.backward()
        assert loss.item() == pytest.approx(fn(t(x), t(y), t(v)).item())
        assert torch.isfinite(a.grad).all()
    with pytest.raises(ValueError):
        losses.bce_loss(t(x), t(y), reduction="avg")


def test_cls_normalizer_per_image() -> None:
    x, y, v = random_batch(5, shape=(3, 1, 4, 6))
    assert losses.cls_normalizer("bce", t(y), t(v)).tolist() == [
        float(v[b].sum()) for b in range(3)
    ]
    for name in ("focal", "sigmoid-focal"):
        assert losses.cls_normalizer(name, t(y), t(v)).tolist() == [
            float(((y[b] == 1) & v[b]).sum()) for b in range(3)
        ]
    # Pooled sum / pooled normaliser gives the batch "mean".
    s = losses.centernet_focal_loss(t(x), t(y), t(v), reduction="sum")
    n = losses.cls_normalizer("focal", t(y), t(v)).sum().clamp(min=1)
    assert (s / n).item() == pytest.approx(losses.centernet_focal_loss(t(x), t(y), t(v)).item())
    with pytest.raises(InputError):
        losses.cls_normalizer("mse", t(y), t(v))


def test_shape_mismatch_is_input_error() -> None:
    with pytest.raises(InputError, match="differ"):
        losses.bce_loss(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 4, 5))


# ---------------------------------------------------------------- offset L1


def test_offset_l1_masked_mean() -> None:
    rng = np.random.default_rng(0)
    pred = rng.random((2, 2, 5, 5))
    target = rng.random((2, 2, 5, 5))
    mask = rng.random((2, 1, 5, 5)) < 0.3
    target[np.broadcast_to(~mask, target.shape)] = np.nan  # never read
    m = np.broadcast_to(mask, pred.shape)
    expected = np.abs(pred - target)[m].mean()
    p = t(pred).requires_grad_()
    got = losses.offset_l1_loss(p, t(target), t(mask))
    got.backward()
    assert got.item() == pytest.approx(expected, rel=1e-12)
    assert torch.isfinite(p.grad).all()
    assert (p.grad.numpy()[~m] == 0).all()


def test_offset_l1_empty_mask_is_zero_with_grad() -> None:
    p = torch.rand(1, 2, 3, 3, requires_grad=True)
    loss = losses.offset_l1_loss(p, torch.rand(1, 2, 3, 3), torch.zeros(1, 1, 3, 3, dtype=bool))
    assert loss.item() == 0.0 and loss.requires_grad
    loss.backward()
    assert (p.grad == 0).all()


# ---------------------------------------------------------------- gradients


@pytest.mark.parametrize(
    "fn",
    [
        lambda x, y, v: losses.bce_loss(x, y, v, pos_weight=3.0),
        lambda x, y, v: losses.centernet_focal_loss(x, y, v),
        lambda x, y, v: losses.sigmoid_focal_loss(x, y, v),
        lambda x, y, v: losses.ohem_bce_loss(x, y, v, ratio=2.0),
    ],
    ids=["bce", "centernet", "sigmoid-focal", "ohem"],
)
def test_gradcheck(fn) -> None:
    x, y, v = random_batch(11, shape=(2, 1, 3, 4))
    xt = t(x).requires_grad_()
    assert torch.autograd.gradcheck(lambda a: fn(a, t(y), t(v)), (xt,))


def test_offset_l1_gradcheck() -> None:
    rng = np.random.default_rng(1)
    pred = t(rng.random((1, 2, 3, 3))).requires_grad_()
    target = t(rng.random((1, 2, 3, 3)) + 2.0)  # far from pred: |.| is smooth there
    mask = t(rng.random((1, 1, 3, 3)) < 0.5)
    assert torch.autograd.gradcheck(lambda a: losses.offset_l1_loss(a, target, mask), (pred,))


def test_gradient_of_bce_vs_closed_form() -> None:
    # d/dx of -[w y log p + (1-y) log(1-p)] = w y (p - 1) + (1 - y) p, divided by n_valid.
    x, y, v = random_batch(2)
    a = t(x).requires_grad_()
    losses.bce_loss(a, t(y), t(v), pos_weight=4.0).backward()
    p = _np_sig(x)
    expected = np.where(v, 4.0 * y * (p - 1) + (1 - y) * p, 0.0) / v.sum()
    np.testing.assert_allclose(a.grad.numpy(), expected, rtol=1e-10, atol=1e-14)


def test_large_logits_are_finite() -> None:
    x = torch.tensor([[[[80.0, -80.0, 0.0]]]], requires_grad=True)
    y = torch.tensor([[[[0.0, 1.0, 0.5]]]])
    for fn in (losses.bce_loss, losses.centernet_focal_loss, losses.sigmoid_focal_loss):
        loss = fn(x, y)
        loss.backward()
        assert torch.isfinite(loss) and torch.isfinite(x.grad).all()
        x.grad = None


# ---------------------------------------------------------------- ramp and dispatch


@given(
    progress=st.floats(0, 1),
    start=st.floats(0, 5),
    end=st.floats(0, 20),
    ramp=st.floats(0.01, 1),
    cap=st.floats(0, 20),
)
def test_loss_ramp_weight(progress, start, end, ramp, cap) -> None:
    w = losses.loss_ramp_weight(progress, start, end, ramp, cap)
    expected = min(cap, start + (end - start) * min(1.0, progress / ramp))
    assert w == pytest.approx(expected)


def test_loss_ramp_examples() -> None:
    assert losses.loss_ramp_weight(0.0) == 1.0
    assert losses.loss_ramp_weight(0.15) == pytest.approx(5.5)
    assert losses.loss_ramp_weight(0.9) == 10.0
    assert losses.loss_ramp_weight(0.9, end=50.0, cap=20.0) == 20.0
    assert losses.loss_ramp_weight(0.0, ramp=0.0) == 10.0


def test_classification_loss_dispatch() -> None:
    x, y, v = random_batch(7)
    X, Y, V = t(x), t(y), t(v)
    r = Recipe()
    assert losses.classification_loss(r, X, Y, V).item() == pytest.approx(ref_bce(x, y, v))
    r = Recipe(pos_weight=20.0)
    assert losses.classification_loss(r, X, Y, V).item() == pytest.approx(ref_bce(x, y, v, 20.0))
    r = Recipe(ohem=2.0)
    assert losses.classification_loss(r, X, Y, V).item() == pytest.approx(ref_ohem(x, y, v, 2.0)[0])
    r = apply_remedy(Recipe(), "focal-loss")
    assert losses.classification_loss(r, X, Y, V).item() == pytest.approx(ref_centernet(x, y, v))
    r = Recipe(loss="sigmoid-focal", sf_alpha=0.4, sf_gamma=1.0)
    got = losses.classification_loss(r, X, Y, V).item()
    assert got == pytest.approx(ref_sigmoid_focal(x, y, v, 0.4, 1.0))
    r = apply_remedy(Recipe(), "loss-ramp", {"start": 2.0, "end": 4.0, "ramp": 0.5, "cap": 3.0})
    assert losses.classification_loss(r, X, Y, V, progress=0.25).item() == pytest.approx(
        3.0 * ref_bce(x, y, v)
    )
    with pytest.raises(InputError, match="ohem"):
        losses.classification_loss(Recipe(loss="focal", ohem=3.0), X, Y, V)


def test_focal_pos_weight_scales_positive_term() -> None:
    x, y, v = random_batch(8, soft=False)
    base = losses.centernet_focal_loss(t(x), t(y), t(v), reduction="none").numpy()
    w = losses.centernet_focal_loss(t(x), t(y), t(v), reduction="none", pos_weight=5.0).numpy()
    pos = y == 1
    np.testing.assert_allclose(w[pos], 5 * base[pos])
    np.testing.assert_allclose(w[~pos], base[~pos])
