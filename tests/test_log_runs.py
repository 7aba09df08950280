"""Several runs appended to one JSON-lines file (issue 11): split where training steps
restart, the last judged unless ``run`` picks another."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from convdiag.errors import InputError
from convdiag.watch.discover import read_log


def _scalars(path: Path, runs: list[list[float]]) -> Path:
    lines = []
    for losses in runs:  # each run logs iterations 10, 20, ... again
        for i, loss in enumerate(losses, start=1):
            lines.append({"lr": 1e-3, "loss": loss, "iter": 10 * i, "step": 10 * i})
        lines.append({"coco/bbox_mAP": 0.1, "step": 1})  # validation by epoch
    path.write_text("\n".join(json.dumps(d) for d in lines) + "\n")
    return path


def test_restarting_steps_are_separate_runs(tmp_path: Path) -> None:
    p = _scalars(tmp_path / "scalars.json", [[3.0, 2.0], [5.0, 4.0, 3.5], [1.0, 0.5]])
    raw = read_log(p)
    assert (raw.runs, raw.run) == (3, 3)
    assert raw.columns["loss"].values.tolist() == [1.0, 0.5]
    assert any("3 runs in this file" in n for n in raw.notes)
    first = read_log(p, run=2)
    assert first.run == 2 and first.columns["loss"].values.tolist() == [5.0, 4.0, 3.5]
    with pytest.raises(InputError, match=r"--run 4: .* holds 3 run"):
        read_log(p, run=4)


def test_one_run_is_one_run(tmp_path: Path) -> None:
    raw = read_log(_scalars(tmp_path / "scalars.json", [[3.0, 2.0, 1.0]]))
    assert (raw.runs, raw.run) == (1, 1)
    assert raw.columns["loss"].values.tolist() == [3.0, 2.0, 1.0]
    assert not any("runs in this file" in n for n in raw.notes)


def test_the_command_reports_the_runs_and_takes_run(tmp_path: Path) -> None:
    from bad.helpers import error_line, run_cli

    p = _scalars(tmp_path / "scalars.json", [[3.0, 2.0], [5.0, 4.0, 3.5]])
    res = run_cli(["logs", p, "--format", "json"])
    assert res.code == 0, res.stderr
    src = json.loads(res.stdout)["source"]
    assert (src["runs"], src["run"]) == (2, 2)
    assert json.loads(res.stdout)["metrics"]["loss"]["last"] == 3.5
    res = run_cli(["logs", p, "--run", "1", "--format", "json"])
    assert json.loads(res.stdout)["metrics"]["loss"]["last"] == 2.0
    table = run_cli(["logs", p])
    assert "2 runs in this file" in " ".join(table.stdout.split())
    assert "--run 3" in error_line(run_cli(["logs", p, "--run", "3"]))
