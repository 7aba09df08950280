"""Never lose work (issue 6): atomic outputs, untouched inputs, interrupted training.

- Every file a command writes is opened for writing only as a hidden temporary file in the
  target folder and then renamed over the target: watched with a Python audit hook
  (``open`` and ``os.rename`` events) while each writing command runs.
- No command opens an input (dataset, checkpoint, log, report) for writing.
- ``atomic_write_bytes`` leaves the old file whole when writing fails or is interrupted.
- ``convdiag train`` stopped by a real SIGINT or SIGTERM after some steps exits 130 and
  leaves a checkpoint that loads with ``weights_only=True``, marked interrupted, and a
  history.csv that parses with increasing steps; ``--resume`` then reaches the same final
  weights as an uninterrupted run with the same seed.
"""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import torch
from bad.helpers import FIXTURES, REPO, run_cli, snapshot

# --------------------------------------------------------------------------- audit of writes

_WATCH: dict[str, Any] = {"on": False, "writes": [], "renames": []}


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if not _WATCH["on"]:
        return
    if event == "open":
        path, mode, flags = args
        if isinstance(path, int) or path is None:
            return
        writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
            isinstance(flags, int) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT)
        )
        if writing:
            _WATCH["writes"].append(os.fsdecode(path))
    elif event == "os.rename":
        _WATCH["renames"].append((os.fsdecode(args[0]), os.fsdecode(args[1])))


sys.addaudithook(_audit)  # audit hooks cannot be removed; it is idle unless _WATCH["on"]


@contextmanager
def watch_writes() -> Iterator[dict[str, Any]]:
    _WATCH.update(on=True, writes=[], renames=[])
    try:
        yield _WATCH
    finally:
        _WATCH["on"] = False


def _is_temp(path: str) -> bool:
    name = Path(path).name
    return (name.startswith(".") and name.endswith(".tmp")) or name == ".convdiag.lock"


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny synthetic set, a checkpoint and a training log."""
    root = tmp_path_factory.mktemp("nlw")
    res = run_cli(["synth", str(root / "data"), "--n", "8", "--size", "32x32", "--seed", "2",
                   "--format", "json"])  # fmt: skip
    assert res.code == 0, res.stderr
    from convdiag.load.checkpoint import save_checkpoint
    from convdiag.load.recipe import Recipe
    from convdiag.models.detector import reference

    torch.manual_seed(0)
    args = {"head": "P2", "width": 4, "prior": 0.01, "bias_init": "prior"}
    save_checkpoint(root / "ckpt.pt", reference(**args), "convdiag.models:reference", args,
                    Recipe().to_dict())  # fmt: skip
    rows = ["step,train_loss,val_f1,val_fp_per_image"]
    rows += [f"{10 * k},{1 / (k + 1):.4f},0.0,{40 - k}" for k in range(12)]
    (root / "metrics.csv").write_text("\n".join(rows) + "\n")
    return {"root": root, "data": root / "data", "ckpt": root / "ckpt.pt",
            "log": root / "metrics.csv"}  # fmt: skip


def _commands(s: dict[str, Path], out: Path) -> dict[str, list[str]]:
    d, c = str(s["data"]), str(s["ckpt"])
    tiny = ["--steps", "2", "--batch", "2", "--width", "4"]
    return {
        "synth": ["synth", str(out / "synth"), "--n", "2", "--size", "32x32"],
        "labels": ["labels", d, "--levels", "P2,P4", "--soft", "--out", str(out / "labels")],
        "train": ["train", d, *tiny, "--out", str(out / "train")],
        "analyze": ["analyze", c, "--data", d, "--out", str(out / "analyze")],
        "retrain": [
            "retrain",
            c,
            "--data",
            d,
            "--soft",
            "--compare",
            "--steps",
            "2",
            "--out",
            str(out / "retrain"),
        ],
        "check": [
            "check",
            c,
            "--data",
            d,
            "--out",
            str(out / "check"),
            "--junit",
            str(out / "junit.xml"),
        ],
        "logs": ["logs", str(s["log"]), "--out", str(out / "logs")],
    }


SLOW = pytest.mark.slow  # a few seconds each on 2 shared cores (plots, training)


@pytest.mark.parametrize(
    "name",
    ["synth", "check", "logs", *(pytest.param(n, marks=SLOW)
                                 for n in ("labels", "train", "analyze", "retrain"))],
)  # fmt: skip
def test_every_output_goes_through_a_temp_file_and_a_rename(
    small: dict[str, Path], tmp_path: Path, name: str
) -> None:
    out = tmp_path / "out"
    out.mkdir()  # --junit needs its folder
    inputs = snapshot(small["root"])
    args = _commands(small, out)[name]
    # the quick ones run twice: the second run replaces existing outputs, again by rename
    for again in (False, True) if name in ("synth", "check", "logs") else (False,):
        with watch_writes() as seen:
            res = run_cli([*args, "--format", "json", *(["--force"] if again and
                                                        name == "synth" else [])])  # fmt: skip
        assert res.code in (0, 1), res.stderr
        written = [p for p in seen["writes"] if Path(p).resolve().is_relative_to(tmp_path)]
        assert written, "the command wrote nothing under --out"
        direct = [p for p in written if not _is_temp(p)]
        assert not direct, f"opened for writing in place: {direct}"
        renamed = {Path(dst).resolve() for src, dst in seen["renames"] if _is_temp(src)}
        final = {p.resolve() for p in out.rglob("*") if p.is_file()}
        assert final, "no output"
        assert final <= renamed, f"not written by a rename: {sorted(map(str, final - renamed))}"
        assert not list(out.rglob("*.tmp")), "a temporary file was left behind"
    assert snapshot(small["root"]) == inputs, "an input file was written"


def _direct_writes(path: Path) -> list[str]:
    """Calls in a source file that write a file in place (not through convdiag.load.files)."""
    import ast

    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""
        if name in ("write_text", "write_bytes", "to_csv", "savetxt", "imwrite"):
            found.append(f"{path.name}:{node.lineno} {name}")
        elif name in ("open", "fdopen"):
            modes = [k.value for k in node.keywords if k.arg == "mode"] + node.args[1:2]
            first = node.args[0] if node.args else None
            if isinstance(first, ast.Constant) and str(first.value) in (
                "w",
                "wb",
                "a",
                "ab",
                "x",
                "xb",
                "w+",
            ):
                modes.append(first)  # Path.open("w")
            if not modes:
                continue  # read
            text = modes[0].value if isinstance(modes[0], ast.Constant) else "?"
            flags = ast.unparse(modes[0])
            if "O_RDONLY" in flags and not any(f in flags for f in ("WRONLY", "RDWR", "CREAT")):
                continue  # os.open(path, os.O_RDONLY | ...): a read
            target = ast.unparse(node.args[0]) if node.args else ""
            if any(c in str(text) for c in "wax+?") and target != "os.devnull":
                found.append(f"{path.name}:{node.lineno} open({target}, {text!r})")
        elif ast.unparse(f) in ("torch.save", "np.save", "numpy.save", "shutil.copy",
                                "shutil.copyfile", "shutil.copy2", "shutil.move"):  # fmt: skip
            target = ast.unparse(node.args[1]) if len(node.args) > 1 else "?"
            if target != "buf":  # an in-memory buffer, handed to atomic_write_bytes
                found.append(f"{path.name}:{node.lineno} {ast.unparse(f)}({target})")
        elif name in ("savefig", "rename") and node.args:
            target = ast.unparse(node.args[0])
            if target != "buf":
                found.append(f"{path.name}:{node.lineno} {name}({target})")
    return found


def test_no_code_writes_a_file_in_place() -> None:
    """Static guard for the commands the audit test does not run (demo, sweep, ...): the
    only file writes in convdiag are load/files.py's temporary files."""
    src = REPO / "convdiag"
    found = [w for p in sorted(src.rglob("*.py")) if p != src / "load" / "files.py"
             for w in _direct_writes(p)]  # fmt: skip
    assert not found, found
    assert _direct_writes(src / "load" / "files.py")  # the guard sees files.py's own writes


def test_atomic_write_keeps_the_old_file_when_writing_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from convdiag.errors import InputError
    from convdiag.load import files as rio

    target = tmp_path / "report.json"
    target.write_text("old and complete")
    for exc in (OSError(28, "No space left on device"), KeyboardInterrupt()):

        def failing_fsync(fd: int, exc: BaseException = exc) -> None:
            raise exc

        monkeypatch.setattr(rio.os, "fsync", failing_fsync)
        expected = InputError if isinstance(exc, OSError) else type(exc)  # one line, exit 2
        with pytest.raises(expected):
            rio.atomic_write_text(target, "new " * 1000)
        assert target.read_text() == "old and complete"
        assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]
    monkeypatch.undo()
    rio.atomic_write_text(target, "new")
    assert target.read_text() == "new"


def test_atomic_write_gives_the_permissions_open_would(tmp_path: Path) -> None:
    from convdiag.load.files import atomic_write_text

    umask = os.umask(0o022)
    os.umask(umask)
    new = tmp_path / "new.json"
    atomic_write_text(new, "{}")
    assert new.stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's 0o600
    old = tmp_path / "old.json"
    old.write_text("x")
    old.chmod(0o640)
    atomic_write_text(old, "y")
    assert old.stat().st_mode & 0o777 == 0o640 and old.read_text() == "y"


# --------------------------------------------------------------------------- interrupted training

STEPS, EVERY = 30, 3
TRAIN = ["--steps", str(STEPS), "--batch", "2", "--width", "4", "--eval-every", str(EVERY),
         "--seed", "3", "--format", "json"]  # fmt: skip


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(FIXTURES), str(REPO)])
    env["OMP_WAIT_POLICY"] = "PASSIVE"
    return env


def _train_proc(data: Path, out: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "convdiag", "train", str(data), *TRAIN, "--out", str(out), *extra],
        cwd=REPO, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def _finish(proc: subprocess.Popen[str], timeout: float = 240) -> tuple[int, str]:
    _, err = proc.communicate(timeout=timeout)
    return proc.returncode, err


def _weights(path: Path) -> dict[str, torch.Tensor]:
    raw = torch.load(path, weights_only=True)
    sd: dict[str, torch.Tensor] = raw["state_dict"]
    return sd


def _history_steps(path: Path) -> list[int]:
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows and all(r["run"] == "train" for r in rows)
    steps = [int(r["step"]) for r in rows]
    assert steps == sorted(set(steps)), steps  # increasing, no repeats
    return steps


@pytest.fixture(scope="module")
def uninterrupted(small: dict[str, Path]) -> dict[str, torch.Tensor]:
    out = small["root"] / "full"
    code, err = _finish(_train_proc(small["data"], out))
    assert code == 0, err
    assert _history_steps(out / "history.csv")[-1] == STEPS
    return _weights(out / "checkpoint.pt")


def _interrupted_run(data: Path, out: Path, sig: signal.Signals, delay: float) -> int:
    """Start ``train``, send ``sig`` once a checkpoint shows steps were made; checks the
    exit code, the interrupted checkpoint and history.csv; returns the step it stopped at."""
    proc = _train_proc(data, out)
    ckpt = out / "checkpoint.pt"
    deadline = time.monotonic() + 180
    while not ckpt.exists():  # the first evaluation has saved a checkpoint
        assert proc.poll() is None, proc.communicate()[1]
        assert time.monotonic() < deadline, "no checkpoint after 180 s"
        time.sleep(0.01)
    time.sleep(delay)
    proc.send_signal(sig)
    code, err = _finish(proc)
    assert code == 130, (code, err)
    assert "Traceback" not in err and "interrupted" in err, err
    meta = torch.load(ckpt, weights_only=True)["meta"]  # loads without trusting pickles
    assert meta["interrupted"] is True, "finished before the signal: raise STEPS"
    stopped = int(meta["step"])
    assert EVERY <= stopped < STEPS
    steps = _history_steps(out / "history.csv")
    assert steps[-1] <= stopped and steps == [int(r["step"]) for r in meta["history"]]
    assert not list(out.glob(".*.tmp")), "a temporary file was left behind"
    return stopped


@pytest.mark.slow
def test_sigint_then_resume_reaches_the_same_weights(
    small: dict[str, Path], uninterrupted: dict[str, torch.Tensor], tmp_path: Path
) -> None:
    out = tmp_path / "run"
    _interrupted_run(small["data"], out, signal.SIGINT, 0.0)
    code, err = _finish(_train_proc(small["data"], out, "--resume"))
    assert code == 0, err
    resumed = torch.load(out / "checkpoint.pt", weights_only=True)
    assert resumed["meta"]["interrupted"] is False and resumed["meta"]["step"] == STEPS
    assert _history_steps(out / "history.csv")[-1] == STEPS
    got = resumed["state_dict"]
    assert got.keys() == uninterrupted.keys()
    for k, v in uninterrupted.items():
        assert torch.equal(got[k], v), k


@pytest.mark.slow
def test_sigterm_leaves_a_loadable_checkpoint(small: dict[str, Path], tmp_path: Path) -> None:
    from convdiag.load.checkpoint import load_checkpoint

    out = tmp_path / "run"
    stopped = _interrupted_run(small["data"], out, signal.SIGTERM, 0.1)
    loaded = load_checkpoint(out / "checkpoint.pt")
    assert loaded.format == "convdiag" and loaded.meta["step"] == stopped
    assert loaded.optimizer_state is not None  # what --resume needs
