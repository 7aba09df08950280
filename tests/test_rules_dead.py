"""dead-network and offset-head-untrained (issue 16) at their boundaries, on the rule core.

No model pass: each row sets a few evidence numbers on a healthy baseline of one level
(every rule quiet) and says which findings come out and which of them keep their remedies,
at values just below, at and just above each threshold.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from convdiag.diagnosis.findings import Finding
from convdiag.diagnosis.remedy_catalogue import ADVICE_IDS
from convdiag.diagnosis.rules import diagnose
from convdiag.diagnosis.thresholds import Thresholds
from convdiag.load.recipe import Recipe

TH = Thresholds()
EPS = 1e-6


def _healthy(level: str = "P2") -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(results, metrics, label_stats) of one level where no rule fires."""
    stride = int(2 ** int(level[1:]))
    res = {
        "outputs": {"cls_nonfinite": 0, "cls_nonfinite_fraction": 0.0,
                    "reg_nonfinite": 0, "reg_nonfinite_fraction": 0.0},
        "scores": {"target_cells": 100},
        "detections": {"threshold": 0.5, "precision_at_threshold": 0.9,
                       "recall_at_threshold": 0.9,
                       "histograms": {"fp_near_miss": 0, "fp_duplicate": 0, "fp_background": 1}},
        "offsets": {"available": True, "target_cells": 100, "offset_std_ratio": 0.9,
                    "offset_r2": 0.8, "std_ratio": {"x": 0.9, "y": 0.9},
                    "pred_std": {"x": 0.26, "y": 0.26}, "target_std": {"x": 0.29, "y": 0.29},
                    "rmse_cells": {"centre_predictor": {"x": 0.35, "y": 0.35}},
                    "loc_error_px": {"model_mean": 0.5, "centre_mean": 1.2, "model_p90": 1.0}},
        "gradients": {"candidates": {"current": {"target_area_grad_share": 0.6,
                                                 "cells_for_90pct": 0.1, "shares": {}}}},
        "heads": {"cls_grad_norm": 1.0, "reg_grad_norm": 1.0, "cls_reg_ratio": 1.0},
        "activations": {"layers_probed": 20, "dead_share": 0.01, "feeding_layer": "head:input",
                        "feeding_channels": 32, "feeding_dead": 0, "feeding_dead_share": 0.0,
                        "worst_layer": "neck", "worst_dead_share": 0.1, "bn_var_median": 0.3,
                        "bn_var_max": 0.8, "cls_abs_max": 12.0, "cls_image_range": 9.0,
                        "images": 48},
    }  # fmt: skip
    met = {
        "f1_at_threshold": 0.9, "fp_per_image_at_threshold": 0.1, "auc": 0.99,
        "best_f1_low": 0.9, "best_threshold_low": 0.5, "peaks_above_threshold": 0.9,
        "peak_score_p50": 0.8, "mean_score": 3e-4, "label_prior": 3e-4, "loss_ratio": 0.2,
        "reg_loss": 0.1, "offset_r2": 0.8, "best_f1": 0.9, "pos_grad_share": 0.5,
        "reg_grad_norm": 1.0,
    }  # fmt: skip
    lv = {"stride": stride, "neg_per_pos": 4000.0, "collision_share": 0.0, "collisions": 0,
          "targets": 100,
          "quantization_px": {"p95": 2.5, "mean": 1.5, "share_over_radius": 0.0}}  # fmt: skip
    stats = {"settings": {"radius": 3.0}, "levels": {level: lv}}
    return {level: res}, {level: met}, stats


def _set(d: dict[str, Any], path: str, value: Any) -> None:
    keys = path.split(".")
    for k in keys[:-1]:
        d = d[k]
    if value is DROP:
        del d[keys[-1]]
    else:
        d[keys[-1]] = value


DROP = object()


def _run(changes: dict[str, Any], recipe: Recipe | None = None) -> list[Finding]:
    res, met, stats = copy.deepcopy(_healthy())
    for path, v in changes.items():
        root, rest = path.split(":", 1)
        target = {"res": res["P2"], "m": met["P2"], "lv": stats["levels"]["P2"]}[root]
        _set(target, rest, v)
    return diagnose(res, met, stats, recipe or Recipe(), TH)


FAILED = {"m:f1_at_threshold": 0.0, "m:auc": 0.5, "m:best_f1_low": 0.0, "m:best_f1": 0.0,
          "m:peaks_above_threshold": 0.0}  # fmt: skip
FEED = {**FAILED, "res:activations.feeding_dead_share": 1.0, "res:activations.feeding_dead": 32}
# offsets that do not vary: std ratio below 5% on both axes, R^2 about 0
FLAT = {"res:offsets.offset_std_ratio": 0.0, "res:offsets.offset_r2": -0.01,
        "res:offsets.std_ratio": {"x": 0.05 - EPS, "y": 0.0}}  # fmt: skip
QUANT = {"lv:quantization_px.p95": 3.5, "res:offsets.loc_error_px.model_p90": 3.5}
W = "withheld"

# (name, changes, {finding id: first remedy id, or W for remedies withheld, or None})
ROWS: list[tuple[str, dict[str, Any], dict[str, str | None]]] = [
    ("healthy", {}, {"healthy": None}),
    # dead-network: head inputs constant, share >= dead_feeding_share_min, detection failed
    ("feeding at", {**FEED, "res:activations.feeding_dead_share": TH.dead_feeding_share_min},
     {"dead-network": "restart-lower-lr", "background-collapse": W}),
    ("feeding below", {**FEED, "res:activations.feeding_dead_share":
                       TH.dead_feeding_share_min - EPS}, {"background-collapse": "focal-loss"}),
    ("feeding dead, detection works", {**FEED, "m:best_f1": TH.f1_min, "m:f1_at_threshold":
                                       0.9, "m:peaks_above_threshold": 0.9}, {"healthy": None}),
    ("feeding dead, best F1 below", {**FEED, "m:best_f1": TH.f1_min - EPS},
     {"dead-network": "restart-lower-lr", "background-collapse": W}),
    # BatchNorm running variance median >= dead_bn_var_median_min
    ("bn at", {**FAILED, "res:activations.bn_var_median": TH.dead_bn_var_median_min},
     {"dead-network": "restart-lower-lr", "background-collapse": W}),
    ("bn below", {**FAILED, "res:activations.bn_var_median": TH.dead_bn_var_median_min - 1},
     {"background-collapse": "focal-loss"}),
    ("bn max alone", {**FAILED, "res:activations.bn_var_max": 1e8},
     {"background-collapse": "focal-loss"}),
    # largest |logit| >= dead_logit_abs_min
    ("logits at", {**FAILED, "res:activations.cls_abs_max": TH.dead_logit_abs_min},
     {"dead-network": "restart-lower-lr", "background-collapse": W}),
    ("logits below", {**FAILED, "res:activations.cls_abs_max": TH.dead_logit_abs_min - 1},
     {"background-collapse": "focal-loss"}),
    # no probe (TorchScript), an old report without the analysis: not judged
    ("no probe", {**FAILED, "res:activations.feeding_dead_share": None,
                  "res:activations.bn_var_median": None}, {"background-collapse": "focal-loss"}),
    ("no activations", {**FEED, "res:activations": DROP}, {"background-collapse": "focal-loss"}),
    # the collapse that a dead network explains keeps no remedy, whichever it is
    ("dead flood", {**FEED, "m:fp_per_image_at_threshold": 9.0},
     {"dead-network": "restart-lower-lr", "fp-flood": W}),
    ("dead, no targets", {**FEED, "res:scores.target_cells": 0, "m:best_f1": None,
                          "m:fp_per_image_at_threshold": 9.0},
     {"dead-network": "restart-lower-lr", "fp-flood": W}),
    ("dead, offsets flat too", {**FEED, **FLAT},
     {"dead-network": "restart-lower-lr", "background-collapse": W, "offset-head-untrained": W}),
    # non-finite scores: the dead-network check rests on them and is not judged
    ("dead, non-finite", {**FEED, "res:outputs.cls_nonfinite_fraction": 0.01,
                          "res:outputs.cls_nonfinite": 5},
     {"non-finite-outputs": "loss-ramp", "not-judged": None}),
    # offset-head-untrained: std ratio < offset_untrained_std_ratio on both axes, where
    # offsets matter (cell-centre RMS 1.98 px > 0.6 x 3 px) and >= min_targets target cells
    ("flat", FLAT, {"offset-head-untrained": "check-offset-loss"}),
    ("flat one axis at", {**FLAT, "res:offsets.std_ratio": {"x": TH.offset_untrained_std_ratio,
                                                           "y": 0.0}},
     {"regression-collapse": "position-sensitive-offset"}),
    ("flat, few targets", {**FLAT, "res:offsets.target_cells": 9}, {"healthy": None}),
    ("flat, not needed", {**FLAT, "res:offsets.rmse_cells.centre_predictor":
                          {"x": 0.3, "y": 0.3}}, {"healthy": None}),
    ("shrunk, not flat", {"res:offsets.offset_std_ratio": 0.2, "res:offsets.offset_r2": 0.1,
                          "res:offsets.std_ratio": {"x": 0.2, "y": 0.2}},
     {"regression-collapse": "position-sensitive-offset"}),
    # the quantisation a trained head recovers: no level change
    ("flat and quantised", {**FLAT, **QUANT},
     {"offset-head-untrained": "check-offset-loss", "label-quantization": W}),
    ("quantised, trained", QUANT, {"label-quantization": "position-sensitive-offset"}),
    # F1 failing although the target peaks fire: the untrained offsets misplace them, and
    # no collapse is reported; a collapse whose peaks do not fire stays, with its remedies
    ("flat, peaks fire", {**FLAT, **FAILED, "m:peaks_above_threshold":
                          TH.calibration_peak_share},
     {"offset-head-untrained": "check-offset-loss"}),
    ("flat, peaks below", {**FLAT, **FAILED, "m:peaks_above_threshold":
                           TH.calibration_peak_share - EPS},
     {"offset-head-untrained": "check-offset-loss", "background-collapse": "focal-loss"}),
]  # fmt: skip


@pytest.mark.parametrize("name, changes, want", ROWS, ids=[r[0] for r in ROWS])
def test_rule_table(name: str, changes: dict[str, Any], want: dict[str, str | None]) -> None:
    fs = _run(changes)
    assert sorted(f.id for f in fs) == sorted(want), name
    for f in fs:
        top = want[f.id]
        if top == W:
            assert f.remedies == [] and "withheld" in f.explanation
            assert f.evidence["remedies_withheld_for"] in ("dead-network", "offset-head-untrained")
        elif top is not None:
            assert f.remedies and f.remedies[0].id == top, (name, f.id, f.remedies)
    for f in fs:
        if f.id in ("dead-network", "offset-head-untrained"):
            assert all(r.id in ADVICE_IDS and not r.applied for r in f.remedies)
            assert "level-change" not in [r.id for r in f.remedies]


def test_dead_network_evidence_and_remedy_numbers() -> None:
    fs = _run({**FEED, "res:activations.bn_var_median": 5e7}, Recipe(lr=3.0))
    dead = next(f for f in fs if f.id == "dead-network")
    # the numbers that fired come first: renderers show the first few
    assert list(dead.evidence)[:5] == ["feeding_dead_share", "feeding_dead", "feeding_channels",
                                       "bn_var_median", "bn_var_max"]  # fmt: skip
    assert dead.evidence["feeding_dead_share"] == 1.0 and dead.evidence["bn_var_median"] == 5e7
    assert "32 of the 32 channels" in dead.explanation and "5e+07" in dead.explanation
    rem = {r.id: r for r in dead.remedies}
    assert list(rem) == ["restart-lower-lr", "lr-warmup", "grad-clip"]
    assert rem["restart-lower-lr"].params == {"lr": pytest.approx(0.3)}
    assert "3 -> 0.3" in rem["restart-lower-lr"].why
    assert rem["grad-clip"].params == {"max_norm": 1.0}


def test_untrained_head_evidence_and_remedy_numbers() -> None:
    fs = _run(FLAT, Recipe(reg_weight=0.0))
    f = next(f for f in fs if f.id == "offset-head-untrained")
    assert f.evidence["offset_std_ratio_max"] == pytest.approx(0.05, rel=1e-3)  # 4 digits
    assert f.evidence["reg_weight"] == 0.0 and f.evidence["target_std_x"] == 0.29
    assert [r.id for r in f.remedies] == ["check-offset-loss"]
    assert "reg_weight) is 0" in f.remedies[0].why
    assert "finer level would not help" in f.explanation


def test_untrained_head_explains_the_collapse_it_causes() -> None:
    fs = _run({**FLAT, **FAILED, "m:peaks_above_threshold": 0.8})
    assert [f.id for f in fs] == ["offset-head-untrained"]
    ev = fs[0].evidence
    assert ev["suppressed"] == "background-collapse" and ev["peaks_above_threshold"] == 0.8
    assert "80.0% of the target peaks reach the threshold" in fs[0].explanation
    fs = _run({**FLAT, **FAILED, "m:peaks_above_threshold": 0.2})
    assert [f.id for f in fs] == ["background-collapse", "offset-head-untrained"]


def test_thresholds_move_the_boundaries() -> None:
    res, met, stats = copy.deepcopy(_healthy())
    res["P2"]["activations"]["feeding_dead_share"] = 0.3
    met["P2"].update({k.split(":")[1]: v for k, v in FAILED.items()})
    ids = {f.id for f in diagnose(res, met, stats, Recipe(), TH)}
    assert "dead-network" not in ids
    lenient = Thresholds.from_config({"dead_feeding_share_min": 0.25})
    assert "dead-network" in {f.id for f in diagnose(res, met, stats, Recipe(), lenient)}
