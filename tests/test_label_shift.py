"""label-shift: the displacement analysis against a numpy reference, the rule on synthetic
measurements (one cell, half a pixel, swapped axes, healthy, a constant offset head), the
report order, and end to end on a trained model read with the wrong point convention."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import numpy as np
import pytest
from bad.helpers import run_cli
from scipy import stats

from convdiag.analyses.base import AnalysisStep, to_plain
from convdiag.analyses.displacement import DisplacementAnalysis
from convdiag.diagnosis.findings import Finding
from convdiag.diagnosis.rules import sort_findings
from convdiag.diagnosis.rules_common import Ctx
from convdiag.diagnosis.rules_shift import shift
from convdiag.diagnosis.thresholds import Thresholds
from convdiag.load.recipe import Recipe

SIZE = (48, 64)  # H, W


def _images(
    n: int, move: Callable[[np.ndarray, np.random.Generator], np.ndarray], seed: int = 0
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """n images: (labels [N, 2], peaks [K, 2], scores [K]): the peaks are move(true points)
    scored high, plus as many clutter peaks scored lower; the labels are the true points."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        k = int(rng.integers(2, 6))
        pts = np.stack([rng.uniform(6, SIZE[1] - 6, k), rng.uniform(6, SIZE[0] - 6, k)], 1)
        peaks = move(pts, rng)
        clutter = np.stack([rng.uniform(0, SIZE[1], k), rng.uniform(0, SIZE[0], k)], 1)
        p = np.concatenate([peaks, clutter])
        s = np.concatenate([rng.uniform(0.6, 1.0, k), rng.uniform(0.0, 0.5, k)])
        order = np.argsort(-s, kind="stable")
        out.append((pts, p[order], s[order]))
    return out


def _measure(images: list[Any], stride: int = 4, batch: int = 4) -> DisplacementAnalysis:
    a = DisplacementAnalysis(stride, 3.0)
    for i in range(0, len(images), batch):
        part = images[i : i + batch]
        step = SimpleNamespace(
            preds=[(p, s) for _, p, s in part],
            points=[g for g, _, _ in part],
            sizes=[SIZE] * len(part),
        )
        a.update(cast(AnalysisStep, step))
    return a


def _reference(images: list[Any], stride: int = 4, radius: float = 3.0) -> dict[str, Any]:
    """Brute force: nearest of the top-2N peaks within reach, per target, then the tests."""
    reach = max(3 * stride, 2 * radius)
    d_all, per_image, swap = [], [], [0, 0, 0]
    for g, p, _ in images:
        top = p[: 2 * len(g)]
        mine = []
        for t in g:
            dist = [float(np.hypot(*(q - t))) for q in top]
            k = int(np.argmin(dist))
            if dist[k] <= reach:
                mine.append(top[k] - t)
            sw = t[::-1]
            inside = 0 <= sw[0] < SIZE[1] and 0 <= sw[1] < SIZE[0]
            if inside and np.hypot(*(sw - t)) >= 2 * radius:
                swap[0] += 1
                swap[1] += any(np.hypot(*(q - sw)) < radius for q in top)
                swap[2] += any(np.hypot(*(q - t)) < radius for q in top)
        d_all += mine
        if mine:
            per_image.append(np.mean(mine, axis=0))
    d = np.array(d_all)

    def hot(x: np.ndarray) -> float:
        n = len(x)
        m = x.mean(0)
        cov = np.cov(x.T, ddof=1) + 0.05**2 * np.eye(2)
        t2 = n * m @ np.linalg.inv(cov) @ m
        return float(stats.f.sf(t2 * (n - 2) / (2 * (n - 1)), 2, n - 2))

    m = d.mean(0)
    side = [float(np.mean(np.sign(d[:, a][d[:, a] != 0]) == np.sign(m[a]))) for a in range(2)]
    return {
        "found": len(d),
        "mean": m,
        "std": d.std(0, ddof=1),
        "p_targets": hot(d),
        "p_images": hot(np.array(per_image)),
        "side": side,
        "swap": (swap[0], swap[1] / swap[0], swap[2] / swap[0]),
    }


def _ctx(res: dict[str, Any], th: Thresholds | None = None) -> Ctx:
    return Ctx("P4", res, {}, {}, {}, Recipe(head="P4"), th or Thresholds(), None, True, 3.0)


def _finding(images: list[Any], stride: int = 4) -> Finding | None:
    res = {"displacement": to_plain(_measure(images, stride).compute())}
    return shift(_ctx(res))


def _noisy(dx: float, dy: float, sd: float = 0.3) -> Callable[..., np.ndarray]:
    return lambda p, rng: p + np.array([dx, dy]) + rng.normal(0, sd, p.shape)


# --------------------------------------------------------------------------- the analysis


def test_displacement_matches_numpy_reference() -> None:
    imgs = _images(30, _noisy(1.5, -0.7, 0.8), seed=3)
    got = _measure(imgs).compute()
    ref = _reference(imgs)
    assert got["found"] == ref["found"]
    np.testing.assert_allclose(got["mean_px"], ref["mean"], rtol=1e-9)
    np.testing.assert_allclose(got["std_px"], ref["std"], rtol=1e-9)
    np.testing.assert_allclose(got["test_targets"]["p"], ref["p_targets"], rtol=1e-6, atol=1e-300)
    np.testing.assert_allclose(got["test_images"]["p"], ref["p_images"], rtol=1e-6, atol=1e-300)
    np.testing.assert_allclose(got["side_share"], ref["side"], rtol=1e-12)
    sw = got["swap"]
    assert (sw["targets"], sw["swapped_hit_share"], sw["direct_hit_share"]) == pytest.approx(
        ref["swap"]
    )


def test_displacement_is_batch_invariant_and_merges() -> None:
    imgs = _images(12, _noisy(0.5, 0.5), seed=5)
    whole = _measure(imgs, batch=12).compute()
    a, b = _measure(imgs[:5], batch=1), _measure(imgs[5:], batch=3)
    a.merge(b.state())
    merged = a.compute()
    for key in ("found", "mean_px", "std_px", "side_share"):
        np.testing.assert_allclose(merged[key], whole[key], rtol=1e-12)
    assert merged["test_images"]["p"] == pytest.approx(whole["test_images"]["p"], rel=1e-9)


# --------------------------------------------------------------------------- the rule


def test_one_cell_shift_is_an_error_naming_the_offset() -> None:
    f = _finding(_images(20, _noisy(4.0, 4.0)))  # stride 4: one cell on both axes
    assert f is not None and f.id == "label-shift" and f.severity == "error"
    assert f.evidence["shift_dx_px"] == pytest.approx(4.0, abs=0.2)
    assert f.evidence["mode_shift_px"] > f.evidence["radius_px"]
    rem = f.remedies[0]
    assert rem.id == "fix-labels" and not rem.applied
    assert rem.params["dx"] == pytest.approx(4.0, abs=0.2) and rem.params["coords"] is None
    assert f"move every label by ({rem.params['dx']:+.2f}, " in rem.why


@pytest.mark.parametrize("half, coords", [(-0.5, "index1"), (0.5, "index0")])
def test_half_pixel_shift_names_the_coords_convention(half: float, coords: str) -> None:
    f = _finding(_images(20, _noisy(half, half, 0.2)))
    assert f is not None and f.id == "label-shift"
    assert f.severity == "warning"  # under the 3 px radius: detections still match
    assert f.remedies[0].params["coords"] == coords
    assert f"--coords {coords}" in f.remedies[0].why


def test_swapped_axes_are_an_error() -> None:
    f = _finding(_images(20, lambda p, rng: p[:, ::-1] + rng.normal(0, 0.3, p.shape)))
    assert f is not None and f.id == "label-shift" and f.severity == "error"
    assert f.evidence["swapped_axes"] is True
    assert f.remedies[0].params == {"swap_xy": True}


def test_healthy_and_noise_give_no_shift() -> None:
    assert _finding(_images(30, _noisy(0.0, 0.0, 0.5))) is None
    # peaks scattered at random around the targets: no consistent side
    assert _finding(_images(30, lambda p, rng: p + rng.uniform(-6, 6, p.shape))) is None


def test_constant_offset_head_is_not_a_label_shift() -> None:
    # an offset head predicting 0.9 everywhere: peaks at (cell + 0.9) * stride
    def const(p: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return (np.floor(p / 4.0) + 0.9) * 4.0

    m = _measure(_images(40, const)).compute()
    assert m["dominant_slope_share"] == pytest.approx(-1.0, abs=0.2)  # clutter dilutes
    assert shift(_ctx({"displacement": to_plain(m)})) is None
    # with the guard relaxed the same measurement would read as a shift
    loose = Thresholds(label_shift_slope_max=2.0)
    assert shift(_ctx({"displacement": to_plain(m)}, loose)) is not None


def test_label_shift_ranks_before_background_collapse() -> None:
    fs = [Finding("head-imbalance", "P2", {}, ""), Finding("background-collapse", "P2", {}, "")]
    fs.append(Finding("label-shift", "P2", {}, ""))
    assert sort_findings(fs)[0].id == "label-shift"


def test_a_shift_error_withholds_the_collapse_remedies_at_its_level() -> None:
    from convdiag.diagnosis.findings import Remedy
    from convdiag.diagnosis.rules_shift import withhold_explained

    def bg(level: str) -> Finding:
        return Finding("background-collapse", level, {}, "x.", [Remedy("focal-loss")])

    fs = withhold_explained([Finding("label-shift", "P2", {}, ""), bg("P2"), bg("P3")])
    assert fs[1].remedies == [] and "label shift at P2" in fs[1].explanation
    assert [r.id for r in fs[2].remedies] == ["focal-loss"]
    warn = Finding("label-shift", "P2", {}, "", severity="warning")
    assert withhold_explained([warn, bg("P2")])[1].remedies  # a warning explains nothing


# --------------------------------------------------------------------------- end to end


@pytest.mark.slow
def test_trained_model_read_with_one_based_points(
    trained_checkpoint: Callable[..., Path], tiny_dataset: Path, tmp_path: Path
) -> None:
    """A healthy model; its labels written as 1-based pixel indices (x + 0.5). Read as
    continuous they sit +0.5 px off: label-shift, naming --coords index1; read with
    --coords index1 there is no shift."""
    ckpt = trained_checkpoint(head="P2", labels="soft", kernel=3, sigma=1.0, loss="focal",
                              bias_init="prior")  # fmt: skip
    rows = list(csv.DictReader((tiny_dataset / "points.csv").open()))
    table = tmp_path / "points.csv"
    with table.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["image", "x", "y"])
        for r in rows:
            w.writerow([r["image"], f"{float(r['x']) + 0.5:.3f}", f"{float(r['y']) + 0.5:.3f}"])
    base = ["analyze", ckpt, "--data", table, "--images", tiny_dataset, "--format", "json"]
    res = run_cli([*base, "--fail-on", "never"])
    assert res.code == 0, res.stderr
    rep = json.loads(res.stdout)
    ls = [f for f in rep["findings"] if f["id"] == "label-shift"]
    assert ls, rep["verdict"]
    assert rep["findings"][0]["id"] == "label-shift"
    assert ls[0]["evidence"]["shift_dx_px"] == pytest.approx(-0.5, abs=0.2)
    assert ls[0]["remedies"][0]["params"]["coords"] == "index1"
    res = run_cli([*base, "--coords", "index1", "--fail-on", "never"])
    rep = json.loads(res.stdout)
    assert "label-shift" not in [f["id"] for f in rep["findings"]], rep["verdict"]
