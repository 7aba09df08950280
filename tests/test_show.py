"""``convdiag show`` renders a saved ``convdiag logs`` report as ``logs`` itself renders it
(the report's ``kind`` picks the renderer); analyze reports are covered in test_cli_analyze."""

from __future__ import annotations

import json
from pathlib import Path

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
