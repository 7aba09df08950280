"""The CI gate: exit codes, JUnit XML parsed back, configuration files, the CI example."""

from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from convdiag.cli.main import cli
from convdiag.diagnosis.check import grade, junit_xml
from convdiag.diagnosis.findings import Finding

EXAMPLE = Path(__file__).parent.parent / "examples" / "ci"


def _check(args: list[str]) -> tuple[int, str]:
    res = CliRunner().invoke(cli, ["check", *args])
    return res.exit_code, res.output


def test_grade_fails_only_at_or_above_the_bar() -> None:
    fs = [Finding("label-collision", "P4", {"x": 1.0}, "shared cells."),
          Finding("fp-flood", "P2", {"fp": 40.0}, "too many.")]  # fmt: skip
    res = {r.full_name: r.status for r in grade("m", ("label-collision", "fp-flood"),
                                                 ["P2", "P4"], fs, "error")}  # fmt: skip
    assert res == {"m.P2.label-collision": "passed", "m.P2.fp-flood": "failed",
                   "m.P4.label-collision": "note", "m.P4.fp-flood": "passed"}  # fmt: skip
    res = {r.full_name: r.status for r in grade("m", ("label-collision",), ["P4"], fs, "warning")}
    assert res == {"m.P4.label-collision": "failed"}


def test_junit_round_trip_carries_evidence() -> None:
    fs = [Finding("fp-flood", "P2", {"fp_per_image": 40.5}, "Floods. Second sentence.")]
    results = grade("model", ("fp-flood", "healthy"), ["P2"], fs, "error")
    root = ET.fromstring(junit_xml(results, 1.5))
    assert root.get("tests") == "2" and root.get("failures") == "1"
    cases = {c.get("name"): c for c in root.iter("testcase")}
    failure = cases["fp-flood"].find("failure")
    assert failure is not None and failure.get("type") == "error"
    assert "fp_per_image = 40.5" in (failure.text or "")
    assert cases["healthy"].find("failure") is None


@pytest.mark.slow
def test_check_fails_on_collapsed_checkpoint_and_passes_healthy(
    tiny_dataset: Path, trained_checkpoint: Callable[..., Path], tmp_path: Path
) -> None:
    bad = trained_checkpoint(head="P2", labels="hard", loss="bce", bias_init="zero")
    junit = tmp_path / "junit.xml"
    code, out = _check([str(bad), "--data", str(tiny_dataset), "--max-images", "16",
                        "--junit", str(junit), "--format", "json"])  # fmt: skip
    assert code == 1, out
    report = json.loads(out)
    assert not report["passed"]
    failed = [c["name"] for c in report["checks"] if c["status"] == "failed"]
    assert any(n.startswith("model.P2.") and "collapse" in n for n in failed)
    root = ET.parse(junit).getroot()
    assert int(root.get("failures", "0")) == len(failed)
    good = trained_checkpoint(head="P2", labels="soft", kernel=3, loss="focal")
    code, out = _check([str(good), "--data", str(tiny_dataset), "--max-images", "16"])
    assert code == 0, out
    assert "PASSED" in out


def test_labels_only_check_and_fail_on(tiny_dataset: Path) -> None:
    code, out = _check(["--data", str(tiny_dataset), "--levels", "P5"])
    assert code == 0, out  # quantisation at stride 32 is a warning; the default bar is error
    code, out = _check(["--data", str(tiny_dataset), "--levels", "P5", "--fail-on", "warning"])
    assert code == 1, out
    assert "labels.P5.label-quantization" in out


def test_config_file_supplies_data_and_fail_on(
    tiny_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shutil.copytree(tiny_dataset, tmp_path / "d")
    (tmp_path / "convdiag.toml").write_text('data = "d"\nlevels = "P5"\nfail_on = "warning"\n')
    monkeypatch.chdir(tmp_path)
    assert _check([])[0] == 1
    assert _check(["--fail-on", "error"])[0] == 0  # flags override the file
    (tmp_path / "convdiag.toml").write_text('data = "d"\nnonsense = 1\n')
    code, out = _check([])
    assert code == 2 and "unknown key 'nonsense'" in out


def test_check_without_data_is_a_usage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    code, out = _check([])
    assert code == 2 and "no dataset" in out


@pytest.mark.slow
def test_ci_example_config_gates_a_collapsed_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shutil.copy(EXAMPLE / "convdiag.toml", tmp_path)
    assert "convdiag check" in (EXAMPLE / "github-workflow.yml").read_text()
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    res = runner.invoke(cli, ["synth", "data", "--n", "40", "--size", "96x128", "--snr", "5"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(cli, ["train", "data", "--head", "P2", "--labels", "hard", "--loss", "bce",
                              "--bias-init", "zero", "--steps", "60", "--width", "8",
                              "--out", "runs/p2", "--format", "json"])  # fmt: skip
    assert res.exit_code == 0, res.output
    code, out = _check(["--junit", "junit.xml", "--out", "rep"])
    assert code in (0, 1), out
    report = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert report["exit_code"] == code and report["fail_on"] == "error"
    root = ET.parse(tmp_path / "junit.xml").getroot()
    assert int(root.get("tests", "0")) == len(report["checks"]) > 0
