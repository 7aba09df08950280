"""Never lose work, round two (issue 14 sections 2, 3 and 6), attacked in-process.

- No run lost: ``train --out`` holding a run refuses unless --resume/--force; --resume with
  another head or label kind refuses; a live process's lock in --out refuses, a dead one's
  is replaced, and the lock is gone after every command; --out equal to or inside the
  dataset folder is refused.
- All or nothing: a write that fails part-way (no space, monkeypatched; a directory in the
  way) leaves no file of the set and the earlier files of a reused --out byte for byte; the
  error is one line naming the path and the cause, exit 2.
- Images define a mask dataset: a mask without an image is ignored and counted.
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from bad.helpers import error_line, run_cli, snapshot

LOCK = ".convdiag.lock"


@pytest.fixture(scope="module")
def w(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny synthetic set, an untrained checkpoint and a metrics CSV."""
    root = tmp_path_factory.mktemp("nlw2")
    res = run_cli(["synth", root / "data", "--n", "8", "--size", "32x32", "--seed", "2",
                   "--format", "json"])  # fmt: skip
    assert res.code == 0, res.stderr
    from convdiag.load.checkpoint import save_checkpoint
    from convdiag.load.recipe import Recipe
    from convdiag.models.detector import reference

    torch.manual_seed(0)
    args = {"head": "P2", "width": 4, "prior": 0.01, "bias_init": "prior"}
    save_checkpoint(root / "ckpt.pt", reference(**args), "convdiag.models:reference", args,
                    Recipe().to_dict())  # fmt: skip
    rows = ["step,train_loss,val_f1"] + [f"{10 * k},{1 / (k + 1):.4f},0.0" for k in range(12)]
    (root / "metrics.csv").write_text("\n".join(rows) + "\n")
    return {"root": root, "data": root / "data", "ckpt": root / "ckpt.pt",
            "log": root / "metrics.csv"}  # fmt: skip


TINY = ["--steps", "1", "--batch", "2", "--width", "4", "--format", "json"]


def _run_folder(w: dict[str, Path], tmp_path: Path) -> Path:
    out = tmp_path / "run"
    res = run_cli(["train", w["data"], *TINY, "--out", out])
    assert res.code == 0, res.stderr
    assert not (out / LOCK).exists(), "the lock outlived the command"
    return out


# --------------------------------------------------------------------------- no run is lost


@pytest.mark.slow
def test_train_refuses_an_existing_run_unless_resume_or_force(
    w: dict[str, Path], tmp_path: Path
) -> None:
    out = _run_folder(w, tmp_path)
    before = snapshot(out)
    line = error_line(run_cli(["train", w["data"], *TINY, "--out", out]))
    assert str(out) in line and "already holds a run" in line and "--resume" in line, line
    assert snapshot(out) == before
    for flags, word in ((["--head", "P4"], "--head P4"), (["--kernel", "5"], "--labels soft")):
        line = error_line(run_cli(["train", w["data"], *TINY, "--out", out, "--resume", *flags]))
        assert word in line and "contradicts" in line and "checkpoint.pt" in line, line
        assert snapshot(out) == before, flags
    line = error_line(run_cli(["train", w["data"], *TINY, "--out", out, "--resume", "--force"]))
    assert "--force" in line
    # --force replaces the run; the same head as stored is no contradiction
    res = run_cli(["train", w["data"], *TINY, "--out", out, "--force", "--head", "p2"])
    assert res.code == 0, res.stderr


def test_a_live_lock_refuses_a_dead_one_is_replaced(w: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "logs"
    out.mkdir()
    (out / LOCK).write_text(f"{os.getppid()}\n")  # a live process that is not this one
    args = ["logs", w["log"], "--out", out, "--format", "json"]
    line = error_line(run_cli(args))
    assert str(out) in line and "in use" in line and str(os.getppid()) in line, line
    assert sorted(p.name for p in out.iterdir()) == [LOCK]  # nothing written, lock kept
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    (out / LOCK).write_text(f"{dead}\n")
    res = run_cli(args)
    assert res.code in (0, 1), res.stderr
    assert (out / "report.json").is_file() and not (out / LOCK).exists()


def test_the_lock_is_held_while_the_command_runs(
    w: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from convdiag.load import files

    out = tmp_path / "logs"
    seen: list[str] = []
    real = files.write_json

    def spy(path: str | os.PathLike[str], data: object) -> None:
        seen.append((Path(path).parent / LOCK).read_text())
        real(path, data)

    monkeypatch.setattr(files, "write_json", spy)
    assert run_cli(["logs", w["log"], "--out", out, "--format", "json"]).code in (0, 1)
    assert seen and seen[0].split()[0] == str(os.getpid())
    assert not (out / LOCK).exists()


@pytest.mark.parametrize("where", ["", "images", "masks/deeper"])
def test_out_in_the_dataset_folder_is_refused(
    w: dict[str, Path], where: str, tmp_path: Path
) -> None:
    before = snapshot(w["data"])
    out = w["data"] / where if where else w["data"]
    for args in (["labels", w["data"]], ["analyze", w["ckpt"], "--data", w["data"]]):
        line = error_line(run_cli([*args, "--out", out, "--format", "json"]))
        assert "dataset folder" in line and str(out) in line, line
        assert snapshot(w["data"]) == before, "the dataset folder was written"
    assert not (w["data"] / "masks" / "deeper").exists()


# --------------------------------------------------------------------------- all or nothing


def _fail_on_write(monkeypatch: pytest.MonkeyPatch, n: int) -> list[str]:
    """Make the n-th atomic write (0-based) fail with 'No space left on device'."""
    from convdiag.load import files

    calls: list[str] = []
    real = files.os.fsync

    def fsync(fd: int) -> None:
        calls.append(str(fd))
        if len(calls) == n + 1:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(fd)

    monkeypatch.setattr(files.os, "fsync", fsync)
    return calls


def _commands(w: dict[str, Path], out: Path) -> dict[str, list[object]]:
    return {
        "labels": ["labels", w["data"], "--levels", "P2", "--examples", "1", "--out", out],
        "logs": ["logs", w["log"], "--out", out],
        "check": [
            "check",
            w["ckpt"],
            "--data",
            w["data"],
            "--out",
            out,
            "--junit",
            out.parent / "junit.xml",
        ],
        "synth": ["synth", out, "--n", "3", "--size", "32x32", "--force"],
    }


@pytest.mark.parametrize("name", ["labels", "logs", "check", "synth"])
def test_a_failing_write_leaves_no_file_of_the_set(
    w: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    out = tmp_path / "out"
    args = [*_commands(w, out)[name], "--format", "json"]
    # how many files the command writes when nothing fails
    full = _fail_on_write(monkeypatch, 10**9)
    assert run_cli(args).code in (0, 1)
    total = len(full)
    assert total >= 3, total
    monkeypatch.undo()
    earlier = snapshot(tmp_path)  # a reused --out: the earlier outputs must survive whole
    for n in (1, total - 1):  # the second write, and the last one
        _fail_on_write(monkeypatch, n)
        line = error_line(run_cli(args))
        monkeypatch.undo()
        assert "No space left on device" in line and str(tmp_path) in line, line
        assert snapshot(tmp_path) == earlier, f"write {n} of {total} left a partial set"


@pytest.mark.parametrize("name", ["labels", "logs", "check"])
def test_a_directory_in_the_way_leaves_no_file_of_the_set(
    w: dict[str, Path], tmp_path: Path, name: str
) -> None:
    out = tmp_path / "out"
    blocker = out / "report.html"  # written after the plots and report.json
    blocker.mkdir(parents=True)
    line = error_line(run_cli([*_commands(w, out)[name], "--format", "json"]))
    assert str(blocker) in line and "directory" in line, line
    left = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    assert left == ["out", "out/report.html"], left


def test_a_failed_command_removes_the_out_folders_it_made(
    w: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "new" / "deeper"
    (tmp_path / "junit.xml").mkdir()  # check writes its report, then fails on the junit file
    args = ["check", w["ckpt"], "--data", w["data"], "--out", out, "--junit",
            tmp_path / "junit.xml", "--format", "json"]  # fmt: skip
    line = error_line(run_cli(args))
    assert "junit.xml" in line and "directory" in line, line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["junit.xml"]


def test_an_interrupt_rolls_the_set_back(
    w: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from convdiag.load import files

    out = tmp_path / "out"
    real, calls = files.os.fsync, []

    def fsync(fd: int) -> None:
        calls.append(fd)
        if len(calls) == 2:
            raise KeyboardInterrupt
        real(fd)

    monkeypatch.setattr(files.os, "fsync", fsync)
    res = run_cli(["logs", w["log"], "--out", out, "--format", "json"])
    assert res.code == 130 and "interrupted" in res.stderr
    assert not out.exists()


# --------------------------------------------------------------------------- what a sample is


def test_masks_without_images_are_ignored_and_counted(w: dict[str, Path], tmp_path: Path) -> None:
    import json
    import shutil

    data = tmp_path / "data"
    shutil.copytree(w["data"], data)
    extra = sorted((data / "masks").iterdir())[:2]
    for k, m in enumerate(extra):  # masks of images kept elsewhere
        shutil.copy(m, data / "masks" / f"background_{k}.png")
    res = run_cli(["labels", data, "--format", "json"])
    assert res.code in (0, 1), res.stderr
    assert "ignored 2 mask(s) without an image" in res.stderr
    report = json.loads(res.stdout)
    assert report["dataset"]["ignored_masks"] == 2
    assert report["dataset"]["images"] == 8
    # an image without a mask is still an input error, unless --on-mismatch skip
    for k in range(2):
        (data / "masks" / f"background_{k}.png").unlink()
    extra[0].unlink()
    line = error_line(run_cli(["labels", data, "--format", "json"]))
    assert "no mask" in line and "--on-mismatch skip" in line, line
    res = run_cli(["labels", data, "--on-mismatch", "skip", "--format", "json"])
    assert res.code in (0, 1) and json.loads(res.stdout)["dataset"]["images"] == 7
