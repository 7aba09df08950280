"""The demo command: the report shape on a tiny run, and --from-report picking remedies."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from convdiag.cli.main import cli
from convdiag.errors import InputError
from convdiag.remedies.from_report import remedies_from_report

KEYS = {"f1_at_0.5", "best_f1", "best_threshold", "precision", "recall", "fp_per_image",
        "loc_error_px", "cls_loss", "constant_loss"}  # fmt: skip


@pytest.mark.slow
def test_demo_tiny_run_writes_the_report(tmp_path: Path) -> None:
    res = CliRunner().invoke(
        cli,
        ["demo", "--n", "16", "--size", "64x96", "--steps", "6", "--retrain-steps", "6",
         "--out", str(tmp_path), "--format", "json"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    shown = json.loads(res.output)
    for run in ("before", "baseline", "remedy"):
        assert set(shown[run]) == KEYS
    assert shown["recipes"]["baseline"]["labels"] == "hard"
    assert shown["recipes"]["remedy"]["loss"] == "focal"
    assert shown["recipes"]["remedy"]["kernel"] == 5
    assert shown["labels"]["levels"]["P2"]["stride"] == 4
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["remedy"] == shown["remedy"]
    for name in ("failing.pt", "retrain/retrained.pt", "retrain/curves.png", "data/points.csv"):
        assert (tmp_path / name).stat().st_size > 0


def _report(tmp_path: Path, findings: list[dict[str, object]]) -> Path:
    path = tmp_path / "report.json"
    path.write_text(json.dumps({"schema": 1, "findings": findings}))
    return path


def test_from_report_takes_top_remedy_of_each_finding_and_skips_advice(tmp_path: Path) -> None:
    path = _report(
        tmp_path,
        [
            {"id": "regression-collapse", "severity": "error", "remedies": [
                {"id": "position-sensitive-offset", "params": {}, "applied": False},
                {"id": "fused-head", "params": {}, "applied": True}]},
            {"id": "background-collapse", "severity": "error", "remedies": [
                {"id": "focal-loss", "params": {"alpha": 2, "beta": 4}, "applied": True},
                {"id": "soft-labels", "params": {"kernel": 3}, "applied": True}]},
        ],
    )  # fmt: skip
    picked, skipped = remedies_from_report(path, is_reference=True)
    assert picked == [("fused-head", {}), ("focal-loss", {"alpha": 2, "beta": 4})]
    assert [s["id"] for s in skipped] == ["position-sensitive-offset"]
    picked, skipped = remedies_from_report(path, is_reference=False)
    assert picked == [("focal-loss", {"alpha": 2, "beta": 4})]
    assert {s["id"] for s in skipped} == {"position-sensitive-offset", "fused-head"}


def test_from_report_rejects_non_reports(tmp_path: Path) -> None:
    bad = tmp_path / "x.json"
    bad.write_text("[1, 2]")
    with pytest.raises(InputError, match="not an analyze report"):
        remedies_from_report(bad, True)
    with pytest.raises(InputError, match="no remedy"):
        remedies_from_report(_report(tmp_path, []), True)
