"""Hostile checkpoints at the command line (issue 6, "Hostile checkpoints").

A checkpoint whose unpickling would run code (here: create a marker file) is refused by
every command that loads checkpoints, with one line naming what it would import and
``--trust-checkpoint``; the marker proves the code did not run, and no output appears.
With ``--trust-checkpoint`` the same file loads (and its code runs: the marker appears,
which also shows the test would notice if the refusal failed). Pickles that try to reach
code through the allow-listed container globals are refused too.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from bad.helpers import error_line, run_cli, run_proc, snapshot
from bad.models import healthy
from PIL import Image


class Payload:
    """Unpickling this runs ``exec``, which writes ``target``."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self) -> tuple[Any, ...]:
        return (exec, (f"open({str(self.target)!r}, 'w').write('pwned')",))


@pytest.fixture
def world(tmp_path: Path) -> dict[str, Path]:
    data = tmp_path / "data"
    (data / "images").mkdir(parents=True)
    for k, name in enumerate(("a", "b", "c")):
        img = np.random.default_rng(k).integers(0, 255, (32, 48), dtype=np.uint8)
        Image.fromarray(img).save(data / "images" / f"{name}.png")
    (data / "points.csv").write_text("image,x,y\na.png,10.5,12.5\nb.png,30,20\nc.png,,\n")
    marker = tmp_path / "pwned.txt"
    torch.manual_seed(0)
    evil = tmp_path / "evil.pt"
    torch.save({"state_dict": healthy().state_dict(), "extra": Payload(marker)}, evil)
    whole = tmp_path / "whole.pt"
    torch.save(healthy(), whole)
    return {"data": data, "marker": marker, "evil": evil, "whole": whole, "root": tmp_path}


MODEL = ["--model", "bad.models:healthy"]


def _refused(outcome: Any, path: Path, *names: str) -> None:
    line = error_line(outcome)
    assert str(path) in line and "refusing to unpickle" in line, line
    assert "--trust-checkpoint" in line, line
    for n in names:
        assert n in line, line


@pytest.mark.parametrize("command", ["analyze", "retrain", "check"])
def test_code_in_a_checkpoint_does_not_run(world: dict[str, Path], command: str) -> None:
    out = world["root"] / "out"
    args = [command, str(world["evil"]), "--data", str(world["data"]), *MODEL, "--out", str(out)]
    if command == "retrain":
        args += ["--soft", "--steps", "1"]
    before = snapshot(world["data"])
    _refused(run_cli(args), world["evil"], "builtins.exec")
    assert not world["marker"].exists(), "the checkpoint's code ran"
    assert not out.exists()
    assert snapshot(world["data"]) == before


def test_trust_checkpoint_loads_it(world: dict[str, Path]) -> None:
    args = ["analyze", str(world["evil"]), "--data", str(world["data"]), *MODEL,
            "--format", "json"]  # fmt: skip
    res = run_cli(args)
    assert res.code == 2 and not world["marker"].exists()
    res = run_cli([*args, "--trust-checkpoint"])
    assert res.code == 0, res.stderr
    assert world["marker"].read_text() == "pwned"  # trusted: the file's code ran


def test_resume_from_a_hostile_checkpoint_is_refused(world: dict[str, Path]) -> None:
    out = world["root"] / "run"
    out.mkdir()
    (out / "checkpoint.pt").write_bytes(world["evil"].read_bytes())
    before = snapshot(out)
    res = run_cli(["train", str(world["data"]), *MODEL, "--steps", "2", "--batch", "1", "--resume",
                   "--out", str(out)])  # fmt: skip
    _refused(res, out / "checkpoint.pt", "builtins.exec")
    assert not world["marker"].exists()
    assert snapshot(out) == before


def test_pickled_whole_model_refused_naming_its_class(world: dict[str, Path]) -> None:
    args = ["analyze", str(world["whole"]), "--data", str(world["data"]), "--format", "json"]
    _refused(run_cli(args), world["whole"], "bad.models.Healthy")
    res = run_cli([*args, "--trust-checkpoint"])
    assert res.code == 0, res.stderr


def _raw_pickle(*ops: bytes) -> bytes:
    return b"\x80\x02" + b"".join(ops) + b"."


def _global(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def _str(s: str) -> bytes:
    b = s.encode()
    return b"X" + len(b).to_bytes(4, "little") + b


def _sneaky(name: str, marker: str) -> bytes:
    """Raw pickles that would run code; each must be refused without running it."""
    if name == "getattr-on-namespace":  # getattr is allow-listed for mmengine's stubs only
        return _raw_pickle(
            _global("builtins", "getattr"),
            _global("argparse", "Namespace"),
            _str("__init__"),
            b"\x86R",  # TUPLE2, REDUCE
        )
    if name == "os-system":
        return _raw_pickle(_global("os", "system"), _str(f"touch {marker}"), b"\x85R")
    if name == "py2-commands":  # a Python 2 name the unpickler maps to subprocess
        return _raw_pickle(_global("commands", "getoutput"), _str(f"touch {marker}"), b"\x85R")
    if name == "py2-builtin-eval":
        code = _str(f"open({marker!r}, 'w')")
        return _raw_pickle(_global("__builtin__", "eval"), code, b"\x85R")
    raise AssertionError(name)


SNEAKY = ["getattr-on-namespace", "os-system", "py2-commands", "py2-builtin-eval"]


@pytest.mark.parametrize("name", SNEAKY)
def test_sneaky_pickles_are_refused(world: dict[str, Path], name: str) -> None:
    path = world["root"] / f"{name}.pt"
    path.write_bytes(_sneaky(name, str(world["marker"])))
    res = run_cli(["analyze", str(path), "--data", str(world["data"]), *MODEL])
    line = error_line(res)
    assert str(path) in line and "--trust-checkpoint" in line, line
    assert not world["marker"].exists(), "the pickle's code ran"


def test_sneaky_pickles_would_run_code(world: dict[str, Path]) -> None:
    """The control: plain pickle runs them, so the refusal above is what stops them."""
    pickle.loads(_sneaky("py2-builtin-eval", str(world["marker"])))
    assert world["marker"].exists()


@pytest.mark.slow
def test_refusal_in_a_real_process(world: dict[str, Path]) -> None:
    res = run_proc(["analyze", str(world["evil"]), "--data", str(world["data"]), *MODEL])
    _refused(res, world["evil"], "builtins.exec")
    assert not world["marker"].exists()
