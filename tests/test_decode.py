"""Decoding, matching and detection metrics against brute-force references."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from convdiag.errors import InputError
from convdiag.targets.decode import THRESHOLDS, DetectionMetrics, decode, match


def logit(p: float) -> float:
    return math.log(p / (1 - p))


# ---------------------------------------------------------------- decode


def ref_decode(scores: np.ndarray, reg, stride: int, size, threshold: float, topk: int):
    """Brute force: a cell of the own grid is a peak if no own-grid neighbour is larger."""
    gh, gw = math.ceil(size[0] / stride), math.ceil(size[1] / stride)
    found = []
    for i in range(gh):
        for j in range(gw):
            s = scores[i, j]
            nb = scores[max(0, i - 1) : min(gh, i + 2), max(0, j - 1) : min(gw, j + 2)]
            if s >= nb.max() and s >= threshold:
                dx, dy = (0.5, 0.5) if reg is None else (reg[0, i, j], reg[1, i, j])
                found.append((-s, i * gw + j, ((j + dx) * stride, (i + dy) * stride), s))
    found.sort(key=lambda f: (f[0], f[1]))
    found = found[:topk]
    pts = np.array([f[2] for f in found], dtype=np.float64).reshape(-1, 2)
    return pts, np.array([f[3] for f in found])


def test_decode_point_convention() -> None:
    logits = torch.full((1, 1, 4, 5), -8.0)
    logits[0, 0, 2, 3] = 3.0
    reg = torch.zeros(1, 2, 4, 5)
    reg[0, :, 2, 3] = torch.tensor([0.25, 0.75])
    ((pts, scores),) = decode(logits, reg, 4, [(16, 20)], threshold=0.5)
    np.testing.assert_allclose(pts, [[(3 + 0.25) * 4, (2 + 0.75) * 4]])
    assert scores[0] == pytest.approx(1 / (1 + math.exp(-3.0)), rel=1e-6)
    ((pts, _),) = decode(logits, None, 4, [(16, 20)], threshold=0.5)
    np.testing.assert_allclose(pts, [[3.5 * 4, 2.5 * 4]])


@given(seed=st.integers(0, 100_000), stride=st.sampled_from([1, 4, 16]), topk=st.integers(1, 30))
@settings(max_examples=40, deadline=None)
def test_decode_matches_brute_force(seed: int, stride: int, topk: int) -> None:
    rng = np.random.default_rng(seed)
    b, h, w = 3, 7, 9
    # Coarse values make plateaus (equal neighbours) common.
    logits = rng.integers(-4, 4, size=(b, 1, h, w)).astype(np.float32)
    reg = rng.random((b, 2, h, w)).astype(np.float32)
    sizes = [(h * stride, w * stride), ((h - 2) * stride - 1, w * stride), (5 * stride, 3)]
    thr = float(rng.choice([0.0, 0.3, 0.7]))
    got = decode(torch.from_numpy(logits), torch.from_numpy(reg), stride, sizes, thr, topk)
    for n in range(b):
        scores = torch.sigmoid(torch.from_numpy(logits[n, 0])).numpy().astype(np.float64)
        pts, sc = ref_decode(scores, reg[n].astype(np.float64), stride, sizes[n], thr, topk)
        np.testing.assert_allclose(got[n][0], pts, rtol=1e-6)
        np.testing.assert_array_equal(got[n][1], sc)


def test_decode_padding_neither_counts_nor_suppresses() -> None:
    logits = torch.full((1, 1, 4, 4), -5.0)
    logits[0, 0, 1, 1] = 1.0  # inside a 2x2 own grid, next to a larger padded cell
    logits[0, 0, 2, 2] = 4.0
    ((pts, scores),) = decode(logits, None, 4, [(8, 8)])
    np.testing.assert_allclose(pts, [[6.0, 6.0]])
    assert len(scores) == 1


def test_decode_nan_is_never_a_peak() -> None:
    logits = torch.full((1, 1, 3, 3), -5.0)
    logits[0, 0, 0, 0] = float("nan")
    logits[0, 0, 2, 2] = 2.0
    ((pts, _),) = decode(logits, None, 1, [(3, 3)], threshold=0.5)
    np.testing.assert_allclose(pts, [[2.5, 2.5]])


def test_decode_bad_shapes() -> None:
    with pytest.raises(InputError):
        decode(torch.zeros(1, 2, 4, 4), None, 4, [(16, 16)])
    with pytest.raises(InputError):
        decode(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 4, 4), 4, [(16, 16)])
    with pytest.raises(InputError):
        decode(torch.zeros(2, 1, 4, 4), None, 4, [(16, 16)])


# ---------------------------------------------------------------- match


def brute_match(pred: np.ndarray, gt: np.ndarray, r: float) -> tuple[int, float]:
    """(max #pairs, least total distance among those) by enumerating all matchings."""
    d = np.hypot(pred[:, None, 0] - gt[None, :, 0], pred[:, None, 1] - gt[None, :, 1])
    best = (0, 0.0)
    k, n = len(pred), len(gt)
    for m in range(1, min(k, n) + 1):
        for ps in itertools.combinations(range(k), m):
            for gs in itertools.permutations(range(n), m):
                if all(d[p, g] < r for p, g in zip(ps, gs, strict=True)):
                    tot = sum(d[p, g] for p, g in zip(ps, gs, strict=True))
                    if m > best[0] or (m == best[0] and tot < best[1]):
                        best = (m, tot)
    return best


@given(
    pred=st.lists(st.tuples(st.integers(0, 12), st.integers(0, 12)), max_size=5),
    gt=st.lists(st.tuples(st.integers(0, 12), st.integers(0, 12)), max_size=4),
    r=st.sampled_from([1.5, 3.0, 5.0]),
)
@settings(max_examples=150, deadline=None)
def test_match_is_max_cardinality_min_distance(pred, gt, r) -> None:
    p = np.array(pred, np.float64).reshape(-1, 2) * 0.7
    g = np.array(gt, np.float64).reshape(-1, 2) * 0.7
    pi, gi, d = match(p, g, r)
    assert len(set(pi.tolist())) == len(pi) and len(set(gi.tolist())) == len(gi)
    assert (d < r).all()
    np.testing.assert_allclose(d, np.hypot(*(p[pi] - g[gi]).T))
    m, total = brute_match(p, g, r)
    assert len(pi) == m
    assert d.sum() == pytest.approx(total, abs=1e-9)


def test_match_prefers_cardinality_over_distance() -> None:
    # Greedy nearest would pair p0-g0 (0.1) and leave p1 unmatched; two pairs are possible.
    pred = np.array([[0.0, 0.0], [-2.5, 0.0]])
    gt = np.array([[0.1, 0.0], [2.8, 0.0]])
    pi, gi, _ = match(pred, gt, 3.0)
    assert sorted(zip(pi.tolist(), gi.tolist(), strict=True)) == [(0, 1), (1, 0)]


def test_match_radius_is_strict_and_nan_never_matches() -> None:
    assert len(match(np.array([[3.0, 0.0]]), np.array([[0.0, 0.0]]), 3.0)[0]) == 0
    assert len(match(np.array([[np.nan, 0.0]]), np.array([[0.0, 0.0]]), 3.0)[0]) == 0
    assert len(match(np.zeros((0, 2)), np.array([[0.0, 0.0]]))[0]) == 0


# ---------------------------------------------------------------- metrics


def ref_metrics(preds, gts, sizes, t: float, r: float):
    """Pooled TP/FP/FN and loc error at one threshold, with the brute-force matcher."""
    tp = fp = fn = 0
    dist = 0.0
    for (pts, sc), g, _ in zip(preds, gts, sizes, strict=True):
        keep = sc >= t
        m, tot = brute_match(pts[keep], g, r)
        tp += m
        fp += int(keep.sum()) - m
        fn += len(g) - m
        dist += tot
    return tp, fp, fn, dist


def random_detections(seed: int, n_img: int = 6):
    rng = np.random.default_rng(seed)
    preds, gts, sizes = [], [], []
    for _ in range(n_img):
        n_gt = int(rng.integers(0, 4))
        g = rng.uniform(0, 30, size=(n_gt, 2))
        near = g[rng.integers(0, max(1, n_gt), size=3)] + rng.normal(0, 1.5, (3, 2)) if n_gt else []
        far = rng.uniform(0, 30, size=(int(rng.integers(0, 3)), 2))
        pts = np.concatenate([np.reshape(near, (-1, 2)), far]) if len(far) or n_gt else far
        sc = rng.random(len(pts))
        preds.append((pts.reshape(-1, 2), sc))
        gts.append(g)
        sizes.append((int(rng.integers(20, 40)), int(rng.integers(20, 40))))
    return preds, gts, sizes


@pytest.mark.parametrize("seed", range(6))
def test_metrics_match_reference(seed: int) -> None:
    preds, gts, sizes = random_detections(seed)
    m = DetectionMetrics(radius=3.0)
    m.update(preds, gts, sizes)
    c = m.compute()
    cur = c["curves"]
    assert cur["thresholds"] == pytest.approx(THRESHOLDS.tolist())
    pixels = sum(h * w for h, w in sizes)
    for ti, t in enumerate(cur["thresholds"]):
        tp, fp, fn, dist = ref_metrics(preds, gts, sizes, t, 3.0)
        assert (cur["tp"][ti], cur["fp"][ti], cur["fn"][ti]) == (tp, fp, fn)
        prec = tp / (tp + fp) if tp + fp else (0.0 if tp + fn else 1.0)
        rec = tp / (tp + fn) if tp + fn else 1.0
        f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
        assert cur["precision"][ti] == pytest.approx(prec)
        assert cur["recall"][ti] == pytest.approx(rec)
        assert cur["f1"][ti] == pytest.approx(f1)
        assert cur["fp_per_image"][ti] == pytest.approx(fp / len(sizes))
        assert cur["fp_per_mpix"][ti] == pytest.approx(fp / pixels * 1e6)
        if tp:
            assert cur["loc_error_px"][ti] == pytest.approx(dist / tp)
        else:
            assert math.isnan(cur["loc_error_px"][ti])
    i05 = cur["thresholds"].index(0.5)
    assert c["f1"] == c["f1_at_0.5"] == cur["f1"][i05]
    assert c["precision"] == cur["precision"][i05]
    assert c["best_f1"] == max(cur["f1"])
    assert c["best_threshold"] == cur["thresholds"][cur["f1"].index(max(cur["f1"]))]
    assert c["images"] == len(sizes) and c["targets"] == sum(len(g) for g in gts)
    hist = c["histograms"]
    n_pred = sum(len(p[1]) for p in preds)
    assert sum(hist["tp_scores"]) + sum(hist["fp_scores"]) == n_pred
    assert sum(hist["tp_scores"]) == ref_metrics(preds, gts, sizes, 0.0, 3.0)[0]
    assert sum(hist["fp_per_image_counts"]) == len(sizes)
    assert sum(hist["fp_distance"]) == c["fp"]
    assert hist["fp_duplicate"] + hist["fp_near_miss"] + hist["fp_background"] == c["fp"]


def test_empty_cases() -> None:
    m = DetectionMetrics()
    m.update([(np.zeros((0, 2)), np.zeros(0))], [np.zeros((0, 2))], [(10, 10)])
    c = m.compute()
    assert (c["precision"], c["recall"], c["f1"]) == (1.0, 1.0, 1.0)
    assert math.isnan(c["loc_error_px"])
    m.update([(np.zeros((0, 2)), np.zeros(0))], [np.array([[1.0, 1.0]])], [(10, 10)])
    c = m.compute()
    assert (c["precision"], c["recall"], c["f1"]) == (0.0, 0.0, 0.0)


def test_fp_distance_histogram() -> None:
    m = DetectionMetrics(radius=3.0)
    pts = np.array([[10.0, 10.0], [11.0, 10.0], [14.5, 10.0], [30.0, 30.0]])
    m.update([(pts, np.array([0.9, 0.8, 0.7, 0.6]))], [np.array([[10.0, 10.0]])], [(40, 40)])
    m.update([(np.array([[5.0, 5.0]]), np.array([0.9]))], [np.zeros((0, 2))], [(40, 40)])
    h = m.compute()["histograms"]
    assert (h["fp_duplicate"], h["fp_near_miss"], h["fp_background"]) == (1, 1, 2)
    assert h["fp_distance"][-1] == 1  # the image without targets
    assert h["fp_per_image_counts"][3] == 1 and h["fp_per_image_counts"][1] == 1


def test_batch_invariance_and_merge() -> None:
    rng = np.random.default_rng(0)
    n, h, w, s = 32, 12, 16, 4
    logits = torch.from_numpy(rng.normal(-3, 2, size=(n, 1, h, w)).astype(np.float32))
    reg = torch.from_numpy(rng.random((n, 2, h, w)).astype(np.float32))
    sizes = [(int(rng.integers(20, h * s + 1)), int(rng.integers(20, w * s + 1))) for _ in range(n)]
    gts = [rng.uniform(0, 40, size=(int(rng.integers(0, 5)), 2)) for _ in range(n)]
    whole = DetectionMetrics()
    whole.update(decode(logits, reg, s, sizes), gts, sizes)
    single = DetectionMetrics()
    for i in range(n):
        sl = slice(i, i + 1)
        gh, gw = math.ceil(sizes[i][0] / s), math.ceil(sizes[i][1] / s)
        # A batch of one is padded only to its own grid: same result as in the big batch.
        single.update(decode(logits[sl, :, :gh, :gw], reg[sl, :, :gh, :gw], s, sizes[sl]),
                      gts[sl], sizes[sl])  # fmt: skip
    a, b = whole.compute(), single.compute()
    assert a["tp"] > 0 and a["fp"] > 0
    assert json.dumps(a) == json.dumps(b)  # identical, NaN included
    parts = [DetectionMetrics() for _ in range(3)]
    for i in range(n):
        parts[i % 3].update(decode(logits[i : i + 1], reg[i : i + 1], s, sizes[i : i + 1]),
                            gts[i : i + 1], sizes[i : i + 1])  # fmt: skip
    parts[0].merge(parts[1])
    summed = {k: v + parts[2].state()[k] for k, v in parts[0].state().items()}
    loaded = DetectionMetrics()
    loaded.load_state(summed)
    c = loaded.compute()
    assert c["tp"] == a["tp"] and c["fp"] == a["fp"] and c["curves"]["fn"] == a["curves"]["fn"]
    assert c["loc_error_px"] == pytest.approx(a["loc_error_px"], nan_ok=True)
    with pytest.raises(ValueError):
        parts[0].merge(DetectionMetrics(radius=2.0))


def test_custom_thresholds_always_include_half() -> None:
    m = DetectionMetrics(thresholds=[0.3, 0.7])
    assert m.compute()["thresholds"] == [0.3, 0.5, 0.7]


def test_summary_keys() -> None:
    preds, gts, sizes = random_detections(1)
    m = DetectionMetrics()
    m.update(preds, gts, sizes)
    s = m.summary()
    assert set(s) == {"precision", "recall", "f1", "fp_per_image", "fp_per_mpix",
                      "loc_error_px", "best_f1", "best_threshold", "images", "targets"}  # fmt: skip
    assert all(isinstance(v, int | float) for v in s.values())
