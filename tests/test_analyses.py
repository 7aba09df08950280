"""Each streaming analysis against a short independent computation, and batch invariance."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch
from analyze_models import Oracle, make_dataset
from hypothesis import given, settings
from hypothesis import strategies as st

from convdiag.analyses import AnalysisContext, Candidate
from convdiag.analyses.base import (
    N_LOG_G_BINS,
    auc_from_hists,
    count_bins,
    grad_bins,
    mass_fraction_cells,
)
from convdiag.analyses.run import head_parameters, make_step, run_analyses
from convdiag.analyses.targets import fit_spots
from convdiag.diagnosis.remedy_catalogue import pos_weight_for
from convdiag.load.batching import make_batch
from convdiag.load.outputs import normalize_outputs
from convdiag.load.recipe import Recipe
from convdiag.load.runner import ModelRunner
from convdiag.remedies.analyze import analyze_dataset, build_candidates
from convdiag.targets.labels import render_heatmap


def _ctx(recipe: Recipe, level: str = "P2", grid: tuple[int, int] = (16, 24), **kw: Any) -> Any:
    s = 2 ** int(level[1:])
    return AnalysisContext(level=level, stride=s, recipe=recipe, max_grid=grid, **kw)


def _random_step(recipe: Recipe, seed: int = 0, scale: float = 3.0, ctx: Any = None) -> Any:
    """One AnalysisStep of a random-logit 'model' on a small dataset (P2)."""
    ds = make_dataset(n=3, sizes=((64, 96), (60, 80)), seed=seed)
    batch = make_batch(ds, [0, 1, 2], pad_to=32)
    g = torch.Generator().manual_seed(seed)
    h, w = batch.images.shape[-2] // 4, batch.images.shape[-1] // 4
    logits = (torch.randn(3, 1, h, w, generator=g) * scale - 4).requires_grad_(True)
    reg = torch.rand(3, 2, h, w, generator=g).requires_grad_(True)
    out = normalize_outputs({"P2": {"cls": logits, "reg": reg}}, tuple(batch.images.shape[-2:]))
    ctx = ctx or _ctx(recipe, candidates=build_candidates(recipe, "P2", {"neg_per_pos": 400}, 1.0))
    return make_step(ctx, batch, out["P2"], None), batch


# --------------------------------------------------------------------------- gradients


def _hand_loss(kind: str, z: torch.Tensor, y: torch.Tensor, valid: torch.Tensor, **p: Any) -> Any:
    """Per-cell losses written out by hand (float64), summed over valid cells."""
    q = torch.sigmoid(z)
    if kind == "bce":
        w = p.get("pos_weight") or 1.0
        cell = -(w * y * torch.log(q) + (1 - y) * torch.log(1 - q))
    elif kind == "focal":
        a, b = p.get("alpha", 2.0), p.get("beta", 4.0)
        pos = -((1 - q) ** a) * torch.log(q)
        neg = -((1 - y) ** b) * q**a * torch.log(1 - q)
        cell = torch.where(y == 1, pos, neg)
    else:
        a, g = p.get("alpha", 0.25), p.get("gamma", 2.0)
        cell = -a * y * (1 - q) ** g * torch.log(q) - (1 - a) * (1 - y) * q**g * torch.log(1 - q)
    return (cell * valid).sum()


@pytest.mark.parametrize(
    "recipe",
    [
        Recipe(),
        Recipe(pos_weight=7.0),
        Recipe(loss="focal"),
        Recipe(loss="sigmoid-focal"),
        Recipe(labels="soft", kernel=3, sigma=1.0),
        Recipe(labels="soft", kernel=4, sigma=1.2, loss="focal"),
    ],
    ids=["bce", "bce-pw", "focal", "sigmoid-focal", "soft-bce", "soft4-focal"],
)
def test_cell_gradient_matches_autograd_of_hand_written_loss(recipe: Recipe) -> None:
    step, batch = _random_step(recipe, seed=3)
    y = step.labels.heatmap.double()
    z = step.logits.clone().requires_grad_(True)
    kw = {"pos_weight": recipe.pos_weight}
    if recipe.loss == "focal":
        kw = {"alpha": recipe.focal_alpha, "beta": recipe.focal_beta}
    elif recipe.loss == "sigmoid-focal":
        kw = {"alpha": recipe.sf_alpha, "gamma": recipe.sf_gamma}
    loss = _hand_loss(recipe.loss, z, y, step.valid.double(), **kw)
    (ref,) = torch.autograd.grad(loss, z)
    np.testing.assert_allclose(step.cell_grad.numpy(), ref.abs().numpy(), rtol=1e-6, atol=1e-12)
    # Labels independent of the batch renderer: render_heatmap per image.
    for b, (size, pts) in enumerate(zip(batch.sizes, batch.points, strict=True)):
        k = recipe.kernel if recipe.soft else None
        hm = render_heatmap(pts, size, "P2", k, recipe.sigma if k else None, recipe.trunc)
        np.testing.assert_array_equal(y[b, 0, : hm.shape[0], : hm.shape[1]].numpy(), hm)


def test_bce_cell_gradient_is_p_minus_y() -> None:
    step, _ = _random_step(Recipe(), seed=1)
    p = torch.sigmoid(step.logits)
    y = step.labels.heatmap.double()
    expect = ((p - y).abs() * step.valid).numpy()
    np.testing.assert_allclose(step.cell_grad.numpy(), expect, rtol=1e-9, atol=1e-15)


def test_counterfactual_shares_match_numpy() -> None:
    from convdiag.analyses.gradients import GradientAnalysis

    recipe = Recipe()
    step, batch = _random_step(recipe, seed=5)
    soft = step.ctx.candidates[1]
    assert soft.name == "soft-labels"
    an = GradientAnalysis(step.ctx)
    an.update(step)
    res = an.compute()["candidates"]
    # Independent: soft labels from render_heatmap, BCE gradient |p - y| in numpy.
    k, s, t = soft.params["kernel"], soft.params["sigma"], soft.params["trunc"]
    p = 1 / (1 + np.exp(-step.logits.numpy()[:, 0]))
    mass = {"target": 0.0, "neighbourhood": 0.0, "background": 0.0, "hotspot": 0.0}
    for b, (size, pts) in enumerate(zip(batch.sizes, batch.points, strict=True)):
        ys = render_heatmap(pts, size, "P2", k, s, t).astype(np.float64)
        hh, ww = ys.shape
        g = np.abs(p[b, :hh, :ww] - ys)
        tgt = ys == 1
        near = (ys > 0) & ~tgt
        hot = ~tgt & ~near & (p[b, :hh, :ww] >= 0.5)
        mass["target"] += g[tgt].sum()
        mass["neighbourhood"] += g[near].sum()
        mass["hotspot"] += g[hot].sum()
        mass["background"] += g[~tgt & ~near & ~hot].sum()
    total = sum(mass.values())
    for region, m in mass.items():
        assert res["soft-labels"]["shares"][region] == pytest.approx(m / total, rel=1e-6)


def _exact_cells_for(values: np.ndarray, share: float) -> float:
    v = np.sort(values)[::-1]
    c = np.cumsum(v)
    k = int(np.searchsorted(c, share * c[-1]))
    prev = c[k - 1] if k else 0.0
    return (k + (share * c[-1] - prev) / v[k]) / len(values)


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 10_000), st.floats(0.5, 4.0))
def test_cells_for_90pct_matches_sorting(seed: int, spread: float) -> None:
    rng = np.random.default_rng(seed)
    g = np.exp(rng.normal(-6, spread, size=5000))
    gt = torch.from_numpy(g)
    idx = grad_bins(gt)
    got = mass_fraction_cells(count_bins(idx, N_LOG_G_BINS), count_bins(idx, N_LOG_G_BINS, gt), 0)
    exact = _exact_cells_for(g, 0.9)
    # One log bin spans a factor 10^(1/20) = 1.12: the answer is within that of the truth.
    assert got == pytest.approx(exact, rel=0.15, abs=2 / 5000)


# --------------------------------------------------------------------------- scores


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10_000), st.floats(0.0, 3.0))
def test_auc_matches_brute_force(seed: int, shift: float) -> None:
    rng = np.random.default_rng(seed)
    pos = rng.normal(shift, 1.5, size=40)
    neg = rng.normal(0, 1.5, size=300)
    from convdiag.analyses.base import N_LOGIT_BINS, logit_bins

    hp = count_bins(logit_bins(torch.from_numpy(pos)), N_LOGIT_BINS)
    hn = count_bins(logit_bins(torch.from_numpy(neg)), N_LOGIT_BINS)
    brute = ((pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()) / (
        len(pos) * len(neg)
    )
    # Bins are 0.02 logit wide: only pairs closer than that can be miscounted.
    close = (np.abs(pos[:, None] - neg[None, :]) < 0.02).mean()
    assert auc_from_hists(hp, hn) == pytest.approx(brute, abs=close / 2 + 1e-12)


def test_score_analysis_against_numpy() -> None:
    from convdiag.analyses.scores import ScoreAnalysis

    step, batch = _random_step(Recipe(), seed=7, scale=2.0)
    an = ScoreAnalysis(threshold=0.5)
    an.update(step)
    res = an.compute()
    z = step.logits.numpy()[:, 0]
    p = 1 / (1 + np.exp(-z))
    tz, bz, peaks, n_cells, sum_p, sum_y = [], [], [], 0, 0.0, 0.0
    for b, (size, pts) in enumerate(zip(batch.sizes, batch.points, strict=True)):
        y = render_heatmap(pts, size, "P2")
        hh, ww = y.shape
        zb = z[b, :hh, :ww]
        tz += list(zb[y == 1])
        bz += list(zb[y == 0])  # hard recipe: the neighbourhood is the 3x3 soft window
        n_cells += y.size
        sum_p += p[b, :hh, :ww].sum()
        sum_y += y.sum()
        for x, yy in pts:
            i, j = int(yy // 4), int(x // 4)
            peaks.append(zb[max(i - 1, 0) : i + 2, max(j - 1, 0) : j + 2].max())
    assert res["label_prior"] == pytest.approx(sum_y / n_cells)
    assert res["mean_score"] == pytest.approx(sum_p / n_cells)
    assert res["targets"] == len(peaks)
    share = np.mean(1 / (1 + np.exp(-np.array(peaks))) >= 0.5)
    assert res["peaks_above_threshold"] == pytest.approx(share)
    # Background in the analysis excludes the soft neighbourhood; recompute with it removed.
    nb = step.ctx.neighbourhood
    near_z = []
    for b, (size, pts) in enumerate(zip(batch.sizes, batch.points, strict=True)):
        ys = render_heatmap(pts, size, "P2", nb[0], nb[1], nb[2])
        near_z += list(z[b, : ys.shape[0], : ys.shape[1]][(ys > 0) & (ys < 1)])
    bg_list = []
    for b, (size, pts) in enumerate(zip(batch.sizes, batch.points, strict=True)):
        y = render_heatmap(pts, size, "P2")
        ys = render_heatmap(pts, size, "P2", nb[0], nb[1], nb[2])
        zb = z[b, : y.shape[0], : y.shape[1]]
        bg_list += list(zb[(y == 0) & ~((ys > 0) & (ys < 1))])
    bg, t = np.array(bg_list), np.array(tz)
    # Brute-force AUC over the same cells: P(target logit > background logit), ties half.
    brute = (t[:, None] > bg[None, :]).mean() + 0.5 * (t[:, None] == bg[None, :]).mean()
    close = (np.abs(t[:, None] - bg[None, :]) < 0.02).mean()  # pairs a 0.02-logit bin can swap
    assert res["auc"] == pytest.approx(brute, abs=close / 2 + 1e-9)
    assert sum(res["hist"]["neighbourhood"]) == len(near_z)
    assert sum(res["hist"]["background"]) + len(near_z) == len(bz)
    assert len(bg) > 0


# --------------------------------------------------------------------------- offsets


def test_offsets_r2_and_std_ratio_match_numpy() -> None:
    from convdiag.analyses.offsets import OffsetAnalysis

    step, _ = _random_step(Recipe(), seed=11)
    an = OffsetAnalysis(stride=4)
    an.update(step)
    res = an.compute()
    m = step.labels.offset_mask[:, 0] & step.valid[:, 0]
    p = step.reg.permute(0, 2, 3, 1)[m].numpy()
    t = step.labels.offset.permute(0, 2, 3, 1)[m].double().numpy()
    for a, axis in enumerate("xy"):
        ss_res = ((p[:, a] - t[:, a]) ** 2).sum()
        ss_tot = ((t[:, a] - t[:, a].mean()) ** 2).sum()
        assert res["r2"][axis] == pytest.approx(1 - ss_res / ss_tot, rel=1e-9)
        assert res["std_ratio"][axis] == pytest.approx(p[:, a].std() / t[:, a].std(), rel=1e-9)
        assert res["corr"][axis] == pytest.approx(np.corrcoef(p[:, a], t[:, a])[0, 1], rel=1e-9)
    loc = 4 * np.hypot(*(p - t).T)
    assert res["loc_error_px"]["model_mean"] == pytest.approx(loc.mean(), rel=1e-9)
    assert res["target_cells"] == len(p)


def test_offsets_of_a_constant_head_collapse() -> None:
    from convdiag.analyses.offsets import OffsetAnalysis

    step, _ = _random_step(Recipe(), seed=2)
    step.reg = torch.full_like(step.reg, 0.5)
    an = OffsetAnalysis(stride=4)
    an.update(step)
    res = an.compute()
    assert res["offset_std_ratio"] == pytest.approx(0.0, abs=1e-6)
    assert res["offset_r2"] < 0.0
    lm = res["loc_error_px"]
    assert lm["model_mean"] == pytest.approx(lm["centre_mean"])


# --------------------------------------------------------------------------- loss


def test_loss_parts_against_numpy_and_constant_predictor() -> None:
    from convdiag.analyses.loss import LossAnalysis

    recipe = Recipe(pos_weight=3.0)
    step, batch = _random_step(recipe, seed=4)
    an = LossAnalysis(recipe)
    an.update(step)
    res = an.compute()
    z = step.logits.numpy()[:, 0]
    pos_sum = neg_sum = n = 0.0
    ys = []
    for b, (size, pts) in enumerate(zip(batch.sizes, batch.points, strict=True)):
        y = render_heatmap(pts, size, "P2").astype(np.float64)
        zb = z[b, : y.shape[0], : y.shape[1]]
        cell = 3.0 * y * np.logaddexp(0, -zb) + (1 - y) * np.logaddexp(0, zb)
        pos_sum += cell[y == 1].sum()
        neg_sum += cell[y < 1].sum()
        n += y.size
        ys.append(y.ravel())
    assert res["cls_loss_pos"] == pytest.approx(pos_sum / n, rel=1e-9)
    assert res["cls_loss_neg"] == pytest.approx(neg_sum / n, rel=1e-9)
    assert res["cls_loss"] == pytest.approx((pos_sum + neg_sum) / n, rel=1e-9)
    # Best constant predictor by brute force over p.
    y = np.concatenate(ys)
    grid = np.linspace(1e-4, 0.2, 20001)
    const = min(-(3.0 * y.sum() * np.log(grid) + (len(y) - y.sum()) * np.log(1 - grid)) / len(y))
    assert res["constant_loss"] == pytest.approx(const, rel=1e-6)


# --------------------------------------------------------------------------- the pass


def _leaves(d: Any, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    if isinstance(d, dict):
        for k, v in d.items():
            out.update(_leaves(v, f"{prefix}.{k}"))
    elif isinstance(d, list) and d and all(isinstance(x, int | float) or x is None for x in d):
        out[prefix] = np.array([np.nan if x is None else x for x in d], dtype=float)
    elif isinstance(d, list):
        for i, v in enumerate(d):
            out.update(_leaves(v, f"{prefix}[{i}]"))
    elif isinstance(d, int | float | str) or d is None:
        out[prefix] = d
    return out


def _assert_same(a: dict[str, Any], b: dict[str, Any], rtol: float) -> None:
    la, lb = _leaves(a), _leaves(b)
    assert la.keys() == lb.keys()
    for k in la:
        x, y = la[k], lb[k]
        if x is None or y is None or isinstance(x, str):
            assert x == y, k
        else:
            np.testing.assert_allclose(x, y, rtol=rtol, atol=1e-9, err_msg=k)


def test_batch_invariance_oracle_mixed_sizes() -> None:
    ds = make_dataset(n=7, sizes=((64, 96), (70, 90), (64, 64)), clutter=1, seed=2)
    model = Oracle(stride=4, cls_scale=8.0, cls_bias=-3.0, reg_gain=0.7)
    runner = ModelRunner(model, pad_to=32)
    r1, _ = analyze_dataset(runner, ds, Recipe(), batch_size=1)
    r5, _ = analyze_dataset(runner, ds, Recipe(), batch_size=5)
    _assert_same(r1["analyses"], r5["analyses"], rtol=1e-6)
    assert r1["findings"] == r5["findings"]


def test_batch_invariance_reference_detector() -> None:
    from convdiag.models.detector import reference

    torch.manual_seed(0)
    ds = make_dataset(n=6, sizes=((64, 64),), seed=3)
    model = reference(head="P2", width=4, prior=0.01)
    with torch.no_grad():  # spread the logits: an untrained head is flat and full of ties
        for branch in (model.heads["P2"].cls, model.heads["P2"].reg):
            branch.out.weight.normal_(0, 1.0)
    runner = ModelRunner(model, pad_to=32)
    r1, _ = analyze_dataset(runner, ds, Recipe(), batch_size=1)
    r6, _ = analyze_dataset(runner, ds, Recipe(), batch_size=6)
    # float32 convolutions may differ in the last bits between batch sizes
    _assert_same(r1["metrics"], r6["metrics"], rtol=1e-4)


def test_head_gradients_match_full_batch_autograd() -> None:
    from convdiag.targets import losses
    from convdiag.targets.labels import render_batch

    ds = make_dataset(n=5, sizes=((64, 64),), seed=4)
    model = Oracle(stride=4, cls_scale=3.0, cls_bias=-2.0, reg_gain=0.6)
    runner = ModelRunner(model, pad_to=32)
    recipe = Recipe(loss="focal")
    ctx = _ctx(recipe, grid=(16, 16))
    an = run_analyses(runner, ds, {"P2": ctx}, batch_size=2)
    res = an["P2"]["heads"].compute()
    # Independent: the whole dataset as one batch, the training loss written out, backward.
    batch = make_batch(ds, list(range(5)), 32)
    out = model(batch.images)["P2"]
    lab = render_batch(batch.points, batch.sizes, (16, 16), "P2")
    cls = losses.centernet_focal_loss(out["cls"], lab.heatmap, lab.valid)
    m = lab.offset_mask.expand_as(out["reg"])
    reg = ((out["reg"] - lab.offset).abs() * m).sum() / m.sum()
    gc = torch.autograd.grad(cls, [model.cls_scale, model.cls_bias], retain_graph=True)
    (gr,) = torch.autograd.grad(reg, [model.reg_gain])
    assert res["cls_grad_norm"] == pytest.approx(float(torch.stack(gc).norm()), rel=1e-5)
    assert res["reg_grad_norm"] == pytest.approx(float(gr.abs()), rel=1e-5)
    assert res["parameters"] == {"cls": 2, "reg": 1}


def test_head_parameters_heuristic_and_method() -> None:
    from convdiag.models.detector import reference

    named = head_parameters(Oracle())
    assert [n for n, _ in named["cls"]] == ["cls_scale", "cls_bias"]
    assert [n for n, _ in named["reg"]] == ["reg_gain"]
    ref = reference(head="fused", width=4)
    groups = head_parameters(ref)
    want = ref.head_parameters()
    assert [id(p) for _, p in groups["cls"]] == [id(p) for p in want["cls"]]
    assert all(".reg." in n for n, _ in groups["reg"])


def test_nonfinite_logits_are_counted_and_contained() -> None:
    ds = make_dataset(n=3, sizes=((64, 64),), seed=1)
    runner = ModelRunner(Oracle(nan=True), pad_to=32)
    rep, _ = analyze_dataset(runner, ds, Recipe())
    out = rep["analyses"]["P2"]["outputs"]
    assert out["cls_nonfinite"] == 3
    assert rep["findings"][0]["id"] == "non-finite-outputs"
    assert math.isfinite(rep["metrics"]["P2"]["cls_loss"])


def test_memory_state_does_not_grow_with_the_dataset() -> None:
    def sizes(n: int) -> dict[str, int]:
        ds = make_dataset(n=n, sizes=((64, 64),), seed=0)
        an = run_analyses(
            ModelRunner(Oracle(), pad_to=32), ds, {"P2": _ctx(Recipe(), grid=(16, 16))}
        )
        return {k: sum(np.asarray(v).size for v in a.state().values()) for k, a in an["P2"].items()}

    assert sizes(2) == sizes(9)


# --------------------------------------------------------------------------- candidates, targets


def test_candidates_and_pos_weight() -> None:
    cands = build_candidates(Recipe(), "P2", {"neg_per_pos": 4000.0}, 1.0)
    assert [c.name for c in cands] == ["current", "soft-labels", "focal-loss", "pos-weight"]
    assert cands[3].params == {"w": pos_weight_for(4000.0)} == {"w": 63.0}
    assert cands[1].params == {"kernel": 3, "sigma": 0.8, "trunc": 0.1}
    soft = cands[1].recipe  # what the candidate trains with: the hard recipe made soft 3x3/0.8
    assert (soft.labels, soft.kernel, soft.sigma, soft.trunc) == ("soft", 3, 0.8, 0.1)
    assert (soft.loss, soft.head, soft.bias_init) == (Recipe().loss, "P2", Recipe().bias_init)
    focal = cands[2].recipe
    assert (focal.loss, focal.focal_alpha, focal.focal_beta, focal.labels) == (
        "focal",
        2,
        4,
        "hard",
    )
    assert cands[3].recipe.pos_weight == 63.0 and cands[3].recipe.loss == "bce"
    soft_focal = Recipe(labels="soft", loss="focal")
    assert [c.name for c in build_candidates(soft_focal, "P2", {}, None)] == ["current"]
    assert isinstance(cands[0], Candidate)


def test_fit_spots_recovers_the_psf_width() -> None:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:40, 0:40] + 0.5
    pts = np.array([[10.3, 12.7], [28.6, 25.2]])
    img = np.full((40, 40), 0.3)
    for (x, y), s in zip(pts, (1.0, 2.0), strict=True):
        img += 0.4 * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * s**2))
    img += rng.normal(0, 0.01, img.shape)
    fit = fit_spots(img, pts, half=6)
    np.testing.assert_allclose(fit[:, 0], [1.0, 2.0], atol=0.15)
    np.testing.assert_allclose(fit[:, 1], 0.4, rtol=0.1)


def test_state_merge_equals_one_pass() -> None:
    """Two processes' states, merged, give the numbers of one pass over everything."""
    from convdiag.analyses.gradients import GradientAnalysis

    ds = make_dataset(n=6, sizes=((64, 96),), clutter=1, seed=8)
    runner = ModelRunner(Oracle(stride=4, cls_scale=6.0, cls_bias=-2.0, reg_gain=0.5), pad_to=32)
    recipe = Recipe()
    cands = build_candidates(recipe, "P2", {"neg_per_pos": 300.0}, 1.0)

    def ctx() -> AnalysisContext:
        return _ctx(recipe, grid=(16, 24), candidates=cands)

    whole = run_analyses(runner, ds, {"P2": ctx()}, batch_size=4)["P2"]
    a = run_analyses(runner, ds.subset([0, 1, 2]), {"P2": ctx()})["P2"]
    b = run_analyses(runner, ds.subset([3, 4, 5]), {"P2": ctx()})["P2"]
    for name, an in a.items():
        an.merge(b[name].state())
        if isinstance(an, GradientAnalysis):
            an.merge_example(b[name])  # type: ignore[arg-type]
        _assert_same({"r": an.compute()}, {"r": whole[name].compute()}, rtol=1e-6)


def test_levels_of_a_fused_model() -> None:
    from convdiag.models.detector import reference

    torch.manual_seed(0)
    ds = make_dataset(n=2, sizes=((64, 64),), seed=1)
    runner = ModelRunner(reference(head="fused", width=4), pad_to=32)
    both, _ = analyze_dataset(runner, ds, Recipe(head="fused"))
    assert list(both["metrics"]) == ["P2", "P4"] == both["model_levels"]
    p4, _ = analyze_dataset(runner, ds, Recipe(head="fused"), levels=["p4"])
    assert list(p4["metrics"]) == ["P4"]
    assert p4["metrics"]["P4"] == both["metrics"]["P4"]
