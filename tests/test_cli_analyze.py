"""``convdiag analyze`` and ``convdiag show`` through click's CliRunner.

Fast tests use scripted models (tests/fixtures/analyze_models.py) saved as plain state dicts;
the slow ones train the reference detector on the tiny synthetic set (conftest) and check
the verdicts of the issue: P2 hard + BCE collapses, P2 soft + focal is healthy, P4 hard
shows regression collapse or label quantisation.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from analyze_models import Oracle, make_dataset, write_dataset
from click.testing import CliRunner, Result

from convdiag.cli.main import cli
from convdiag.report.analyze_report import render_markdown


def run(*args: Any) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args])


def one_line_error(res: Result, *words: str) -> None:
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("convdiag: error: "), res.stderr
    for w in words:
        assert w in lines[0], lines[0]


@pytest.fixture(scope="module")
def scripted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A points-table dataset on disk and state dicts of scripted models."""
    root = tmp_path_factory.mktemp("scripted")
    data = write_dataset(make_dataset(n=6, sizes=((64, 96),), seed=0), root / "data")
    paths = {"data": data}
    for name, kw in {
        "perfect": {},
        "collapsed": {"cls_scale": 0.0, "cls_bias": -7.0},
        "user": {"form": "user"},
    }.items():
        paths[name] = root / f"{name}.pt"
        torch.save(Oracle(**kw).state_dict(), paths[name])
    return paths


MODEL = ("--model", "analyze_models:oracle")


@pytest.mark.slow
def test_report_files_and_show(scripted: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "rep"
    res = run("analyze", scripted["collapsed"], "--data", scripted["data"], *MODEL,
              "--model-arg", "cls_scale=0", "--model-arg", "cls_bias=-7",
              "--format", "json", "--out", out)  # fmt: skip
    assert res.exit_code == 0, res.output
    rep = json.loads(res.stdout)
    assert rep["schema"] == 1
    assert rep["findings"][0]["id"] == "background-collapse"
    f = rep["findings"][0]
    assert set(f) == {"id", "severity", "level", "evidence", "explanation", "remedies"}
    assert {"id", "params", "why", "applied"} <= set(f["remedies"][0])
    m = rep["metrics"]["P2"]
    for key in ("best_f1", "f1_at_0.5", "fp_per_image", "auc", "cls_loss", "constant_loss",
                "pos_grad_share", "offset_std_ratio", "offset_r2"):  # fmt: skip
        assert key in m
    assert rep["model"]["format"] == "state_dict"
    assert rep["recipe_source"] == "default"
    saved = json.loads((out / "report.json").read_text())
    assert saved["findings"] == rep["findings"]
    md = (out / "report.md").read_text()
    for kind, name in saved["plots"]["P2"].items():
        assert (out / name).stat().st_size > 10_000, kind
        assert f"]({name})" in md
    assert set(saved["plots"]["P2"]) == {"gradients", "counterfactual", "scores", "offsets",
                                         "detections"}  # fmt: skip
    shown = run("show", out / "report.json")
    assert shown.exit_code == 0, shown.output
    assert "Verdict: error: background collapse at P2" in shown.stdout
    assert "focal-loss" in shown.stdout
    md = run("show", out, "--format", "markdown")
    assert md.stdout == render_markdown(saved)
    js = run("show", out / "report.json", "--format", "json")
    assert json.loads(js.stdout) == saved
    assert run("show", out, "--fail-on", "error").exit_code == 1


def test_fail_on_sets_the_exit_code(scripted: dict[str, Path]) -> None:
    args = ("analyze", scripted["collapsed"], "--data", scripted["data"], *MODEL,
            "--model-arg", "cls_scale=0", "--model-arg", "cls_bias=-7",
            "--format", "json")  # fmt: skip
    assert run(*args, "--fail-on", "error").exit_code == 1
    assert run(*args).exit_code == 0
    healthy = ("analyze", scripted["perfect"], "--data", scripted["data"], *MODEL)
    assert run(*healthy, "--fail-on", "warning").exit_code == 0


def test_user_model_with_adapter_and_probabilities(scripted: dict[str, Path]) -> None:
    res = run("analyze", scripted["user"], "--data", scripted["data"], *MODEL,
              "--model-arg", "form=user", "--adapter", "analyze_models:user_adapter",
              "--outputs", "probs", "--format", "json")  # fmt: skip
    assert res.exit_code == 0, res.output
    rep = json.loads(res.stdout)
    assert rep["verdict"].startswith("healthy at P2")
    assert rep["metrics"]["P2"]["f1_at_0.5"] == 1.0
    # Without the adapter the output form is refused with a hint.
    bad = run("analyze", scripted["user"], "--data", scripted["data"], *MODEL,
              "--model-arg", "form=user")  # fmt: skip
    one_line_error(bad, "model output")


def test_table_and_markdown(scripted: dict[str, Path]) -> None:
    res = run("analyze", scripted["perfect"], "--data", scripted["data"], *MODEL)
    assert res.exit_code == 0, res.output
    assert "Verdict: healthy at P2" in res.stdout
    assert "Metrics" in res.stdout
    md = run("analyze", scripted["perfect"], "--data", scripted["data"], *MODEL,
             "--format", "markdown")  # fmt: skip
    assert md.stdout.startswith("# convdiag analyze")
    assert "## Findings" in md.stdout


def test_show_errors(tmp_path: Path) -> None:
    one_line_error(run("show", tmp_path / "nope.json"), "nope.json", "no such file")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    one_line_error(run("show", bad), "bad.json", "not valid JSON")
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"levels": {}}))
    one_line_error(run("show", other), "other.json", "not an analyze report")


def test_input_errors(
    scripted: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = scripted["data"]
    one_line_error(run("analyze", tmp_path / "none.pt", "--data", data), "none.pt")
    one_line_error(run("analyze", scripted["perfect"], "--data", tmp_path / "nodata", *MODEL),
                   "nodata")  # fmt: skip
    one_line_error(run("analyze", scripted["perfect"], "--data", data, *MODEL, "--levels", "P4"),
                   "--levels P4", "P2")  # fmt: skip
    one_line_error(run("analyze", scripted["perfect"], "--data", data), "--model")
    (tmp_path / "convdiag.toml").write_text("[thresholds]\nauc_minimum = 1\n")
    monkeypatch.chdir(tmp_path)
    res = run("analyze", scripted["perfect"], "--data", data, *MODEL)
    one_line_error(res, "convdiag.toml", "auc_minimum")


def test_config_thresholds_apply(
    scripted: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A perfect model fails a threshold above 1: the config file is read from the cwd.
    (tmp_path / "convdiag.toml").write_text("[thresholds]\nauc_min = 1.5\nf1_min = 1.5\n")
    monkeypatch.chdir(tmp_path)
    res = run("analyze", scripted["perfect"], "--data", scripted["data"], *MODEL,
              "--format", "json")  # fmt: skip
    assert res.exit_code == 0, res.output
    rep = json.loads(res.stdout)
    assert rep["findings"][0]["id"] == "background-collapse"
    assert rep["thresholds"]["auc_min"] == 1.5


# --------------------------------------------------------------------------- trained


def _analyze_trained(ckpt: Path, data: Path, *extra: Any) -> dict[str, Any]:
    res = run("analyze", ckpt, "--data", data, "--format", "json", *extra)
    assert res.exit_code == 0, res.output
    rep: dict[str, Any] = json.loads(res.stdout)
    assert rep["recipe_source"] == "checkpoint"
    return rep


@pytest.mark.slow
def test_trained_p2_hard_bce_collapses(
    trained_checkpoint: Callable[..., Path], tiny_dataset: Path, tmp_path: Path
) -> None:
    ckpt = trained_checkpoint(head="P2", labels="hard", loss="bce", bias_init="zero")
    rep = _analyze_trained(ckpt, tiny_dataset, "--fail-on", "never")
    top = rep["findings"][0]
    assert top["id"] in ("background-collapse", "calibration-collapse"), rep["verdict"]
    assert top["level"] == "P2"
    assert top["remedies"][0]["id"] in ("focal-loss", "pos-weight", "soft-labels")
    res = run("analyze", ckpt, "--data", tiny_dataset, "--fail-on", "error", "--format", "json")
    assert res.exit_code == 1


@pytest.mark.slow
def test_trained_p2_soft_focal_is_healthy(
    trained_checkpoint: Callable[..., Path], tiny_dataset: Path
) -> None:
    ckpt = trained_checkpoint(head="P2", labels="soft", kernel=3, sigma=1.0, loss="focal",
                              bias_init="prior")  # fmt: skip
    rep = _analyze_trained(ckpt, tiny_dataset)
    assert [f["id"] for f in rep["findings"]] == ["healthy"], rep["findings"]
    assert rep["metrics"]["P2"]["f1_at_0.5"] > 0.5


@pytest.mark.slow
def test_trained_p4_hard_loses_localisation(
    trained_checkpoint: Callable[..., Path], tiny_dataset: Path
) -> None:
    ckpt = trained_checkpoint(head="P4", labels="hard", loss="bce", bias_init="prior")
    rep = _analyze_trained(ckpt, tiny_dataset)
    ids = [f["id"] for f in rep["findings"]]
    assert {"regression-collapse", "label-quantization"} & set(ids), ids
    assert all(f["level"] == "P4" for f in rep["findings"])
