"""label_statistics against full rendered label maps, losses against dense search and autograd."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from convdiag.analyses.label_stats import (
    constant_loss,
    kernel_for,
    recommend,
    sigma_for,
)
from convdiag.diagnosis.labels import label_statistics
from convdiag.errors import InputError
from convdiag.targets.geometry import quantization_error
from convdiag.targets.labels import parse_schedule, render_heatmap

# --------------------------------------------------------------------------- references


def dense_constant_loss(y, loss, pos_weight=None, a=2.0, b=4.0, sfa=0.25, sfg=2.0):
    """min over a dense logit grid of the training loss of a constant prediction on labels y."""
    vals, counts = np.unique(np.asarray(y, np.float64), return_counts=True)
    coarse = np.linspace(-25, 8, 3301)[:, None]
    best = coarse[np.argmin(_loss_at(coarse, vals, counts, loss, pos_weight, a, b, sfa, sfg)), 0]
    fine = np.linspace(best - 0.01, best + 0.01, 4001)[:, None]
    return float(_loss_at(fine, vals, counts, loss, pos_weight, a, b, sfa, sfg).min())


def _loss_at(z, vals, counts, loss, pos_weight, a, b, sfa, sfg):
    p = 1 / (1 + np.exp(-z))
    lp, l1p = -np.logaddexp(0, -z), -np.logaddexp(0, z)
    n_pos = counts[vals == 1].sum()
    if loss == "bce":
        w = 1.0 if pos_weight is None else pos_weight
        per = -(w * vals * lp + (1 - vals) * l1p)
        tot = (per * counts).sum(1) / counts.sum()
    elif loss == "focal":
        per = np.where(vals == 1, -((1 - p) ** a) * lp, -((1 - vals) ** b) * p**a * l1p)
        tot = (per * counts).sum(1) / max(1, n_pos)
    else:
        per = -sfa * vals * (1 - p) ** sfg * lp - (1 - sfa) * (1 - vals) * p**sfg * l1p
        tot = (per * counts).sum(1) / max(1, n_pos)
    return tot


def autograd_shares(maps, prior):
    """Shares of |dL/dz| on positive cells, by autograd, on the explicit label maps."""
    y = torch.from_numpy(np.concatenate([m.ravel() for m in maps]).astype(np.float64))
    out = {}
    for name, p0 in (("bce", prior), ("bce_zero_bias", 0.5), ("focal", prior)):
        z = torch.full_like(y, math.log(p0 / (1 - p0)), requires_grad=True)
        if name == "focal":
            p = torch.sigmoid(z)
            pos = y == 1
            loss = torch.where(
                pos, -((1 - p) ** 2) * torch.log(p), -((1 - y) ** 4) * p**2 * torch.log(1 - p)
            ).sum()
            mask = pos
        else:
            loss = torch.nn.functional.binary_cross_entropy_with_logits(z, y, reduction="sum")
            mask = y > 0
        (g,) = torch.autograd.grad(loss, z)
        out[name] = float(g.abs()[mask].sum() / g.abs().sum())
    return out


def reference_stats(records, level, stride, kernel=None, sigma=1.0, trunc=0.1, radius=3.0):
    """Statistics from full label maps rendered image by image (plus one map per target)."""
    hard = [render_heatmap(p, s, level) for s, p in records]
    cells = sum(m.size for m in hard)
    pos = sum(int(m.sum()) for m in hard)
    collisions = 0
    inside = []
    for (h, w), p in records:
        gh, gw = math.ceil(h / stride), math.ceil(w / stride)
        cells_of = [(math.floor(y / stride), math.floor(x / stride)) for x, y in p]
        keep = [c for c in cells_of if 0 <= c[0] < gh and 0 <= c[1] < gw]
        cnt = Counter(keep)
        collisions += sum(v for v in cnt.values() if v > 1)
        inside += [pt for pt, c in zip(p, cells_of, strict=True) if c in cnt]
    q = quantization_error(np.array(inside).reshape(-1, 2), level)
    ref = {
        "cells": cells,
        "positive_cells": pos,
        "pos_fraction": pos / cells,
        "positives_per_image_max": max(int(m.sum()) for m in hard),
        "collisions": collisions,
        "targets": len(inside),
        "q": q,
        "bce": dense_constant_loss(np.concatenate([m.ravel() for m in hard]), "bce"),
        "focal": dense_constant_loss(np.concatenate([m.ravel() for m in hard]), "focal"),
        "shares": autograd_shares(hard, pos / cells) if 0 < pos < cells else None,
    }
    if kernel is None:
        return ref
    soft = [render_heatmap(p, s, level, kernel, sigma, trunc) for s, p in records]
    y = np.concatenate([m.ravel() for m in soft]).astype(np.float64)
    own, boxes = [], []
    for b, (s, p) in enumerate(records):
        for pt in p:
            single = render_heatmap(pt[None], s, level, kernel, sigma, trunc)
            if single.max() == 0:
                continue
            own.append(int((single > 0).sum()))
            rows, cols = np.nonzero(single)
            boxes.append((b, rows.min(), rows.max(), cols.min(), cols.max()))
    overlap = 0
    for i, (b, r0, r1, c0, c1) in enumerate(boxes):
        overlap += any(
            j != i and bb == b and r0 <= rr1 and rr0 <= r1 and c0 <= cc1 and cc0 <= c1
            for j, (bb, rr0, rr1, cc0, cc1) in enumerate(boxes)
        )
    ref["soft"] = {
        "positive_mass": y.sum(),
        "nonzero_cells": int((y > 0).sum()),
        "own_mean": np.mean(own),
        "own_min": min(own),
        "overlaps": overlap,
        "bce": dense_constant_loss(y, "bce"),
        "focal": dense_constant_loss(y, "focal"),
        "shares": autograd_shares(soft, y.mean()),
    }
    return ref


def dataset(rng, n_images, sizes, cluster):
    recs = []
    for _ in range(n_images):
        h, w = sizes[int(rng.integers(len(sizes)))]
        n = int(rng.integers(0, 6))
        pts = rng.uniform([0, 0], [w, h], (n, 2))
        if cluster and n > 1:  # crowd targets around the first one: collisions and overlaps
            pts[1:] = np.clip(pts[0] + rng.normal(0, cluster, (n - 1, 2)), 0, [w - 1e-6, h - 1e-6])
        recs.append(((h, w), pts))
    return recs


# --------------------------------------------------------------------------- statistics


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    kernel=st.integers(1, 6),
    sigma=st.floats(0.5, 2.0),
    trunc=st.sampled_from([0.0, 0.05, 0.1, 0.3]),
    level=st.sampled_from(["P1", "P2", "P3"]),
    cluster=st.sampled_from([0.0, 3.0, 10.0]),
)
def test_statistics_match_full_maps(seed, kernel, sigma, trunc, level, cluster):
    rng = np.random.default_rng(seed)
    recs = dataset(rng, 6, [(40, 56), (23, 31), (64, 64)], cluster)
    recs.append(((30, 30), np.array([[0.2, 0.3], [29.9, 29.9], [0.1, 29.0]])))  # corners
    stride = {"P1": 2, "P2": 4, "P3": 8}[level]
    got = label_statistics(recs, [level], kernel, sigma, trunc)["levels"][level]
    ref = reference_stats(recs, level, stride, kernel, sigma, trunc)
    assert got["stride"] == stride and got["images"] == len(recs)
    for k in ("cells", "positive_cells", "collisions", "targets"):
        assert got[k] == ref[k], k
    assert got["pos_fraction"] == pytest.approx(ref["pos_fraction"], rel=1e-12)
    assert got["neg_per_pos"] == pytest.approx(
        (ref["cells"] - ref["positive_cells"]) / ref["positive_cells"]
    )
    assert got["positives_per_image"]["max"] == ref["positives_per_image_max"]
    assert got["positives_per_image"]["mean"] == pytest.approx(ref["positive_cells"] / len(recs))
    q = got["quantization_px"]
    assert q["mean"] == pytest.approx(ref["q"].mean()) and q["max"] == pytest.approx(ref["q"].max())
    assert q["p95"] == pytest.approx(np.percentile(ref["q"], 95))
    assert got["constant_loss"]["bce"] == pytest.approx(ref["bce"], rel=1e-6)
    assert got["constant_loss"]["focal"] == pytest.approx(ref["focal"], rel=1e-6)
    for k in ("bce", "bce_zero_bias", "focal"):
        suffix = "" if k == "bce" else "_" + k.removeprefix("bce_")
        assert got["initial_pos_grad_share" + suffix] == pytest.approx(ref["shares"][k], rel=1e-6)
    soft, rs = got["soft"], ref["soft"]
    assert soft["positive_mass"] == pytest.approx(rs["positive_mass"], rel=1e-6)
    assert soft["nonzero_cells"] == rs["nonzero_cells"]
    assert soft["nonzero_cells_per_target"]["mean"] == pytest.approx(rs["own_mean"])
    assert soft["nonzero_cells_per_target"]["min"] == rs["own_min"]
    assert soft["overlaps"] == rs["overlaps"]
    assert soft["constant_loss"]["bce"] == pytest.approx(rs["bce"], rel=1e-5)
    assert soft["constant_loss"]["focal"] == pytest.approx(rs["focal"], rel=1e-5)
    for k in ("bce", "bce_zero_bias", "focal"):
        suffix = "" if k == "bce" else "_" + k.removeprefix("bce_")
        assert soft["initial_pos_grad_share" + suffix] == pytest.approx(rs["shares"][k], rel=1e-5)


def test_seed_numbers_on_p2():
    """1-5 targets on 480x640: P2 has 19,200 cells, positives ~1:4000 as in the seed."""
    rng = np.random.default_rng(0)
    recs = [
        ((480, 640), rng.uniform([0, 0], [640, 480], (int(rng.integers(1, 6)), 2)))
        for _ in range(200)
    ]
    out = label_statistics(recs, ["P2", "P4"])
    p2, p4 = out["levels"]["P2"], out["levels"]["P4"]
    assert p2["grid"] == [120, 160] and p2["cells"] == 200 * 19200
    assert 19200 / 5 <= p2["neg_per_pos"] + 1 <= 19200  # between 1:3840 and 1:19200
    assert p4["grid"] == [30, 40]
    assert p2["quantization_px"]["max"] <= 2 * math.sqrt(2) + 1e-9
    assert p4["quantization_px"]["p95_over_radius"] is True
    ids = {(f["id"], f["level"]) for f in out["findings"]}
    assert ("extreme-imbalance", "P2") in ids and ("label-quantization", "P4") in ids
    assert ("label-quantization", "P2") not in ids
    assert all(f["severity"] == "warning" for f in out["findings"])
    rec = out["recommendation"]
    assert rec["level"] == "P2" and rec["labels"] == "soft"
    assert rec["remedies"][0]["id"] == "soft-labels"
    assert out["levels"]["P2"]["soft"] is None


def test_collision_finding_and_level_choice():
    # pairs 1.5 px apart: never one P0 (pixel) cell, mostly one P3 cell
    rng = np.random.default_rng(1)
    recs = []
    for _ in range(50):
        a = rng.uniform(4, 60, 2)
        recs.append(((64, 64), np.stack([a, a + np.array([1.5, 0.0])])))
    out = label_statistics(recs, ["P0", "P3"], radius=3.0)
    p0, p3 = out["levels"]["P0"], out["levels"]["P3"]
    assert p0["collisions"] < p3["collisions"]
    assert p3["collision_share"] > 0.5
    col = [f for f in out["findings"] if f["id"] == "label-collision"]
    assert [f["level"] for f in col] == ["P3"] and col[0]["remedies"][0]["params"] == {
        "level": "P0"
    }
    assert p0["collisions"] == 0 and out["recommendation"]["level"] == "P0"


def test_schedule_phases_and_first_phase():
    recs = [((64, 64), np.array([[10.0, 10.0], [40.0, 41.0]]))]
    out = label_statistics(recs, ["P2"], schedule=parse_schedule("dynamic"))
    soft = out["levels"]["P2"]["soft"]
    assert [(p["end"], p["kernel"], p["sigma"]) for p in soft["phases"]] == [
        (0.3, 5, 1.2), (0.7, 4, 1.0), (1.0, 3, 0.8)
    ]  # fmt: skip
    assert soft["kernel"] == 5 and soft["schedule"] == "0.3:5:1.2,0.7:4:1,1:3:0.8"
    masses = [p["positive_mass"] for p in soft["phases"]]
    assert masses[0] > masses[1] > masses[2] > 2  # wide windows carry more mass
    assert out["settings"]["labels"] == "soft"


def test_empty_and_bad_inputs():
    out = label_statistics([((32, 32), np.zeros((0, 2)))], ["P2"], kernel=3)
    p2 = out["levels"]["P2"]
    assert p2["positive_cells"] == 0 and p2["neg_per_pos"] is None
    assert p2["constant_loss"] == {"bce": 0.0, "focal": 0.0}
    assert p2["quantization_px"]["p95"] is None and p2["soft"]["positive_mass"] == 0
    with pytest.raises(InputError, match="no images"):
        label_statistics([], ["P2"])
    with pytest.raises(InputError, match="level"):
        label_statistics([((8, 8), np.zeros((0, 2)))], ["P12"])
    with pytest.raises(InputError, match="non-finite"):
        label_statistics([((8, 8), np.array([[np.inf, 1.0]]))], ["P2"])
    with pytest.raises(InputError, match="--kernel"):
        label_statistics([((8, 8), np.zeros((0, 2)))], ["P2"], kernel=0)


def test_points_outside_are_counted_not_labelled():
    out = label_statistics([((16, 16), np.array([[3.0, 3.0], [17.0, 2.0], [-1.0, 5.0]]))], ["P2"])
    p2 = out["levels"]["P2"]
    assert p2["targets"] == 1 and p2["targets_outside"] == 2


# --------------------------------------------------------------------------- losses


@pytest.mark.parametrize("loss", ["bce", "focal", "sigmoid-focal"])
@pytest.mark.parametrize("pos_weight", [None, 30.0])
def test_constant_loss_matches_dense_search(loss, pos_weight):
    rng = np.random.default_rng(3)
    y = np.zeros(5000)
    y[:6] = 1.0
    y[6:40] = rng.choice([0.2, 0.5, 0.8], 34)
    n_pos = int((y == 1).sum())
    got = constant_loss(loss, y.size, n_pos, y.sum(), ((1 - y[y < 1]) ** 4).sum(), pos_weight)
    want = dense_constant_loss(y, loss, pos_weight if loss == "bce" else None)
    assert got == pytest.approx(want, rel=1e-6)


def test_constant_bce_closed_form_is_the_entropy():
    pf = 1 / 4000
    want = -(pf * math.log(pf) + (1 - pf) * math.log(1 - pf))
    assert constant_loss("bce", 4000, 1, 1, 3999) == pytest.approx(want, rel=1e-12)
    with pytest.raises(ValueError, match="loss"):
        constant_loss("hinge", 10, 1, 1, 9)


# --------------------------------------------------------------------------- recommendation


def test_sigma_and_kernel_rules():
    assert sigma_for(4, 2.5) == 0.8  # 0.625 clamped up
    assert sigma_for(4, 4.0) == 1.0
    assert sigma_for(2, 10.0) == 1.2
    assert kernel_for(0.8, 0.1) == 3  # exp(-4 / 1.28) = 0.044 < 0.1
    assert kernel_for(1.0, 0.1) == 5  # exp(-2) = 0.135 >= 0.1
    assert kernel_for(1.2, 0.1) == 5
    assert kernel_for(0.8, 0.5) == 3 and kernel_for(1.0, 0.0) == 5
    for sigma in np.linspace(0.8, 1.2, 9):
        k = kernel_for(float(sigma), 0.1)
        assert math.exp(-((k // 2) ** 2) / (2 * sigma**2)) >= 0.1 or k == 3
        assert math.exp(-((k // 2 + 1) ** 2) / (2 * sigma**2)) < 0.1 or k == 5


def _level(stride, p95, coll, npp):
    return {
        "stride": stride,
        "quantization_px": {"p95": p95},
        "collision_share": coll,
        "neg_per_pos": npp,
    }


def test_recommend_picks_finest_good_level():
    base = {"settings": {"radius": 3.0, "trunc": 0.1, "target_radius_px": None}}
    stats = {
        **base,
        "levels": {
            "P4": _level(16, 9.9, 0.0, 400.0),
            "P2": _level(4, 2.4, 0.02, 5000.0),  # collisions 2%: rejected
            "P3": _level(8, 2.9, 0.0, 1500.0),
        },
    }
    rec = recommend(stats)
    assert rec["level"] == "P3" and rec["labels"] == "soft"
    assert "P2: collisions 2.00%" in rec["why"]["level"]
    assert rec["sigma"] == 0.8 and rec["kernel"] == 3
    stats["levels"]["P3"]["neg_per_pos"] = 900.0
    assert recommend(stats)["labels"] == "hard" and recommend(stats)["remedies"] == []
    # nothing under the radius: finest level with few collisions, and say so
    stats["levels"]["P3"]["quantization_px"]["p95"] = 4.0
    rec = recommend(stats)
    assert rec["level"] == "P3" and "no level keeps" in rec["why"]["level"]
    stats["settings"]["target_radius_px"] = 9.0
    assert recommend(stats)["sigma"] == 1.1  # 9 / 8 = 1.125 -> 1.1 (to 0.05: 1.1 or 1.15)
