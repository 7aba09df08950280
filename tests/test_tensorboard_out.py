"""``--tensorboard LOGDIR`` (issue 13): a report written into a TensorBoard run, read back
with convdiag's own event reader (scalars) and with the tensorboard package's reader
(scalars, text, images), at the step the checkpoint was trained to."""

from __future__ import annotations

from pathlib import Path

import numpy as np
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
