"""Issue 16 end to end: ``convdiag analyze`` on checkpoints trained on the tiny synthetic set.

A network killed by a 100x learning rate and one whose neck was killed by zeroing weights
read as dead-network (restart with a lower learning rate, warm-up, clipping; the collapse's
label and loss remedies withheld); a P4 model trained with offset-loss weight 0 reads as
offset-head-untrained (no level change), the same model trained with its offset loss does
not; the healthy P2 model raises neither.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from bad.helpers import run_cli

# the recipes test_cli_analyze trains too (one training per session for both)
HEALTHY = {"head": "P2", "labels": "soft", "kernel": 3, "sigma": 1.0, "loss": "focal",
           "bias_init": "prior"}  # fmt: skip
P4 = {"head": "P4", "labels": "hard", "loss": "bce", "bias_init": "prior"}
NEW = ("dead-network", "offset-head-untrained")


def _analyze(ckpt: Path, data: Path) -> dict[str, Any]:
    out = run_cli(["analyze", ckpt, "--data", data, "--format", "json", "--fail-on", "never"])
    assert out.code == 0, out.stderr
    rep: dict[str, Any] = json.loads(out.stdout)
    return rep


def _by_id(rep: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f["id"]: f for f in rep["findings"]}


def _assert_dead(rep: dict[str, Any]) -> dict[str, Any]:
    fs = _by_id(rep)
    assert rep["findings"][0]["id"] == "dead-network", rep["verdict"]
    dead = fs["dead-network"]
    assert [r["id"] for r in dead["remedies"]] == ["restart-lower-lr", "lr-warmup", "grad-clip"]
    assert not any(r["applied"] for r in dead["remedies"])
    for f in rep["findings"][1:]:  # the collapse stays, as a symptom, without remedies
        if f["id"] in ("background-collapse", "calibration-collapse", "fp-flood"):
            assert f["remedies"] == [], f
            assert f["evidence"]["remedies_withheld_for"] == "dead-network"
    return dead


@pytest.mark.slow
def test_huge_learning_rate_kills_the_network(
    trained_checkpoint: Callable[..., Path], tiny_dataset: Path
) -> None:
    ckpt = trained_checkpoint(steps=40, **{**HEALTHY, "lr": 0.3})  # 100x the default
    rep = _analyze(ckpt, tiny_dataset)
    dead = _assert_dead(rep)
    act = rep["analyses"]["P2"]["activations"]
    # blown up: BatchNorm running variances and logits thousands of times their usual size
    assert act["bn_var_median"] > 1e3 and dead["evidence"]["bn_var_median"] > 1e3
    assert act["cls_abs_max"] > 1e3
    assert rep["metrics"]["P2"]["best_f1"] < 0.1
    assert dead["remedies"][0]["params"]["lr"] == pytest.approx(0.03)


@pytest.mark.slow
def test_zeroed_neck_is_a_dead_network_and_healthy_is_not(
    trained_checkpoint: Callable[..., Path], tiny_dataset: Path, tmp_path: Path
) -> None:
    good = trained_checkpoint(**HEALTHY)
    rep = _analyze(good, tiny_dataset)
    assert not set(NEW) & set(_by_id(rep)), rep["verdict"]
    act = rep["analyses"]["P2"]["activations"]
    assert act["feeding_dead_share"] < 0.5 and act["bn_var_median"] < 10
    assert act["cls_image_range"] > 1.0  # the outputs depend on the image
    # kill the neck: the last conv before the P2 head and the lateral into it read nothing
    ck = torch.load(good, map_location="cpu", weights_only=False)
    ck["state_dict"]["stem.1.0.weight"].zero_()
    ck["state_dict"]["lat2.weight"].zero_()
    bad = tmp_path / "dead_neck.pt"
    torch.save(ck, bad)
    rep = _analyze(bad, tiny_dataset)
    dead = _assert_dead(rep)
    assert dead["evidence"]["feeding_dead_share"] == 1.0
    assert rep["analyses"]["P2"]["activations"]["cls_image_range"] == 0.0
    assert "offset-head-untrained" not in _by_id(rep)


@pytest.mark.slow
def test_offset_loss_weight_0_at_p4_is_an_untrained_head(
    trained_checkpoint: Callable[..., Path], tiny_dataset: Path
) -> None:
    untrained = _analyze(trained_checkpoint(steps=150, **{**P4, "reg_weight": 0.0}), tiny_dataset)
    trained = _analyze(trained_checkpoint(**P4), tiny_dataset)
    fs = _by_id(untrained)
    assert untrained["findings"][0]["id"] == "offset-head-untrained", untrained["verdict"]
    f = fs["offset-head-untrained"]
    assert "regression-collapse" not in fs
    assert [r["id"] for r in f["remedies"]] == ["check-offset-loss"]
    assert f["evidence"]["reg_weight"] == 0.0 and f["evidence"]["offset_std_ratio_max"] < 0.05
    if "label-quantization" in fs:  # a trained head recovers it: no level change offered
        assert fs["label-quantization"]["remedies"] == []
    off_u, off_t = untrained["analyses"]["P4"]["offsets"], trained["analyses"]["P4"]["offsets"]
    assert off_u["offset_r2"] < 0.1 < 0.5 < off_t["offset_r2"]
    assert not set(NEW) & set(_by_id(trained)), trained["verdict"]
