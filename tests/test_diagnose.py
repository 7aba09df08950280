"""Diagnosis rules on scripted models of known behaviour, thresholds and configuration."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from analyze_models import Oracle, make_dataset

from convdiag.diagnosis.findings import SEVERITY_OF, Finding
from convdiag.diagnosis.rules import Thresholds, sort_findings, verdict
from convdiag.errors import InputError
from convdiag.load.config import load_config
from convdiag.load.recipe import Recipe
from convdiag.load.runner import ModelRunner
from convdiag.remedies.analyze import analyze_dataset
from convdiag.remedies.apply import apply_remedy, parse_remedy
from convdiag.remedies.catalogue import ADVICE_IDS, REMEDY_IDS


def _analyze(model: Oracle, recipe: Recipe | None = None, th: Thresholds | None = None,
             **data: Any) -> dict[str, Any]:  # fmt: skip
    ds = make_dataset(**{"n": 8, "sizes": ((64, 96),), "seed": 0, **data})
    report, _ = analyze_dataset(ModelRunner(model, pad_to=32), ds, recipe or Recipe(),
                                thresholds=th)  # fmt: skip
    return report


def _ids(report: dict[str, Any]) -> list[str]:
    return [f["id"] for f in report["findings"]]


def test_perfect_model_is_healthy() -> None:
    rep = _analyze(Oracle(stride=4))
    assert _ids(rep) == ["healthy"]
    m = rep["metrics"]["P2"]
    assert m["f1_at_0.5"] == 1.0
    assert m["auc"] == pytest.approx(1.0)
    assert m["offset_r2"] == pytest.approx(1.0, abs=1e-6)
    assert rep["verdict"].startswith("healthy at P2")


def test_constant_model_is_background_collapse() -> None:
    rep = _analyze(Oracle(stride=4, cls_scale=0.0, cls_bias=-7.0))
    top = rep["findings"][0]
    assert top["id"] == "background-collapse"
    assert top["severity"] == "error"
    ev = top["evidence"]
    assert ev["f1_at_threshold"] == 0.0
    assert ev["f1_min"] == 0.1 and ev["auc_min"] == 0.9  # the thresholds crossed
    assert ev["auc"] == pytest.approx(0.5)
    assert rep["metrics"]["P2"]["loss_ratio"] > 1.0
    ids = [r["id"] for r in top["remedies"]]
    assert ids[0] == "focal-loss"  # measured best, and it moves the gradient to the targets
    assert "ohem" in ids and ids.index("ohem") > ids.index("pos-weight")
    advice = [r for r in top["remedies"] if not r["applied"]]
    assert [r["id"] for r in advice] == ["spatial-attention"]


def test_low_scores_with_ranking_are_calibration_collapse() -> None:
    # target logit 5 - 6.5 = -1.5 (p 0.18), background -11.5: perfect ranking, all below 0.5
    rep = _analyze(Oracle(stride=4, cls_scale=10.0, cls_bias=-6.5))
    top = rep["findings"][0]
    assert top["id"] == "calibration-collapse"
    assert top["evidence"]["best_f1_low"] == 1.0
    assert top["evidence"]["peaks_above_threshold"] == 0.0
    assert top["remedies"][0]["applied"]


def test_clutter_that_fires_is_fp_flood() -> None:
    rep = _analyze(Oracle(stride=4), clutter=8)
    top = rep["findings"][0]
    assert top["id"] == "fp-flood"
    assert top["evidence"]["fp_per_image"] == pytest.approx(8.0)
    assert top["evidence"]["fp_background"] > top["evidence"]["fp_near_target"]
    assert "ohem" in [r["id"] for r in top["remedies"]]


def test_constant_offsets_at_p4_are_an_untrained_head() -> None:
    """Issue 16: offsets that do not vary at all are a head without learning signal, not a
    cell too coarse: one remedy, checking the offset loss, and no level change."""
    rep = _analyze(Oracle(stride=16, reg_gain=0.0), sizes=((128, 160),), n=10)
    ids = _ids(rep)
    assert "offset-head-untrained" in ids and "regression-collapse" not in ids
    f = rep["findings"][ids.index("offset-head-untrained")]
    assert f["evidence"]["offset_std_ratio_max"] == pytest.approx(0.0, abs=1e-6)
    assert [r["id"] for r in f["remedies"]] == ["check-offset-loss"]
    q = rep["findings"][ids.index("label-quantization")]
    assert q["remedies"] == [] and q["evidence"]["remedies_withheld_for"] == f["id"]


def test_shrunk_offsets_at_p4_are_regression_collapse() -> None:
    # p = 0.5 + 0.1 (t - 0.5): std ratio 0.1 (above the untrained 0.05), R^2 0.19
    rep = _analyze(Oracle(stride=16, reg_gain=0.1), sizes=((128, 160),), n=10)
    ids = _ids(rep)
    assert "regression-collapse" in ids and "offset-head-untrained" not in ids
    assert "label-quantization" in ids
    f = rep["findings"][ids.index("regression-collapse")]
    assert f["evidence"]["offset_std_ratio"] == pytest.approx(0.1, abs=1e-3)
    rem = [r["id"] for r in f["remedies"]]
    assert rem[0] == "fused-head"
    assert {"position-sensitive-offset", "deformable-conv", "coarse-to-fine"} <= set(rem)
    assert all(not r["applied"] for r in f["remedies"] if r["id"] in ADVICE_IDS)


def test_exact_offsets_at_p4_are_not_collapsed() -> None:
    rep = _analyze(Oracle(stride=16, reg_gain=1.0), sizes=((128, 160),), n=10)
    ids = _ids(rep)
    assert "regression-collapse" not in ids
    assert "label-quantization" not in ids  # the offsets recover what the cells lose


def test_nan_outputs_come_first() -> None:
    rep = _analyze(Oracle(stride=4, nan=True))
    assert rep["findings"][0]["id"] == "non-finite-outputs"
    assert rep["verdict"].startswith("error: non-finite outputs")


def test_thresholds_change_the_verdict() -> None:
    model = Oracle(stride=4, cls_scale=10.0, cls_bias=-6.5)
    strict = Thresholds(auc_min=1.01)  # no ranking can pass: calibration becomes background
    assert _analyze(model, th=strict)["findings"][0]["id"] == "background-collapse"
    lenient = Thresholds(f1_min=0.0, calibration_peak_share=0.0)
    assert "calibration-collapse" not in _ids(_analyze(model, th=lenient))


def test_every_remedy_round_trips_through_retrain_parsing() -> None:
    reports = [
        _analyze(Oracle(stride=4, cls_scale=0.0, cls_bias=-7.0)),
        _analyze(Oracle(stride=16, reg_gain=0.0), sizes=((128, 160),)),
        _analyze(Oracle(stride=16, reg_gain=0.1), sizes=((128, 160),)),
        _analyze(Oracle(stride=4), clutter=8),
    ]
    seen = set()
    for rep in reports:
        for f in rep["findings"]:
            assert f["severity"] == SEVERITY_OF.get(f["id"], "info")
            for r in f["remedies"]:
                seen.add(r["id"])
                if not r["applied"]:
                    assert r["id"] in ADVICE_IDS
                    continue
                assert r["id"] in REMEDY_IDS
                text = r["id"] + ":" + ",".join(f"{k}={v}" for k, v in r["params"].items())
                rid, params = parse_remedy(text.rstrip(":"))
                apply_remedy(Recipe(), rid, params)
    assert {"focal-loss", "soft-labels", "pos-weight", "fused-head", "check-offset-loss"} <= seen


def test_retrain_from_report_takes_the_top_remedy(tmp_path: Path) -> None:
    from convdiag.load.files import write_json
    from convdiag.remedies.from_report import remedies_from_report

    rep = _analyze(Oracle(stride=4, cls_scale=0.0, cls_bias=-7.0))
    write_json(tmp_path / "report.json", rep)
    picked, _ = remedies_from_report(tmp_path / "report.json", is_reference=True)
    assert picked[0] == (rep["findings"][0]["remedies"][0]["id"],
                         rep["findings"][0]["remedies"][0]["params"])  # fmt: skip


def test_sort_and_verdict() -> None:
    fs = [
        Finding("label-collision", "P4", {}, "x"),
        Finding("regression-collapse", "P4", {}, "x"),
        Finding("background-collapse", "P2", {}, "x"),
    ]
    out = sort_findings(fs)
    assert [f.id for f in out] == ["background-collapse", "regression-collapse", "label-collision"]
    assert verdict(out) == "error: background collapse at P2 (+2 more findings)"
    assert verdict([]) == "no findings"


# --------------------------------------------------------------------------- config


def test_config_from_pyproject_and_own_file(tmp_path: Path) -> None:
    assert load_config(tmp_path).path is None
    (tmp_path / "pyproject.toml").write_text(
        "[project]\nname='x'\n[tool.convdiag]\nradius = 4\n[tool.convdiag.thresholds]\n"
        "auc_min = 0.8\n[tool.convdiag.check]\nsteps = 5\n"
    )
    cfg = load_config(tmp_path)
    assert cfg.thresholds == {"auc_min": 0.8}
    assert cfg.default("radius", 3.0) == 4.0
    assert cfg.sections == {"check": {"steps": 5}}
    assert Thresholds.from_config(cfg.thresholds).auc_min == 0.8
    (tmp_path / "convdiag.toml").write_text("threshold = 0.3\n[thresholds]\nf1_min = 0.2\n")
    cfg = load_config(tmp_path)
    assert cfg.path == tmp_path / "convdiag.toml"
    assert cfg.thresholds == {"f1_min": 0.2}
    assert cfg.default("threshold", 0.5) == 0.3


@pytest.mark.parametrize(
    "text, match",
    [
        ("[thresholds\n", "not valid TOML"),
        ("[thresholds]\nauc_minimum = 1\n", "unknown threshold 'auc_minimum'"),
        ("[thresholds]\nauc_min = 'high'\n", "must be a number"),
        ("radius = true\n", "must be a number"),
        ("batch = 0\n", "positive integer"),
        ("colour = 'red'\n", "unknown key 'colour'"),
    ],
)
def test_bad_config_is_an_input_error(tmp_path: Path, text: str, match: str) -> None:
    (tmp_path / "convdiag.toml").write_text(text)
    with pytest.raises(InputError, match=match) as e:
        load_config(tmp_path)
    assert "convdiag.toml" in str(e.value)


def test_images_without_targets_are_judged_on_false_positives_only() -> None:
    assert _ids(_analyze(Oracle(stride=4), targets=(0, 0))) == ["healthy"]
    assert _ids(_analyze(Oracle(stride=4), targets=(0, 0), clutter=8)) == ["fp-flood"]
