"""Label rendering and schedules against a short independent numpy reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from convdiag.errors import InputError
from convdiag.targets.labels import render_batch, render_heatmap, soft_kernel_weights
from convdiag.targets.schedules import DYNAMIC, Schedule, parse_schedule


def reference_heatmap(points, size, stride, kernel=None, sigma=1.0, trunc=0.1):
    """Cell by cell: max over targets of the truncated Gaussian if the cell is in its window."""
    h, w = math.ceil(size[0] / stride), math.ceil(size[1] / stride)
    out = np.zeros((h, w), dtype=np.float64)
    for x, y in points:
        j, i = math.floor(x / stride), math.floor(y / stride)
        if not (0 <= i < h and 0 <= j < w):
            continue
        if kernel is None:
            out[i, j] = 1.0
            continue

        def span(cell, frac):
            if kernel % 2 == 1:
                return range(cell - kernel // 2, cell + kernel // 2 + 1)
            edge = cell + 1 if frac >= 0.5 else cell  # index of the first cell after the edge
            return range(edge - kernel // 2, edge + kernel // 2)

        for r in span(i, y / stride - i):
            for c in span(j, x / stride - j):
                if 0 <= r < h and 0 <= c < w:
                    v = math.exp(-((r - i) ** 2 + (c - j) ** 2) / (2 * sigma**2))
                    if v >= trunc:
                        out[r, c] = max(out[r, c], v)
    return out.astype(np.float32)


def seed_gaussian(size, sigma):
    """The seed note's generate_gaussian_weights (odd sizes), vectorised."""
    c = size // 2
    d = np.arange(size) - c
    wts = np.exp(-(d[:, None] ** 2 + d[None, :] ** 2) / (2 * sigma * sigma))
    wts[wts < 0.1] = 0
    return wts


def test_hard_labels_one_per_target_cell():
    pts = np.array([[1.0, 1.0], [3.9, 3.9], [5.0, 9.0], [639.9, 479.9]])
    y = render_heatmap(pts, (480, 640), "P2")
    assert y.shape == (120, 160) and y.dtype == np.float32
    assert y.sum() == 3  # the first two share cell (0, 0)
    assert y[0, 0] == 1 and y[2, 1] == 1 and y[119, 159] == 1


def test_grid_rounds_up_and_outside_points_are_dropped():
    pts = np.array([[-0.5, 2.0], [12.0, 9.5], [9.9, 2.0], [3.0, -0.1]])
    y = render_heatmap(pts, (10, 10), "P2", kernel=3)
    assert y.shape == (3, 3)
    assert y.max() == 1.0 and (y == 1.0).sum() == 1  # only (9.9, 2.0) is inside
    assert y[0, 2] == 1.0


@pytest.mark.parametrize("kernel", [1, 2, 3, 4, 5, 6])
@pytest.mark.parametrize("sigma", [0.8, 1.0, 1.2, 2.5])
def test_soft_matches_reference_borders_and_overlaps(kernel, sigma):
    rng = np.random.default_rng(kernel * 10 + int(sigma * 10))
    # corners, borders, two overlapping targets, one shared cell, offsets on both sides of 0.5
    pts = np.array(
        [[0.1, 0.2], [63.9, 47.9], [0.5, 30.0], [30.0, 47.0], [20.0, 20.0], [26.5, 22.0],
         [41.0, 9.0], [41.5, 9.5], [14.0, 34.0], [13.9, 33.9]]
    )  # fmt: skip
    pts = np.concatenate([pts, rng.uniform([0, 0], [64, 48], (6, 2))])
    for level, stride in (("P2", 4), ("P3", 8)):
        got = render_heatmap(pts, (48, 64), level, kernel=kernel, sigma=sigma, trunc=0.1)
        want = reference_heatmap(pts, (48, 64), stride, kernel, sigma, 0.1)
        np.testing.assert_array_equal(got, want)


@settings(max_examples=60, deadline=None)
@given(
    h=st.integers(1, 60),
    w=st.integers(1, 60),
    n=st.integers(0, 8),
    kernel=st.integers(1, 7),
    sigma=st.floats(0.3, 3.0),
    trunc=st.floats(0.0, 1.0),
    level=st.sampled_from([1, 2, 4, 8, "P2", "p3"]),
    seed=st.integers(0, 2**31 - 1),
)
def test_soft_matches_reference_random(h, w, n, kernel, sigma, trunc, level, seed):
    rng = np.random.default_rng(seed)
    pts = rng.uniform([0, 0], [w, h], (n, 2))
    if n and seed % 3 == 0:  # land targets on exact cell edges and half-cell offsets
        pts = np.floor(pts) + rng.choice([0.0, 0.5], pts.shape)
        pts = np.minimum(pts, [w - 1e-9, h - 1e-9])
    stride = {"P2": 4, "p3": 8}.get(level, level)  # type: ignore[call-overload]
    got = render_heatmap(pts, (h, w), level, kernel=kernel, sigma=sigma, trunc=trunc)
    np.testing.assert_array_equal(got, reference_heatmap(pts, (h, w), stride, kernel, sigma, trunc))
    np.testing.assert_array_equal(
        render_heatmap(pts, (h, w), level), reference_heatmap(pts, (h, w), stride)
    )


def test_target_cell_is_exactly_one_and_even_window_side():
    # offset 0.75 along x -> 4-window spans j-1..j+2; offset 0.25 -> j-2..j+1
    right = render_heatmap(np.array([[4 * 10 + 3.0, 4 * 10 + 1.0]]), (80, 80), 4, 4, 1.0, 0.0)
    assert right[10, 10] == 1.0
    assert np.nonzero(right.any(axis=0))[0].tolist() == [9, 10, 11, 12]  # columns
    assert np.nonzero(right.any(axis=1))[0].tolist() == [8, 9, 10, 11]  # rows (dy=0.25)


@pytest.mark.parametrize(("k", "sigma"), [(3, 0.8), (3, 1.0), (5, 1.2), (5, 1.0), (7, 2.0)])
def test_odd_kernel_matches_seed_function(k, sigma):
    np.testing.assert_allclose(
        soft_kernel_weights((0.3, 0.9), k, sigma, 0.1), seed_gaussian(k, sigma)
    )


def test_even_kernel_weights_shift_with_offset():
    left = soft_kernel_weights((0.2, 0.2), 4, 1.0, 0.0)
    right = soft_kernel_weights((0.7, 0.7), 4, 1.0, 0.0)
    assert left[2, 2] == 1.0 and right[1, 1] == 1.0
    # left covers displacements -2..1, right -1..2: mirror images of each other
    np.testing.assert_array_equal(right, left[::-1, ::-1])
    assert left[0, 0] == pytest.approx(math.exp(-8 / 2))


def test_bad_inputs():
    with pytest.raises(InputError, match="points"):
        render_heatmap(np.zeros((3, 3)), (10, 10), "P2")
    with pytest.raises(InputError, match="non-finite"):
        render_heatmap(np.array([[np.nan, 1.0]]), (10, 10), "P2")
    with pytest.raises(InputError, match="--kernel"):
        render_heatmap(np.zeros((1, 2)), (10, 10), "P2", kernel=0)
    with pytest.raises(InputError, match="--sigma"):
        render_heatmap(np.zeros((1, 2)), (10, 10), "P2", kernel=3, sigma=-1.0)
    with pytest.raises(InputError, match="level"):
        render_heatmap(np.zeros((1, 2)), (10, 10), "P9")


# --------------------------------------------------------------------------- batches


@settings(max_examples=40, deadline=None)
@given(
    sizes=st.lists(st.tuples(st.integers(1, 50), st.integers(1, 50)), min_size=1, max_size=5),
    kernel=st.sampled_from([None, 1, 2, 3, 4, 5]),
    sigma=st.floats(0.5, 2.0),
    seed=st.integers(0, 2**31 - 1),
)
def test_batch_equals_per_image(sizes, kernel, sigma, seed):
    rng = np.random.default_rng(seed)
    pts = [rng.uniform([-2, -2], [w + 2, h + 2], (int(rng.integers(0, 6)), 2)) for h, w in sizes]
    gh = max(math.ceil(h / 4) for h, _ in sizes) + int(rng.integers(0, 3))
    gw = max(math.ceil(w / 4) for _, w in sizes) + int(rng.integers(0, 3))
    as_tensor = [torch.from_numpy(p) if i % 2 else p for i, p in enumerate(pts)]
    lb = render_batch(as_tensor, sizes, (gh, gw), "P2", kernel, sigma, 0.1)
    assert lb.heatmap.shape == (len(sizes), 1, gh, gw) and lb.heatmap.dtype == torch.float32
    assert lb.offset.shape == (len(sizes), 2, gh, gw)
    for b, (h, w) in enumerate(sizes):
        hh, ww = math.ceil(h / 4), math.ceil(w / 4)
        single = reference_heatmap(pts[b], (h, w), 4, kernel, sigma, 0.1)
        heat = lb.heatmap[b, 0].numpy()
        np.testing.assert_array_equal(heat[:hh, :ww], single)
        assert heat[hh:].sum() == 0 and heat[:, ww:].sum() == 0
        valid = np.zeros((gh, gw), bool)
        valid[:hh, :ww] = True
        np.testing.assert_array_equal(lb.valid[b, 0].numpy(), valid)
        np.testing.assert_array_equal(
            lb.offset_mask[b, 0].numpy()[:hh, :ww], reference_heatmap(pts[b], (h, w), 4) == 1
        )


def test_batch_offsets_nearest_to_centre_then_first():
    # cell (1, 2) at stride 4 holds three targets; (10.0, 6.0) is nearest the centre (10, 6)
    pts = [np.array([[8.5, 4.5], [10.0, 6.0], [11.0, 7.0], [30.2, 21.0]]), np.zeros((0, 2))]
    lb = render_batch(pts, [(24, 32), (24, 32)], (6, 8), "P2")
    off = lb.offset[0].numpy()
    assert off[:, 1, 2].tolist() == [0.5, 0.5]
    np.testing.assert_allclose(off[:, 5, 7], [30.2 / 4 - 7, 21.0 / 4 - 5], rtol=1e-6)
    assert int(lb.offset_mask.sum()) == 2 and float(lb.offset[1].abs().sum()) == 0
    # exact tie: two targets mirrored about the centre -> the first one wins
    tie = render_batch([np.array([[9.0, 5.0], [11.0, 7.0]])], [(8, 16)], (2, 4), "P2")
    assert tie.offset[0, :, 1, 2].tolist() == [0.25, 0.25]
    swapped = render_batch([np.array([[11.0, 7.0], [9.0, 5.0]])], [(8, 16)], (2, 4), "P2")
    assert swapped.offset[0, :, 1, 2].tolist() == [0.75, 0.75]


def test_batch_grid_too_small():
    with pytest.raises(ValueError, match="grid"):
        render_batch([np.zeros((0, 2))], [(64, 64)], (8, 8), "P2")


# --------------------------------------------------------------------------- schedules


def test_dynamic_schedule_phases():
    s = parse_schedule("dynamic")
    assert s == DYNAMIC
    assert [s.at(p) for p in (0.0, 0.29, 0.3, 0.69, 0.7, 0.99, 1.0, 1.5)] == [
        (5, 1.2), (5, 1.2), (4, 1.0), (4, 1.0), (3, 0.8), (3, 0.8), (3, 0.8), (3, 0.8)
    ]  # fmt: skip


@settings(max_examples=50, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(1, 9), st.floats(0.05, 5.0, allow_nan=False)), min_size=1, max_size=5
    ),
    st.data(),
)
def test_schedule_round_trip(ks, data):
    # phase ends on a 1e-3 grid: narrower phases fall below float resolution at the midpoint
    ends = sorted(
        {n / 1000 for n in data.draw(st.lists(st.integers(10, 990), min_size=len(ks),
                                              max_size=len(ks)))}
    )  # fmt: skip
    ends = [*ends[: len(ks) - 1], 1.0]
    sched = Schedule([(e, k, s) for e, (k, s) in zip(ends, ks, strict=False)])
    again = parse_schedule(str(sched))
    assert again == sched
    prev = 0.0
    for e, k, s in sched.phases:  # inside [previous end, end) the phase applies
        assert again.at(prev + (e - prev) / 2) == (k, s)
        assert again.at(prev) == (k, s)
        prev = e


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "empty"),
        ("fast", "not END:K:SIGMA"),
        ("0.5:3:1.0", "end at 1.0"),
        ("0.5:3:1.0,0.4:3:1.0,1:3:1", "increase"),
        ("0.5:0:1.0,1:3:1", "kernel"),
        ("0.5:3:0,1:3:1", "sigma"),
        ("1.5:3:1", "not in"),
        ("0.5:3.5:1,1:3:1", "not END:K:SIGMA"),
    ],
)
def test_bad_schedules(text, problem):
    with pytest.raises(InputError, match="--schedule") as e:
        parse_schedule(text)
    assert problem in str(e.value) and "\n" not in str(e.value)


def test_custom_schedule_from_issue():
    s = parse_schedule(" 0.3:5:1.2, 0.7:4:1.0 ,1.0:3:0.8")
    assert s == DYNAMIC and str(s) == "0.3:5:1.2,0.7:4:1,1:3:0.8"
