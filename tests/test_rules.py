"""The rule core driven directly: evidence in, finding ids, severities and remedy ids out.

No model pass: each row sets a few evidence numbers on a healthy baseline (every rule quiet)
and says what must come out, at values just below, at and just above each threshold. The
log rules and the Monitor symptoms run on the same ``Thresholds``; their rows feed a
synthetic history or statistics sample.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest

from convdiag.diagnosis.catalogue import KINDS, SEVERITY_OF, TITLES
from convdiag.diagnosis.findings import Finding
from convdiag.diagnosis.remedy_catalogue import REMEDY_DEFAULTS, SIGNAL_REMEDIES, rank
from convdiag.diagnosis.rules import diagnose
from convdiag.diagnosis.thresholds import Thresholds
from convdiag.load.recipe import Recipe

TH = Thresholds()
EPS = 1e-6


def _healthy() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(results, metrics, label_stats) of one level P2 where no rule fires."""
    res = {
        "outputs": {"cls_nonfinite": 0, "cls_nonfinite_fraction": 0.0,
                    "reg_nonfinite": 0, "reg_nonfinite_fraction": 0.0},
        "scores": {"target_cells": 100},
        "detections": {"threshold": 0.5, "precision_at_threshold": 0.9,
                       "recall_at_threshold": 0.9,
                       "histograms": {"fp_near_miss": 0, "fp_duplicate": 0, "fp_background": 1}},
        "offsets": {"available": True, "target_cells": 100, "offset_std_ratio": 0.9,
                    "offset_r2": 0.8, "rmse_cells": {"centre_predictor": {"x": 0.35, "y": 0.35}},
                    "loc_error_px": {"model_mean": 0.5, "centre_mean": 1.2, "model_p90": 1.0}},
        "gradients": {"candidates": {"current": {"target_area_grad_share": 0.6,
                                                 "cells_for_90pct": 0.1, "shares": {}}}},
        "heads": {"cls_grad_norm": 1.0, "reg_grad_norm": 1.0, "cls_reg_ratio": 1.0},
    }  # fmt: skip
    met = {
        "f1_at_threshold": 0.9, "fp_per_image_at_threshold": 0.1, "auc": 0.99,
        "best_f1_low": 0.9, "best_threshold_low": 0.5, "peaks_above_threshold": 0.9,
        "peak_score_p50": 0.8, "mean_score": 3e-4, "label_prior": 3e-4, "loss_ratio": 0.2,
        "reg_loss": 0.1, "offset_r2": 0.8, "best_f1": 0.9, "pos_grad_share": 0.5,
    }  # fmt: skip
    lv = {
        "stride": 4,
        "neg_per_pos": 4000.0,
        "collision_share": 0.0,
        "collisions": 0,
        "targets": 100,
        "quantization_px": {"p95": 2.5, "mean": 1.5, "share_over_radius": 0.0},
    }
    p4 = {
        "stride": 16,
        "neg_per_pos": 250.0,
        "collision_share": 0.0,
        "collisions": 0,
        "targets": 100,
        "quantization_px": {"p95": 10.0, "mean": 6.0, "share_over_radius": 0.9},
    }
    stats = {"settings": {"radius": 3.0}, "levels": {"P2": lv, "P4": p4}}  # fmt: skip
    return {"P2": res}, {"P2": met}, stats


def _set(d: dict[str, Any], path: str, value: Any) -> None:
    keys = path.split(".")
    for k in keys[:-1]:
        d = d[k]
    d[keys[-1]] = value


def _run(
    changes: dict[str, Any], recipe: Recipe | None = None, th: Thresholds | None = None
) -> list[Finding]:
    res, met, stats = copy.deepcopy(_healthy())
    for path, v in changes.items():
        root, rest = path.split(":", 1)
        target = {"res": res["P2"], "m": met["P2"], "lv": stats["levels"]["P2"]}[root]
        _set(target, rest, v)
    return diagnose(res, met, stats, recipe or Recipe(), th or TH)


# (name, evidence changes, expected ids (sorted), expected top remedy of the first id)
COLLAPSED = {"m:f1_at_threshold": 0.0, "m:auc": 0.6, "m:best_f1_low": 0.0,
             "m:peaks_above_threshold": 0.0}  # fmt: skip
CALIB = {"m:auc": 0.95, "m:best_f1_low": 0.6, "m:peaks_above_threshold": 0.1,
         "m:f1_at_threshold": 0.29}  # fmt: skip
ROWS: list[tuple[str, dict[str, Any], list[str], str | None]] = [
    ("healthy", {}, ["healthy"], None),
    # non-finite-outputs: share > nonfinite_max (0)
    ("nonfinite at", {"res:outputs.cls_nonfinite_fraction": 0.0}, ["healthy"], None),
    ("nonfinite above", {"res:outputs.cls_nonfinite_fraction": 1e-5,
                         "res:outputs.cls_nonfinite": 1}, ["non-finite-outputs", "not-judged"],
     "loss-ramp"),
    ("nonfinite reg above", {"res:outputs.reg_nonfinite_fraction": 1e-5,
                             "res:outputs.reg_nonfinite": 1}, ["non-finite-outputs", "not-judged"],
     "loss-ramp"),
    # background-collapse: F1 < f1_min (0.1) without ranking
    ("collapse below", {**COLLAPSED, "m:f1_at_threshold": TH.f1_min - EPS},
     ["background-collapse"], "focal-loss"),
    ("collapse at", {**COLLAPSED, "m:f1_at_threshold": TH.f1_min,
                     "m:peaks_above_threshold": 0.9}, ["healthy"], None),
    ("collapse above", {**COLLAPSED, "m:f1_at_threshold": TH.f1_min + EPS,
                        "m:peaks_above_threshold": 0.9}, ["healthy"], None),
    # calibration-collapse: AUC >= auc_min, F1 < share x best, peaks < peak share
    ("calibration", CALIB, ["calibration-collapse"], "focal-loss"),
    ("calibration auc below", {**CALIB, "m:auc": TH.auc_min - EPS}, ["healthy"], None),
    ("calibration auc at", {**CALIB, "m:auc": TH.auc_min}, ["calibration-collapse"], None),
    ("calibration f1 at share", {**CALIB, "m:f1_at_threshold": 0.3}, ["healthy"], None),
    ("calibration peaks at share", {**CALIB, "m:peaks_above_threshold": 0.5}, ["healthy"], None),
    ("calibration peaks below share", {**CALIB, "m:peaks_above_threshold": 0.5 - EPS},
     ["calibration-collapse"], None),
    # fp-flood: FP/image > fp_per_image_max and precision < precision_max_flood
    ("flood above", {"m:fp_per_image_at_threshold": TH.fp_per_image_max + EPS,
                     "res:detections.precision_at_threshold": 0.2}, ["fp-flood"], "focal-loss"),
    ("flood at", {"m:fp_per_image_at_threshold": TH.fp_per_image_max,
                  "res:detections.precision_at_threshold": 0.2}, ["healthy"], None),
    ("flood precision at", {"m:fp_per_image_at_threshold": 9.0,
                            "res:detections.precision_at_threshold": TH.precision_max_flood},
     ["healthy"], None),
    ("flood replaces collapse", {**COLLAPSED, "m:fp_per_image_at_threshold": 9.0},
     ["fp-flood"], "focal-loss"),
    ("flood near targets", {"m:fp_per_image_at_threshold": 9.0,
                            "res:detections.precision_at_threshold": 0.2,
                            "res:detections.histograms.fp_near_miss": 5},
     ["fp-flood"], "soft-labels"),
    # regression-collapse: std ratio < 0.5 and R^2 < 0.25 where offsets matter (cell-centre
    # RMS error 4 px x sqrt(2 x 0.35^2) = 1.98 px > 0.6 x the 3 px radius)
    ("regression below", {"res:offsets.offset_std_ratio": 0.5 - EPS,
                          "res:offsets.offset_r2": 0.25 - EPS}, ["regression-collapse"],
     "position-sensitive-offset"),
    ("regression std at", {"res:offsets.offset_std_ratio": 0.5,
                           "res:offsets.offset_r2": 0.0}, ["healthy"], None),
    ("regression r2 at", {"res:offsets.offset_std_ratio": 0.0,
                          "res:offsets.offset_r2": 0.25}, ["healthy"], None),
    ("regression few targets", {"res:offsets.offset_std_ratio": 0.0, "res:offsets.offset_r2": 0.0,
                                "res:offsets.target_cells": 9}, ["healthy"], None),
    ("regression not needed", {"res:offsets.offset_std_ratio": 0.0, "res:offsets.offset_r2": 0.0,
                               "res:offsets.rmse_cells.centre_predictor":
                               {"x": 0.3, "y": 0.3}}, ["healthy"], None),
    # label-quantization: p95 > radius share x radius and the model's p90 > radius
    ("quantization above", {"lv:quantization_px.p95": 3.0 + EPS,
                            "res:offsets.loc_error_px.model_p90": 3.5},
     ["label-quantization"], "position-sensitive-offset"),
    ("quantization at", {"lv:quantization_px.p95": 3.0,
                         "res:offsets.loc_error_px.model_p90": 3.5}, ["healthy"], None),
    ("quantization recovered", {"lv:quantization_px.p95": 3.5,
                                "res:offsets.loc_error_px.model_p90": 3.0}, ["healthy"], None),
    # label-collision: share > collision_share_max
    ("collision above", {"lv:collision_share": TH.collision_share_max + EPS,
                         "lv:collisions": 2}, ["label-collision"], None),
    ("collision at", {"lv:collision_share": TH.collision_share_max}, ["healthy"], None),
    # gradient-starvation: share < grad_share_min or cells90 > max, while unlearned
    ("starvation share below", {"res:gradients.candidates.current.target_area_grad_share":
                                TH.grad_share_min - EPS, "m:peaks_above_threshold": 0.4},
     ["gradient-starvation"], "focal-loss"),
    ("starvation share at", {"res:gradients.candidates.current.target_area_grad_share":
                             TH.grad_share_min, "m:peaks_above_threshold": 0.4},
     ["healthy"], None),
    ("starvation diffuse", {"res:gradients.candidates.current.cells_for_90pct":
                            TH.grad_cells_90_max + EPS, "m:peaks_above_threshold": 0.4},
     ["gradient-starvation"], None),
    ("starvation learned", {"res:gradients.candidates.current.target_area_grad_share": 0.01,
                            "m:peaks_above_threshold": 0.5}, ["healthy"], None),
    # head-imbalance: ratio outside [1/max, max] while the weaker task fails
    ("heads cls weak", {"res:heads.cls_reg_ratio": 1 / TH.head_ratio_max - EPS,
                        "m:f1_at_threshold": 0.4}, ["head-imbalance"], "loss-ramp"),
    ("heads at", {"res:heads.cls_reg_ratio": 1 / TH.head_ratio_max, "m:f1_at_threshold": 0.4},
     ["healthy"], None),
    ("heads cls weak but working", {"res:heads.cls_reg_ratio": 1e-3}, ["healthy"], None),
    ("heads reg weak", {"res:heads.cls_reg_ratio": TH.head_ratio_max + 1,
                        "m:offset_r2": 0.1}, ["head-imbalance"], None),
    ("heads reg weak but working", {"res:heads.cls_reg_ratio": 1e3}, ["healthy"], None),
]  # fmt: skip


@pytest.mark.parametrize("name, changes, ids, top", ROWS, ids=[r[0] for r in ROWS])
def test_rule_table(name: str, changes: dict[str, Any], ids: list[str], top: str | None) -> None:
    fs = _run(changes)
    assert sorted(f.id for f in fs) == sorted(ids), name
    for f in fs:
        assert f.severity == SEVERITY_OF.get(f.id, "info")
        assert f.level == "P2"
    if top is not None:
        first = next(f for f in fs if f.id == ids[0])
        assert first.remedies and first.remedies[0].id == top
        assert all(r.id in REMEDY_DEFAULTS or not r.applied for r in first.remedies)


def test_thresholds_move_the_boundary() -> None:
    changes = {**COLLAPSED, "m:f1_at_threshold": 0.15, "m:peaks_above_threshold": 0.9}
    assert [f.id for f in _run(changes)] == ["healthy"]
    ids = [f.id for f in _run(changes, th=Thresholds.from_config({"f1_min": 0.2}))]
    assert ids == ["background-collapse"]


def test_remedies_the_run_already_uses_are_left_out() -> None:
    fs = _run(COLLAPSED, recipe=Recipe(loss="focal"))
    rem = [r.id for r in fs[0].remedies]
    assert fs[0].id == "background-collapse" and "focal-loss" not in rem
    assert "pos-weight" not in rem and "ohem" not in rem  # BCE only
    assert rem[0] == "soft-labels"


def test_catalogue_is_one_table() -> None:
    assert len({k.id for k in KINDS}) == len(KINDS)
    assert set(SEVERITY_OF) <= set(TITLES)
    assert SEVERITY_OF["background-collapse"] == "error"
    assert SEVERITY_OF["label-collision"] == "warning"
    assert "healthy" not in SEVERITY_OF
    assert set(SIGNAL_REMEDIES) <= set(REMEDY_DEFAULTS)
    assert REMEDY_DEFAULTS["focal-loss"] == {"alpha": 2.0, "beta": 4.0}


def test_ranking_is_evidence_first_and_the_prior_only_breaks_ties() -> None:
    from convdiag.diagnosis.findings import Remedy

    # no evidence either way: the prior orders them (focal 0.63, pos-weight 0.45, OHEM 0.01)
    order = rank([(Remedy("ohem"), 0.0), (Remedy("pos-weight"), 0.0), (Remedy("focal-loss"), 0.0)])
    assert [r.id for r in order] == ["focal-loss", "pos-weight", "ohem"]
    # any gain measured on this model outranks a better prior
    order = rank([(Remedy("focal-loss"), 0.0), (Remedy("pos-weight"), 0.5)])
    assert [r.id for r in order] == ["pos-weight", "focal-loss"]
    # evidence that a remedy hurts puts it behind one without evidence
    order = rank([(Remedy("focal-loss"), -0.3), (Remedy("ohem"), None)])
    assert [r.id for r in order] == ["ohem", "focal-loss"]


# --------------------------------------------------------------------------- Monitor


def _sample(**kw: Any) -> dict[str, Any]:
    st = {"peaks_above_threshold": 0.9, "loss_ratio": 0.3, "pos_grad_share": 0.6,
          "offset_std_ratio": 0.9, "offset_r2": 0.8, "centre_rms_px": 1.98,
          "offset_targets": 100, "cls_reg_ratio": 1.0, "nonfinite": False}  # fmt: skip
    st.update(kw)
    return st


MONITOR_ROWS: list[tuple[dict[str, Any], set[str]]] = [
    ({}, set()),
    ({"nonfinite": True}, {"non-finite-outputs"}),
    ({"peaks_above_threshold": 0.1, "loss_ratio": 1.0 + TH.loss_margin - EPS},
     {"background-collapse"}),
    ({"peaks_above_threshold": 0.1, "loss_ratio": 1.0 + TH.loss_margin + 1e-3}, set()),
    ({"peaks_above_threshold": 0.5, "loss_ratio": 1.0}, set()),
    ({"peaks_above_threshold": 0.1, "pos_grad_share": TH.grad_share_min - EPS},
     {"gradient-starvation"}),
    ({"peaks_above_threshold": 0.1, "pos_grad_share": TH.grad_share_min}, set()),
    ({"offset_std_ratio": 0.5 - EPS, "offset_r2": 0.25 - EPS}, {"regression-collapse"}),
    ({"offset_std_ratio": 0.5, "offset_r2": 0.0}, set()),
    ({"offset_std_ratio": 0.0, "offset_r2": 0.0, "centre_rms_px": 1.79}, set()),
    ({"offset_std_ratio": 0.0, "offset_r2": 0.0, "offset_targets": 9}, set()),
    ({"cls_reg_ratio": 1 / TH.head_ratio_max - EPS, "peaks_above_threshold": 0.1,
      "loss_ratio": 0.5}, {"head-imbalance"}),
    ({"cls_reg_ratio": 1 / TH.head_ratio_max - EPS}, set()),
]  # fmt: skip


@pytest.mark.parametrize("sample, expected", MONITOR_ROWS)
def test_monitor_symptom_table(sample: dict[str, Any], expected: set[str]) -> None:
    from convdiag.watch.monitor import Monitor

    mon = Monitor("P2", warn=False, radius=3.0)
    found = {k for k, v in mon._symptoms(_sample(**sample)).items() if v}
    assert found == expected


# --------------------------------------------------------------------------- logs


def _log(cols: dict[str, list[float]]) -> Any:
    from convdiag.watch.mapping import map_columns
    from convdiag.watch.table import RawLog, Series

    series = {}
    for k, v in cols.items():
        series[k] = Series(k, np.arange(len(v), dtype=float) * 10, np.asarray(v, float))
    return map_columns(RawLog("csv", "x.csv", ["x.csv"], series), {})


@pytest.mark.parametrize(
    "cols, expected",
    [
        ({"val/f1": [0.5, 0.3, 0.05, 0.05, 0.05]}, {"background-collapse"}),
        ({"val/f1": [0.5, 0.3, 0.05, 0.05, TH.f1_min]}, set()),
        ({"val/f1": [0.5, 0.3, 0.3, 0.05, 0.05]}, set()),  # 2 points < min_points
        ({"val/f1": [0.5, 0.6, 0.7, 0.8, 0.9]}, set()),
    ],
)
def test_log_rule_table(cols: dict[str, list[float]], expected: set[str]) -> None:
    from convdiag.watch.symptoms import Reference, find_symptoms

    fs = find_symptoms(_log(cols), Reference(level="P2"), TH)
    assert {f.id for f in fs} - {"loss-plateau", "healthy"} == expected


# --------------------------------------------------------------------------- labels


def _label_stats(**p2: Any) -> dict[str, Any]:
    lv = {"stride": 4, "neg_per_pos": 500.0, "pos_fraction": 0.002, "collision_share": 0.0,
          "collisions": 0, "targets": 100,
          "quantization_px": {"p95": 2.0, "mean": 1.2, "max": 2.6, "share_over_radius": 0.0},
          "constant_loss": {"bce": 0.01, "focal": 0.02},
          "initial_pos_grad_share_zero_bias": 0.001}  # fmt: skip
    lv.update(p2)
    return {"settings": {"radius": 3.0, "trunc": 0.1}, "levels": {"P2": lv}}


LABEL_ROWS: list[tuple[dict[str, Any], set[str]]] = [
    ({}, set()),
    ({"neg_per_pos": TH.neg_per_pos_max}, set()),
    ({"neg_per_pos": TH.neg_per_pos_max + 1}, {"extreme-imbalance"}),
    ({"collision_share": TH.collision_share_max}, set()),
    ({"collision_share": TH.collision_share_max + EPS, "collisions": 2}, {"label-collision"}),
    ({"quantization_px": {"p95": 0.9 * 3.0, "mean": 1.5, "max": 3.0,
                          "share_over_radius": 0.0}}, set()),
    ({"quantization_px": {"p95": 0.9 * 3.0 + 1e-3, "mean": 1.5, "max": 3.0,
                          "share_over_radius": 0.0}}, {"label-quantization"}),
]  # fmt: skip


@pytest.mark.parametrize("p2, expected", LABEL_ROWS)
def test_label_rule_table(p2: dict[str, Any], expected: set[str]) -> None:
    from convdiag.diagnosis.rules_labels import label_findings

    fs = label_findings(_label_stats(**p2))
    assert {f.id for f in fs} == expected
    assert all(f.severity == "warning" for f in fs)
    if "extreme-imbalance" in expected:
        assert [r.id for r in fs[0].remedies][:2] == ["focal-loss", "soft-labels"]
        assert fs[0].remedies[0].params == {"alpha": 2.0, "beta": 4.0}
