"""Determinism (issue 6): the same inputs and seed give the same report.json on CPU.

Each command runs twice, once in this process and once in a fresh ``python -m convdiag``
process (so state such as an unseeded global RNG cannot hide), into two output folders.
The two report.json files must be equal number for number, to the last printed digit,
after dropping what is not a result: wall-clock ``seconds`` and the output paths.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from bad.helpers import run_cli, run_proc

VOLATILE = {"seconds", "elapsed", "time", "convdiag_version"}


def _normalise(obj: Any, outs: tuple[str, ...]) -> Any:
    """The report without timings; the output folders replaced by a placeholder."""
    if isinstance(obj, dict):
        return {k: _normalise(v, outs) for k, v in obj.items() if k not in VOLATILE}
    if isinstance(obj, list):
        return [_normalise(v, outs) for v in obj]
    if isinstance(obj, str):
        for o in outs:
            obj = obj.replace(o, "<OUT>")
        return obj
    return obj


def _differences(a: Any, b: Any, where: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = [f"{where}.{k}: only in one" for k in set(a) ^ set(b)]
        for k in sorted(set(a) & set(b), key=str):
            out += _differences(a[k], b[k], f"{where}.{k}")
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b, strict=True))
                for d in _differences(x, y, f"{where}[{i}]")]  # fmt: skip
    # json.dumps prints a float's shortest round-trip repr: equal text = equal to the digit
    return [] if json.dumps(a) == json.dumps(b) else [f"{where}: {a!r} != {b!r}"]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A synthetic set and a briefly trained checkpoint."""
    root = tmp_path_factory.mktemp("det")
    res = run_cli(["synth", str(root / "data"), "--n", "10", "--size", "48x64", "--seed", "5",
                   "--format", "json"])  # fmt: skip
    assert res.code == 0, res.stderr
    res = run_cli(["train", str(root / "data"), "--steps", "6", "--batch", "2", "--width", "4",
                   "--seed", "1", "--out", str(root / "run"), "--format", "json"])  # fmt: skip
    assert res.code == 0, res.stderr
    return {"data": root / "data", "ckpt": root / "run" / "checkpoint.pt"}


def _args(name: str, inputs: dict[str, Path]) -> list[str]:
    d, c = str(inputs["data"]), str(inputs["ckpt"])
    retrain = ["retrain", c, "--data", d, "--soft", "--focal", "--compare", "--steps", "3"]
    return {
        "labels": ["labels", d, "--levels", "P2,P3,P4", "--schedule", "dynamic"],
        "analyze": ["analyze", c, "--data", d, "--seed", "2"],
        "retrain": [*retrain, "--seed", "4"],
    }[name]


def _report(name: str, args: list[str], out: Path, in_process: bool) -> dict[str, Any]:
    """The command's report: report.json under --out for retrain (its history is only
    there); for labels and analyze the same report as printed by --format json (equal to
    their report.json, without drawing the plots)."""
    with_out = name == "retrain"
    full = [*args, "--format", "json", *(["--out", str(out)] if with_out else [])]
    res = run_cli(full) if in_process else run_proc(full)
    assert res.code in (0, 1), res.stderr
    data: dict[str, Any] = json.loads((out / "report.json").read_text() if with_out else res.stdout)
    return data


@pytest.mark.slow
@pytest.mark.parametrize("name", ["labels", "analyze", "retrain"])
def test_same_inputs_and_seed_give_the_same_report(
    inputs: dict[str, Path], tmp_path: Path, name: str
) -> None:
    args = _args(name, inputs)
    a, b = tmp_path / "a", tmp_path / "b"
    ra = _normalise(_report(name, args, a, in_process=True), (str(a), str(b)))
    rb = _normalise(_report(name, args, b, in_process=False), (str(a), str(b)))
    diffs = _differences(ra, rb)
    assert not diffs, "\n".join(diffs[:20])
    assert json.dumps(ra, sort_keys=True) == json.dumps(rb, sort_keys=True)


def test_normalise_keeps_every_number() -> None:
    """The comparison is not vacuous: only timings and paths are dropped."""
    rep = {"seconds": 1.5, "x": {"seconds": {"a": 1}, "f1": 0.30000000000000004},
           "path": "/o/a/report.json", "h": [{"loss": 1e-9, "seconds": 3}]}  # fmt: skip
    got = _normalise(rep, ("/o/a",))
    assert got == {"x": {"f1": 0.30000000000000004}, "path": "<OUT>/report.json",
                   "h": [{"loss": 1e-9}]}  # fmt: skip
    assert _differences(got, {**got, "x": {"f1": 0.3}}) == [".x.f1: 0.30000000000000004 != 0.3"]
