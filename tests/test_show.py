"""``convdiag show`` renders a saved ``convdiag logs`` report as ``logs`` itself renders it
(the report's ``kind`` picks the renderer); analyze reports are covered in test_cli_analyze."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from click.testing import CliRunner, Result

from convdiag.cli.main import cli

LOG = Path(__file__).parent / "fixtures" / "logs" / "convdiag_history_p2_hard_bce.csv"


def run(*args: object) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args])


def test_show_renders_a_logs_report_as_logs_does(tmp_path: Path) -> None:
    js = run("logs", LOG, "--format", "json")
    assert js.exit_code == 0, js.output
    saved = tmp_path / "report.json"
    saved.write_text(js.stdout)
    assert json.loads(js.stdout)["kind"] == "logs"

    for fmt in ("markdown", "table", "json"):
        direct = run("logs", LOG, "--format", fmt)
        shown = run("show", saved, "--format", fmt)
        assert shown.exit_code == 0, shown.output
        assert shown.stdout == direct.stdout, fmt
    md = run("show", tmp_path, "--format", "markdown").stdout  # the folder works too
    assert md.startswith("# convdiag logs: csv log") and "## Series" in md
    assert "background-collapse" in md
    assert run("show", saved, "--fail-on", "error").exit_code == 1
    assert run("show", saved, "--fail-on", "never").exit_code == 0


def test_show_still_refuses_other_json(tmp_path: Path) -> None:
    other = tmp_path / "history.json"
    other.write_text(json.dumps({"kind": "logs", "series": []}))
    res = run("show", other)
    assert res.exit_code == 2
    assert "history.json" in res.output and "not an analyze report" in res.output


def _race_report() -> dict:
    rungs = [{"index": 0, "steps": 4}, {"index": 1, "steps": 8}]
    arms = [
        {"name": "baseline", "kind": "baseline", "step": 8,
         "rungs": {"0": {"step": 4, "metric": 0.1, "best_f1": 0.2, "fp_per_image": 3.0},
                   "1": {"step": 8, "metric": 0.15, "best_f1": 0.25, "fp_per_image": 2.0}}},
        {"name": "focal-loss", "kind": "remedy", "step": 8,
         "rungs": {"0": {"step": 4, "metric": 0.3, "best_f1": 0.4, "fp_per_image": 1.0},
                   "1": {"step": 8, "metric": 0.5, "best_f1": 0.6, "fp_per_image": None}}},
    ]  # fmt: skip
    race = {"plan": {"rungs": rungs}, "arms": arms, "winner": "focal-loss", "seed": 0,
            "threshold": 0.5, "verdict": "focal-loss wins: +0.350 F1 over the baseline",
            "predicted": [{"id": "focal-loss"}], "gains": {"focal-loss": 0.35}}  # fmt: skip
    return {"schema": 1, "kind": "analyze", "verdict": "error: background collapse at P2",
            "findings": [{"id": "background-collapse", "severity": "error", "level": "P2",
                          "evidence": {"auc": 0.6}, "explanation": "collapsed",
                          "remedies": []}],
            "metrics": {"P2": {"auc": 0.6}}, "analyses": {}, "race": race}  # fmt: skip


def test_show_renders_and_redraws_a_raced_report(tmp_path: Path) -> None:
    from convdiag.report.race_report import write_race

    out = tmp_path / "race"
    out.mkdir()
    report = _race_report()
    write_race(report, out)  # report.json, race.png and report.html, as retrain --race does
    md = run("show", out, "--format", "markdown")
    assert md.exit_code == 0 and "measured gain" in md.stdout and "background-collapse" in md.stdout
    page = run("show", out, "--format", "html").stdout
    assert page == (out / "report.html").read_text() and 'alt="race"' in page
    res = run("show", out, "--plots", tmp_path / "again", "--format", "json")
    assert res.exit_code == 0, res.output
    assert (tmp_path / "again" / "race.png").read_bytes() == (out / "race.png").read_bytes()


def test_show_reads_a_labels_report_written_before_its_kind(tmp_path: Path) -> None:
    from convdiag.diagnosis.labels import label_statistics

    stats = label_statistics([((64, 96), np.array([[10.0, 12.0], [40.0, 30.0]]))], ["P2"])
    saved = tmp_path / "report.json"
    saved.write_text(json.dumps({"dataset": {"path": "d", "images": 1}, **stats}))
    md = run("show", saved, "--format", "markdown")
    assert md.exit_code == 0, md.output
    assert "P2" in md.stdout and "positive" in md.stdout.lower()
    assert run("show", saved, "--format", "html").stdout.count("Label statistics") == 1
