"""convdiag.targets.geometry: strides, grids, point <-> cell round trips (DESIGN.md "Levels")."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from convdiag.errors import InputError
from convdiag.targets.geometry import (
    cell_to_point,
    grid_size,
    level_name,
    offset_targets,
    parse_levels,
    parse_size,
    point_to_cell,
    quantization_error,
    stride_of,
)

coords = st.floats(0.0, 5000.0, allow_nan=False, allow_infinity=False)
points_st = arrays(np.float64, st.tuples(st.integers(0, 20), st.just(2)), elements=coords)
levels_st = st.sampled_from(["P0", "P1", "P2", "p3", "P4", "P5", "P6", 1, 2, 4, 8, 16, 32, 64])


@pytest.mark.parametrize(
    ("level", "stride"),
    [
        ("P2", 4),
        ("p2", 4),
        (4, 4),
        ("4", 4),
        (" P3 ", 8),
        ("P0", 1),
        ("P5", 32),
        (np.int64(16), 16),
    ],
)
def test_stride_parsing(level, stride):
    assert stride_of(level) == stride
    assert level_name(level) == f"P{int(math.log2(stride))}"


@pytest.mark.parametrize("bad", ["P7", "P", "Q2", "", "abc", "2.0", 3, 0, -4, 128, True, 4.0])
def test_stride_errors(bad):
    with pytest.raises(InputError, match="level") as e:
        stride_of(bad)
    assert "\n" not in str(e.value)


def test_parse_levels():
    assert parse_levels("P2,p3, 16,P2") == ["P2", "P3", "P4"]
    with pytest.raises(InputError, match="empty"):
        parse_levels("P2,,P3")
    with pytest.raises(InputError, match="P9"):
        parse_levels("P2,P9")


@given(st.integers(1, 4000), st.integers(1, 4000), levels_st)
def test_grid_size_is_ceil(h, w, level):
    s = stride_of(level)
    gh, gw = grid_size((h, w), level)
    assert (gh - 1) * s < h <= gh * s and (gw - 1) * s < w <= gw * s


def test_grid_sizes_of_the_seed():
    assert grid_size((480, 640), "P2") == (120, 160)
    assert grid_size((480, 640), "P4") == (30, 40)
    assert grid_size((481, 641), "P2") == (121, 161)


@settings(max_examples=200)
@given(points_st, levels_st)
def test_point_cell_point_round_trip(points, level):
    s = stride_of(level)
    cells = point_to_cell(points, level)
    off = offset_targets(points, level)
    assert cells.dtype == np.int64 and cells.shape == (len(points), 2)
    assert ((off >= 0) & (off < 1)).all()
    # cell (i, j) = (floor(y/s), floor(x/s)): the point lies inside the cell's pixel square
    assert (cells[:, 1] * s <= points[:, 0]).all() and (points[:, 0] < (cells[:, 1] + 1) * s).all()
    assert (cells[:, 0] * s <= points[:, 1]).all() and (points[:, 1] < (cells[:, 0] + 1) * s).all()
    back = cell_to_point(cells, level, off)
    np.testing.assert_allclose(
        back, points, rtol=0, atol=1e-9 * max(1.0, float(np.abs(points).max(initial=0)))
    )


@given(points_st, levels_st)
def test_cell_centre_and_quantization(points, level):
    s = stride_of(level)
    centres = cell_to_point(point_to_cell(points, level), level)
    np.testing.assert_array_equal(point_to_cell(centres, level), point_to_cell(points, level))
    q = quantization_error(points, level)
    assert q.shape == (len(points),)
    assert (q <= s / math.sqrt(2) + 1e-9).all()
    np.testing.assert_allclose(q, np.hypot(*(points - centres).T) if len(points) else q)


def test_examples_from_design():
    pts = np.array([[5.0, 9.0], [0.0, 0.0], [3.999, 4.0]])
    assert point_to_cell(pts, "P2").tolist() == [[2, 1], [0, 0], [1, 0]]
    np.testing.assert_allclose(offset_targets(pts, "P2"), [[0.25, 0.25], [0, 0], [0.99975, 0]])
    np.testing.assert_allclose(cell_to_point(np.array([[2, 1]]), "P2"), [[6.0, 10.0]])
    np.testing.assert_allclose(quantization_error(np.array([[8.0, 8.0]]), "P2"), [2 * math.sqrt(2)])


def test_parse_size():
    assert parse_size("480x640") == (480, 640)
    assert parse_size(" 12X7 ") == (12, 7)
    for bad in ("480", "0x640", "480x", "a x b", "-1x4"):
        with pytest.raises(InputError, match="size"):
            parse_size(bad)
