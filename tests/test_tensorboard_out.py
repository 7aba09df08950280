"""``--tensorboard LOGDIR`` (issue 13): a report written into a TensorBoard run, read back
with convdiag's own event reader (scalars) and with the tensorboard package's reader
(scalars, text, images), at the step the checkpoint was trained to."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from convdiag.report.tensorboard import write_tensorboard
from convdiag.watch.tensorboard import read_tensorboard


def _report(tmp_path: Path) -> dict:
    img = np.zeros((20, 30, 3), np.uint8)
    img[5:10, 5:25] = (200, 30, 30)
    Image.fromarray(img).save(tmp_path / "P2_gradients.png")
    return {
        "kind": "analyze", "verdict": "error: background collapse at P2",
        "metrics": {"P2": {"f1_at_0.5": 0.0, "auc": 0.625, "loc_error_px": None}},
        "findings": [{"id": "background-collapse", "severity": "error", "level": "P2",
                      "evidence": {"auc": 0.625}}],
        "plots": {"P2": {"gradients": "P2_gradients.png"}},
    }  # fmt: skip


def test_report_round_trips_through_tensorboard(tmp_path: Path) -> None:
    logdir = tmp_path / "tb"
    tags = write_tensorboard(_report(tmp_path), logdir, step=1200, base=tmp_path)
    assert "convdiag/P2/auc" in tags and "convdiag/P2/gradients" in tags
    files = sorted(logdir.glob("events.out.tfevents.*"))
    raw = read_tensorboard(files, logdir)  # convdiag's own reader
    auc = raw.columns["convdiag/P2/auc"]
    assert auc.x.tolist() == [1200.0] and auc.values.tolist() == [0.625]
    assert raw.columns["convdiag/findings/error"].values.tolist() == [1.0]
    assert "convdiag/P2/loc_error_px" not in raw.columns  # None is not a number
    acc = EventAccumulator(str(logdir), size_guidance={"images": 0, "tensors": 0})
    acc.Reload()
    assert acc.Scalars("convdiag/P2/f1_at_0.5")[0].step == 1200
    image = acc.Images("convdiag/P2/gradients")[0]
    assert (image.width, image.height, image.step) == (30, 20, 1200)
    text = acc.Tensors("convdiag/findings/text_summary")[0]
    assert b"background-collapse" in text.tensor_proto.string_val[0]


@pytest.mark.slow
def test_analyze_and_retrain_write_into_the_users_run(
    tiny_dataset: Path, trained_checkpoint: Any, tmp_path_factory: pytest.TempPathFactory
) -> None:
    from test_npz_plots import command_outputs

    ckpt = trained_checkpoint(head="P2", labels="hard", loss="bce", bias_init="zero")
    outs = command_outputs(tmp_path_factory, tiny_dataset, ckpt)
    trained = json.loads((outs["analyze"] / "report.json").read_text())["checkpoint_step"]
    assert trained == 300  # the fixture's checkpoint was trained 300 steps
    files = sorted(outs["tb"].glob("events.out.tfevents.*"))
    assert len(files) == 2  # analyze's, then retrain's, into the same run folder
    raw = read_tensorboard(files, outs["tb"])  # convdiag's own reader: one process, one run
    auc = raw.columns["convdiag/P2/auc"]
    analyzed = json.loads((outs["analyze"] / "report.json").read_text())
    assert auc.x.tolist() == [300.0]
    assert auc.values[0] == pytest.approx(analyzed["metrics"]["P2"]["auc"], rel=1e-6)
    history = json.loads((outs["retrain"] / "report.json").read_text())["history"]["remedy"]
    f1 = raw.columns["convdiag/remedy/f1_at_0.5"]
    want = [(300 + r["step"], r["f1_at_0.5"]) for r in history if r.get("f1_at_0.5") is not None]
    assert f1.x.tolist() == [float(x) for x, _ in want]
    assert f1.values.tolist() == pytest.approx([v for _, v in want])
    assert min(f1.x) >= 300  # the retrain continues the user's curves, not from 0
    acc = EventAccumulator(str(outs["tb"]), size_guidance={"images": 0, "tensors": 0})
    acc.Reload()
    images = set(acc.Tags()["images"])
    assert {
        "convdiag/P2/gradients",
        "convdiag/P2/scores",
        "convdiag/P2/labels",
        "convdiag/curves",
    } <= images  # gradient map, score histogram, label overlay
    shot = acc.Images("convdiag/P2/gradients")[0]
    with Image.open(outs["analyze"] / "P2_gradients.png") as im:
        assert (shot.width, shot.height, shot.step) == (*im.size, 300)
    text = acc.Tensors("convdiag/findings/text_summary")[0].tensor_proto.string_val[0]
    assert b"background-collapse" in text


def test_monitor_writes_every_sample(tmp_path: Path) -> None:
    import torch

    from convdiag.watch.monitor import Monitor

    rng = np.random.default_rng(0)
    pts = [np.array([[10.5, 6.5], [30.0, 20.0]]), np.array([[50.0, 40.0]])]
    mon = Monitor("P2", every=2, warn=False, tensorboard=tmp_path / "tb")
    samples = []
    for step in range(1, 7):
        z = torch.from_numpy(rng.normal(-6, 0.1, (2, 1, 12, 16))).float()
        st = mon.update({"cls": z}, pts, step=100 * step)
        samples += [st] if st is not None else []
    files = sorted((tmp_path / "tb").glob("events.out.tfevents.*"))
    raw = read_tensorboard(files, tmp_path / "tb")
    mean = raw.columns["convdiag/P2/mean_score"]
    assert mean.x.tolist() == [100.0, 300.0, 500.0]  # the samples, at the user's steps
    assert mean.values.tolist() == pytest.approx([s["mean_score"] for s in samples])
    acc = EventAccumulator(str(tmp_path / "tb"), size_guidance={"tensors": 0})
    acc.Reload()
    assert [e.step for e in acc.Scalars("convdiag/findings/error")] == [100, 300, 500]
    assert acc.Tensors("convdiag/findings/text_summary")  # the findings as text


def test_bad_logdir_is_one_error_line(tmp_path: Path) -> None:
    from bad.helpers import error_line, run_cli

    taken = tmp_path / "file"
    taken.write_text("x")
    for args in (["analyze", tmp_path / "missing.pt", "--data", tmp_path],
                 ["train", tmp_path, "--out", tmp_path / "run"]):  # fmt: skip
        line = error_line(run_cli([*args, "--tensorboard", taken]))
        assert "--tensorboard" in line and "file" in line, line
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_train_writes_its_curves_at_their_steps(tiny_dataset: Path, tmp_path: Path) -> None:
    from bad.helpers import run_cli

    tb = tmp_path / "tb"
    args = ["train", tiny_dataset, "--steps", 4, "--eval-every", 2, "--out", tmp_path / "run"]
    res = run_cli([*args, "--tensorboard", tb, "--format", "json"])
    assert res.code == 0, res.stderr
    raw = read_tensorboard(sorted(tb.glob("events.out.tfevents.*")), tb)
    with (tmp_path / "run" / "history.csv").open() as f:
        rows = list(csv.DictReader(f))
    steps = [float(r["step"]) for r in rows if r["f1_at_0.5"]]
    assert steps
    assert raw.columns["convdiag/train/f1_at_0.5"].x.tolist() == steps
    acc = EventAccumulator(str(tb), size_guidance={"images": 0})
    acc.Reload()
    assert [i.step for i in acc.Images("convdiag/curves")] == [4]  # at the last step
