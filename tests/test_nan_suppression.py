"""Non-finite outputs: the checks that rest on them are left out and listed in not-judged.

A reference detector with one NaN weight outputs NaN everywhere; the pass replaces NaN
logits by 0 (score 0.5 in every cell), so without the suppression every cell would be a
peak and the level an fp-flood. NaN in the offset head only leaves the score checks
judged and the offset checks out.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from convdiag.diagnosis.rules_common import Ctx
from convdiag.diagnosis.rules_model import OFFSET_CHECKS, SCORE_CHECKS, collapse
from convdiag.diagnosis.thresholds import Thresholds
from convdiag.load.recipe import Recipe
from convdiag.load.runner import ModelRunner
from convdiag.load.sample import PointDataset, Record
from convdiag.load.synth import SynthConfig, render_synthetic
from convdiag.models.detector import reference
from convdiag.remedies.analyze import analyze_dataset


def _dataset(n: int = 6, size: tuple[int, int] = (64, 64)) -> PointDataset:
    rng = np.random.default_rng(0)
    cfg = SynthConfig(n=n, size=size, snr=6.0, targets=(2, 4), seed=0)
    images, records = [], []
    for i in range(n):
        img, _mask, pts = render_synthetic(rng, cfg)
        images.append(img)
        records.append(Record(str(i), Path(f"{i}.png"), size, pts))
    return PointDataset(records, lambda r: images[int(r.id)], "memory", "test")


def _analyze(poison: str) -> tuple[dict[str, Any], Any]:
    torch.manual_seed(0)
    model = reference(head="P2", width=8)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if poison in name:
                p[(0,) * p.ndim] = float("nan")
                break
        else:
            raise AssertionError(f"no parameter named like {poison!r}")
    return analyze_dataset(ModelRunner(model), _dataset(), Recipe(head="P2"))


def _first_backbone_weight() -> str:
    model = reference(head="P2", width=8)
    return next(n for n, _ in model.named_parameters() if "weight" in n)


def test_nan_model_is_non_finite_and_nothing_else_is_judged() -> None:
    rep, _ = _analyze(_first_backbone_weight())
    ids = [f["id"] for f in rep["findings"]]
    assert ids[0] == "non-finite-outputs", ids
    assert "not-judged" in ids
    assert not set(ids) & set(SCORE_CHECKS + OFFSET_CHECKS), ids
    nj = next(f for f in rep["findings"] if f["id"] == "not-judged")
    assert nj["severity"] == "info" and nj["level"] == "P2"
    assert {"fp-flood", "background-collapse", "calibration-collapse"} <= set(
        nj["evidence"]["checks"]
    )
    assert nj["evidence"]["cls_nonfinite_fraction"] == 1.0
    assert "fp-flood" in nj["explanation"] and "could not be judged" in nj["explanation"]
    # the same measurements, judged without the suppression, read as a false-positive flood
    res, m = rep["analyses"]["P2"], rep["metrics"]["P2"]
    c = Ctx("P2", res, m, rep["labels"], rep["labels"]["levels"]["P2"], Recipe(),
            Thresholds(), rep["targets"], True, 3.0)  # fmt: skip
    assert [f.id for f in collapse(c)] == ["fp-flood"]


def test_nan_offsets_leave_the_score_checks_judged() -> None:
    rep, _ = _analyze("reg")
    ids = [f["id"] for f in rep["findings"]]
    assert ids[0] == "non-finite-outputs", ids
    nj = next(f for f in rep["findings"] if f["id"] == "not-judged")
    checks = set(nj["evidence"]["checks"])
    assert set(OFFSET_CHECKS) <= checks
    assert not checks & {"fp-flood", "background-collapse", "calibration-collapse"}
    assert nj["evidence"]["cls_nonfinite_fraction"] == 0.0
    # the untrained model's scores are still judged: it detects nothing
    assert set(ids) & {"background-collapse", "calibration-collapse", "fp-flood"}, ids
    assert not set(ids) & checks
