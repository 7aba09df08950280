"""``convdiag.Monitor``: statistics against a plain-numpy reference, sampling, warnings once
per symptom, findings, a real training loop where collapse does and does not appear, and
the optional Lightning callback."""

from __future__ import annotations

import importlib.util
import math
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from convdiag.diagnosis.thresholds import Thresholds
from convdiag.errors import InputError
from convdiag.watch.monitor import ConvdiagWarning, Monitor

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "monitor_loop.py"


def _example() -> Any:
    spec = importlib.util.spec_from_file_location("monitor_loop_example", EXAMPLE)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def _batch(
    seed: int = 0, b: int = 3, gh: int = 12, gw: int = 16
) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """Random logits [B,1,h,w], offsets [B,2,h,w] in (0,1) and 1-4 points per image, no two
    in one stride-4 cell."""
    rng = np.random.default_rng(seed)
    z = rng.normal(-3, 2, (b, 1, gh, gw))
    reg = rng.uniform(0.05, 0.95, (b, 2, gh, gw))
    pts = []
    for _ in range(b):
        n = int(rng.integers(1, 5))
        cells = rng.choice(gh * gw, n, replace=False)
        i, j = cells // gw, cells % gw
        off = rng.uniform(0, 1, (n, 2))
        pts.append(np.stack([(j + off[:, 0]) * 4, (i + off[:, 1]) * 4], axis=1))
    return z, reg, pts


def _reference_stats(z: np.ndarray, reg: np.ndarray, pts: list[np.ndarray]) -> dict[str, float]:
    """The monitor's statistics by plain numpy, hard labels, BCE, every cell valid."""
    _b, _, _gh, _gw = z.shape
    y = np.zeros_like(z)
    tp, tt = [], []
    for k, p in enumerate(pts):
        for x, yy in p:
            i, j = int(yy // 4), int(x // 4)
            y[k, 0, i, j] = 1.0
            tp.append(reg[k, :, i, j])
            tt.append([x / 4 - j, yy / 4 - i])
    s = _sigmoid(z)
    peaks = []
    for k, i, j in zip(*np.nonzero(y[:, 0] == 1), strict=True):
        peaks.append(s[k, 0, max(i - 1, 0) : i + 2, max(j - 1, 0) : j + 2].max())
    c = z.size
    s1 = y.sum()
    bce = -(y * np.log(s) + (1 - y) * np.log(1 - s)).mean()
    q = s1 / c
    const = -(s1 * np.log(q) + (c - s1) * np.log(1 - q)) / c
    g = np.abs(s - y)
    p_, t_ = np.array(tp), np.array(tt)
    return {
        "mean_score": s.mean(),
        "peak_score_p50": float(np.median(peaks)),
        "peaks_above_threshold": float(np.mean(np.array(peaks) >= 0.5)),
        "cls_loss": bce,
        "constant_loss": const,
        "loss_ratio": bce / const,
        "pos_grad_share": g[y == 1].sum() / g.sum(),
        "offset_std_ratio": float(np.mean(p_.std(0, ddof=1) / t_.std(0, ddof=1))),
        "offset_r2": 1 - ((p_ - t_) ** 2).sum() / ((t_ - t_.mean(0)) ** 2).sum(),
        "centre_rms_px": 4 * math.sqrt(((t_ - 0.5) ** 2).mean(0).sum()),
        "prior": q,
    }


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_statistics_match_numpy_reference(seed: int) -> None:
    z, reg, pts = _batch(seed)
    out = {"cls": torch.from_numpy(z).float(), "reg": torch.from_numpy(reg).float()}
    st = Monitor("P2", every=1, warn=False).update(out, pts)
    assert st is not None
    want = _reference_stats(z, reg, pts)
    for k, v in want.items():
        assert st[k] == pytest.approx(v, rel=2e-4, abs=1e-6), k


def test_focal_cls_loss_matches_formula() -> None:
    z, reg, pts = _batch(3)
    st = Monitor("P2", every=1, warn=False, loss="focal").update(
        (torch.from_numpy(z).float(), torch.from_numpy(reg).float()), pts
    )
    assert st is not None
    y = np.zeros_like(z)
    for k, p in enumerate(pts):
        for x, yy in p:
            y[k, 0, int(yy // 4), int(x // 4)] = 1
    s = _sigmoid(z)
    pos = -((1 - s) ** 2) * np.log(s)
    neg = -(s**2) * np.log(1 - s)
    want = (pos[y == 1].sum() + neg[y == 0].sum()) / y.sum()
    assert st["cls_loss"] == pytest.approx(want, rel=1e-4)


def test_head_gradient_norms_from_p_grad() -> None:
    from convdiag.models.detector import reference

    model = reference("P2", width=4)
    heads = model.head_parameters()
    rng = np.random.default_rng(0)
    for p in model.parameters():
        p.grad = torch.from_numpy(rng.normal(size=tuple(p.shape))).float()
    want = {
        k: math.sqrt(
            math.fsum(float((p.grad.double() ** 2).sum()) for p in ps if p.grad is not None)
        )
        for k, ps in heads.items()
    }
    z, reg, pts = _batch(0)
    st = Monitor("P2", every=1, warn=False).update(
        {"P2": {"cls": torch.from_numpy(z).float(), "reg": torch.from_numpy(reg).float()}},
        pts,
        model=model,
    )
    assert st is not None
    assert st["cls_grad_norm"] == pytest.approx(want["cls"], rel=1e-5)
    assert st["reg_grad_norm"] == pytest.approx(want["reg"], rel=1e-5)
    assert st["cls_reg_ratio"] == pytest.approx(want["cls"] / want["reg"], rel=1e-5)


def test_measures_every_nth_call_only() -> None:
    z, reg, pts = _batch(0)
    out = (torch.from_numpy(z).float(), torch.from_numpy(reg).float())
    mon = Monitor("P2", every=4, warn=False)
    got = [mon.update(out, pts) is not None for _ in range(10)]
    assert got == [True, False, False, False, True, False, False, False, True, False]
    assert [h["step"] for h in mon.history] == [1, 5, 9]  # the n-th call, 1-based
    assert mon.step == 10


def _collapsed(seed: int = 0) -> tuple[dict[str, torch.Tensor], list[np.ndarray]]:
    """Every logit at the batch prior: the constant predictor (background everywhere)."""
    z, reg, pts = _batch(seed)
    prior = sum(len(p) for p in pts) / z.size
    logit = math.log(prior / (1 - prior))
    return {
        "cls": torch.full(z.shape, logit),
        "reg": torch.from_numpy(reg).float(),
    }, pts


def test_collapse_warns_once_after_patience_then_resolves() -> None:
    out, pts = _collapsed()
    mon = Monitor("P2", every=2, thresholds=Thresholds(patience=3))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(12):
            mon.update(out, pts)
    msgs = [str(w.message) for w in caught if issubclass(w.category, ConvdiagWarning)]
    collapse = [m for m in msgs if "background collapse" in m]
    assert len(collapse) == 1
    assert "since step 1 (3 checks)" in collapse[0] and "--remedy focal-loss" in collapse[0]
    f = {f.id: f for f in mon.report()}["background-collapse"]
    assert f.severity == "error" and f.evidence["started_at"] == 1
    assert f.evidence["loss_ratio"] == pytest.approx(1.0, abs=1e-3)
    # a model that learned: peaks at the targets, background low
    z, _reg, pts = _batch(0)
    good = np.full(z.shape, -8.0)
    for k, p in enumerate(pts):
        for x, y in p:
            good[k, 0, int(y // 4), int(x // 4)] = 6.0
    learned = {"cls": torch.from_numpy(good).float(), "reg": out["reg"]}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(2):
            mon.update(learned, pts)
    assert not caught
    f = {f.id: f for f in mon.report()}["background-collapse"]
    assert f.severity == "info" and f.evidence["resolved_at"] == 13


def test_non_finite_warns_at_once() -> None:
    z, reg, pts = _batch(0)
    z[0, 0, 2, 3] = np.nan
    mon = Monitor("P2", every=1)
    with pytest.warns(ConvdiagWarning, match="non-finite outputs at P2 since step 1"):
        mon.update((torch.from_numpy(z).float(), torch.from_numpy(reg).float()), pts)
    assert mon.report()[0].id == "non-finite-outputs"
    assert mon.report()[0].evidence["nonfinite_cls"] == 1


def test_loss_nan_and_quiet_mode() -> None:
    z, _reg, pts = _batch(0)
    mon = Monitor("P2", every=1, warn=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mon.update(torch.from_numpy(z).float(), pts, loss=torch.tensor(float("inf")))
    assert [f.id for f in mon.report()] == ["non-finite-outputs"]


def test_regression_collapse_where_offsets_matter() -> None:
    rng = np.random.default_rng(0)
    gh, gw, b = 6, 8, 4
    pts = [np.stack([rng.uniform(0, gw * 16, 4), rng.uniform(0, gh * 16, 4)], 1) for _ in range(b)]
    cls = torch.full((b, 1, gh, gw), -2.0)
    reg = torch.full((b, 2, gh, gw), 0.5) + 0.001 * torch.randn(b, 2, gh, gw)
    mon = Monitor("P4", every=1, thresholds=Thresholds(patience=2))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(2):
            mon.update({"cls": cls, "reg": reg}, pts)
    assert any("regression collapse at P4" in str(w.message) for w in caught)
    f = {f.id: f for f in mon.report()}["regression-collapse"]
    assert f.evidence["offset_std_ratio"] < 0.5 and f.evidence["centre_rms_px"] > 1.8
    # the same collapsed head at P2 costs little: not flagged (analyze's rule)
    p2 = Monitor("P2", every=1, warn=False, thresholds=Thresholds(patience=1))
    p2.update({"cls": torch.full((b, 1, 24, 32), -2.0),
               "reg": torch.full((b, 2, 24, 32), 0.5)}, pts)  # fmt: skip
    assert "regression-collapse" not in {f.id for f in p2.report()}


def test_image_sizes_and_levels() -> None:
    z, _reg, pts = _batch(0, gh=12, gw=16)
    p4 = torch.zeros(3, 1, 3, 4)
    out = {"P2": {"cls": torch.from_numpy(z).float()}, "P4": {"cls": p4}}
    st = Monitor("P4", every=1, warn=False).update(out, pts)
    assert st is not None and st["targets"] >= 1
    # own image sizes: cells beyond an image's own grid are ignored. The third image is
    # 20x64 (a 5x16 grid at P2): its padded rows fire at +20, everything else is at -20.
    own = [np.array([[6.0, 6.0], [30.0, 42.0]]), np.array([[50.0, 10.0]]),
           np.array([[10.0, 10.0], [40.0, 14.0]])]  # fmt: skip
    logits = torch.full((3, 1, 12, 16), -20.0)
    logits[2, :, 5:, :] = 20.0
    st = Monitor("P2", every=1, warn=False).update(
        logits, own, image_size=[(48, 64), (48, 64), (20, 64)]
    )
    assert st is not None
    valid_cells = 2 * 12 * 16 + 5 * 16
    assert st["targets"] == 5
    assert st["prior"] == pytest.approx(5 / valid_cells)
    assert st["mean_score"] == pytest.approx(float(torch.sigmoid(torch.tensor(-20.0))), rel=1e-3)
    assert st["peak_score_p50"] < 1e-6  # no target peak sees the padded +20 rows
    # the same logits with one padded size count the +20 rows: the check above has teeth
    st_pad = Monitor("P2", every=1, warn=False).update(logits, own, image_size=(48, 64))
    assert st_pad is not None and st_pad["mean_score"] > 0.1
    with pytest.raises(InputError, match="outputs P2 only"):
        Monitor("P3", every=1).update(torch.zeros(3, 1, 12, 16), pts, image_size=(48, 64))
    with pytest.raises(InputError, match="2 target arrays for a batch of 3"):
        Monitor("P2", every=1).update(torch.zeros(3, 1, 12, 16), pts[:2])
    with pytest.raises(InputError, match="every"):
        Monitor("P2", every=0)


def test_real_training_loop_collapse_and_healthy() -> None:
    """examples/monitor_loop.py: BCE with hard labels and nothing to learn collapses and
    the monitor says so; focal loss on visible targets learns and the monitor is quiet."""
    ex = _example()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the same numbers on any machine
    try:
        _collapse_and_healthy(ex)
    finally:
        torch.set_num_threads(threads)


def _collapse_and_healthy(ex: Any) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvdiagWarning)
        mon = ex.train("hard", steps=90, every=10)
    msgs = [str(w.message) for w in caught if issubclass(w.category, ConvdiagWarning)]
    assert any("background collapse" in m for m in msgs), msgs
    assert "background-collapse" in {f.id for f in mon.report() if f.severity == "error"}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvdiagWarning)
        mon = ex.train("focal", steps=90, every=10)
    assert not [w for w in caught if issubclass(w.category, ConvdiagWarning)]
    assert mon.report() == []
    assert mon.history[-1]["peaks_above_threshold"] > 0.5


def test_example_script_runs(capsys: pytest.CaptureFixture[str]) -> None:
    ex = _example()
    old, threads = sys.argv, torch.get_num_threads()
    sys.argv = ["monitor_loop.py", "--run", "focal", "--steps", "12", "--every", "5"]
    try:
        ex.main()
    finally:
        sys.argv = old
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    assert "== focal: 12 steps" in out and "findings:" in out


def test_lightning_callback(tmp_path: Path) -> None:
    import lightning.pytorch as pl

    from convdiag.models.detector import reference
    from convdiag.targets.labels import render_batch
    from convdiag.targets.losses import bce_loss, offset_l1_loss
    from convdiag.watch.monitor_lightning import MonitorCallback

    ex = _example()
    rng = np.random.default_rng(0)
    data = [ex.make_batch(rng, 4, 0.6) for _ in range(4)]

    class Module(pl.LightningModule):  # type: ignore[misc,name-defined]
        def __init__(self) -> None:
            super().__init__()
            self.net = reference("P2", width=4)

        def training_step(self, batch: Any, idx: int) -> dict[str, Any]:
            images, points = data[idx]
            out = self.net(images)["P2"]
            lab = render_batch(points, [images.shape[-2:]] * 4, out["cls"].shape[-2:], "P2")
            loss = bce_loss(out["cls"], lab.heatmap, lab.valid) + offset_l1_loss(
                out["reg"], lab.offset, lab.offset_mask
            )
            return {"loss": loss, "outputs": out, "targets": points}

        def train_dataloader(self) -> Any:
            return torch.utils.data.DataLoader(
                torch.utils.data.TensorDataset(torch.arange(4)), batch_size=1
            )

        def configure_optimizers(self) -> Any:
            return torch.optim.Adam(self.parameters(), lr=1e-3)

    cb = MonitorCallback(level="P2", every=2, warn=False)
    trainer = pl.Trainer(max_steps=4, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False,
                         default_root_dir=str(tmp_path), accelerator="cpu",
                         callbacks=[cb])  # fmt: skip
    trainer.fit(Module())
    # measured at calls 1 and 3, recorded at the trainer's global step (after opt.step)
    assert [h["step"] for h in cb.monitor.history] == [1, 3]
    for h in cb.monitor.history:  # the grads of the step were still there
        assert h["cls_grad_norm"] > 0 and h["reg_grad_norm"] > 0
