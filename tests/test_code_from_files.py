"""Issue 14 section 1: loading a file never runs code the user did not name.

Each test attacks the way a hostile file or folder would: a convdiag checkpoint naming
``subprocess:call`` as its factory, a checkpoint-stored adapter, a ``PIL.py`` in the folder
where the user runs convdiag, a dataset whose image paths climb out of it, and pickles that
make the unpickler allocate without bound. A marker file proves that no code ran; where a
refusal is lifted (``--trust-checkpoint``) the same marker shows the attack was real.
"""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from bad.helpers import REPO, error_line, run_cli, run_proc
from PIL import Image

from convdiag.errors import InputError
from convdiag.load.checkpoint import load_checkpoint, save_checkpoint
from convdiag.load.factory import resolve_factory
from convdiag.load.safe_unpickle import MAX_PLAIN_DEPTH, MAX_PLAIN_ITEMS, to_plain
from convdiag.models.detector import reference


def _dataset(root: Path) -> Path:
    data = root / "data"
    (data / "images").mkdir(parents=True)
    for k, name in enumerate(("a", "b")):
        img = np.random.default_rng(k).integers(0, 255, (32, 32), dtype=np.uint8)
        Image.fromarray(img).save(data / "images" / f"{name}.png")
    (data / "points.csv").write_text("image,x,y\na.png,10.5,12.5\nb.png,20,20\n")
    return data


def _evil_factory_checkpoint(root: Path, marker: Path) -> Path:
    """A convdiag checkpoint whose model factory is ``subprocess:call`` touching ``marker``."""
    path = root / "evil.pt"
    net = reference(head="P2", width=4)
    save_checkpoint(
        path, net, "subprocess:call", {"args": f"touch {marker}", "shell": True}, {"head": "P2"}
    )
    return path


@pytest.mark.parametrize("command", ["analyze", "retrain", "check"])
def test_a_checkpoint_factory_outside_convdiag_is_not_imported(
    tmp_path: Path, command: str
) -> None:
    data, marker = _dataset(tmp_path), tmp_path / "pwned"
    ckpt = _evil_factory_checkpoint(tmp_path, marker)
    extra = {"retrain": ["--steps", "1", "--out", tmp_path / "out"], "check": []}.get(command, [])
    args = [command, ckpt, "--data", data, *extra]
    if command == "check":
        args = ["check", ckpt, "--data", data]
    line = error_line(run_cli(args))
    assert "subprocess:call" in line and "--trust-checkpoint" in line, line
    assert not marker.exists(), "the checkpoint's factory ran"


def test_trusting_the_checkpoint_runs_its_factory(tmp_path: Path) -> None:
    """The control: with --trust-checkpoint the same file's factory does run."""
    data, marker = _dataset(tmp_path), tmp_path / "pwned"
    ckpt = _evil_factory_checkpoint(tmp_path, marker)
    res = run_cli(["analyze", ckpt, "--data", data, "--trust-checkpoint"])
    assert res.code == 2 and "not a torch.nn.Module" in res.stderr
    assert marker.exists()


def test_the_users_model_flag_replaces_the_stored_factory(tmp_path: Path) -> None:
    data, marker = _dataset(tmp_path), tmp_path / "pwned"
    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, reference(head="P2", width=4), "subprocess:call", {}, {"head": "P2"})
    res = run_cli(
        ["analyze", path, "--data", data, "--model", "convdiag.models:reference",
         "--model-arg", "head=P2", "--model-arg", "width=4"]
    )  # fmt: skip
    assert res.code == 0, res.stderr
    assert not marker.exists()


def test_a_checkpoint_adapter_outside_convdiag_is_not_imported(tmp_path: Path) -> None:
    data, marker = _dataset(tmp_path), tmp_path / "pwned"
    (tmp_path / "evil_adapter.py").write_text(f"open({str(marker)!r}, 'w')\ndef f(x): return x\n")
    path = tmp_path / "ckpt.pt"
    net = reference(head="P2", width=4)
    args = {"head": "P2", "width": 4}
    save_checkpoint(
        path, net, "convdiag.models:reference", args, {"head": "P2"},
        meta={"adapter": f"{tmp_path / 'evil_adapter.py'}:f"},
    )  # fmt: skip
    line = error_line(run_cli(["analyze", path, "--data", data]))
    assert "evil_adapter.py:f" in line and "--adapter" in line, line
    assert not marker.exists()


def test_a_module_in_the_working_folder_does_not_shadow_an_installed_one(tmp_path: Path) -> None:
    """``PIL.py`` and ``numpy.py`` where the user runs convdiag never run; the user's own
    ``mynet.py`` there is found; ``sys.path`` is as before afterwards."""
    data, marker = _dataset(tmp_path), tmp_path / "pwned"
    for name in ("PIL", "numpy", "scipy", "matplotlib", "rich", "pandas"):
        (tmp_path / f"{name}.py").write_text(f"open({str(marker)!r}, 'a').write({name!r})\n")
    (tmp_path / "mynet.py").write_text(
        "from convdiag.models.detector import reference\n"
        "def build():\n    return reference(head='P2', width=4)\n"
    )
    ckpt = tmp_path / "ckpt.pt"
    save_checkpoint(ckpt, reference(head="P2", width=4), "mynet:build", {}, {"head": "P2"})
    res = run_proc(["analyze", ckpt, "--data", data, "--model", "mynet:build"], cwd=tmp_path)
    assert res.code == 0, res.stderr[-2000:]
    assert not marker.exists(), marker.read_text()
    # An installed package is never taken from the working folder, even when named.
    line = error_line(run_proc(["analyze", ckpt, "--data", data, "--model", "numpy:build"],
                               cwd=tmp_path))  # fmt: skip
    assert "numpy has no attribute build" in line, line
    assert not marker.exists()


def test_sys_path_is_restored_after_a_lookup(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "cwd_factory_mod.py").write_text("def build():\n    return 1\n")
    monkeypatch.chdir(tmp_path)
    before = list(sys.path)
    assert resolve_factory("cwd_factory_mod:build")() == 1
    assert sys.path == before
    with pytest.raises(InputError, match="refusing to import"):
        resolve_factory("cwd_factory_mod:build", "ckpt.pt: factory", trusted=False)


# ----------------------------------------------------------------------------- dataset paths


def _coco(root: Path, file_name: str) -> Path:
    coco = root / "ann.json"
    coco.write_text(json.dumps({
        "images": [{"id": 1, "file_name": file_name, "height": 32, "width": 32}],
        "annotations": [{"id": 1, "image_id": 1, "bbox": [4, 4, 2, 2], "category_id": 1}],
        "categories": [{"id": 1, "name": "t"}],
    }))  # fmt: skip
    return coco


@pytest.mark.parametrize("kind", ["coco", "points"])
@pytest.mark.parametrize("how", ["dotdot", "absolute"])
def test_dataset_paths_stay_inside_the_dataset(tmp_path: Path, kind: str, how: str) -> None:
    outside = tmp_path / "secret"
    outside.mkdir()
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(outside / "x.png")
    root = tmp_path / "ds"
    root.mkdir()
    name = "../secret/x.png" if how == "dotdot" else str(outside / "x.png")
    if kind == "coco":
        _coco(root, name)
    else:
        (root / "points.csv").write_text(f"image,x,y\n{name},5,5\n")
    line = error_line(run_cli(["labels", root, "--level", "P2"]))
    assert "outside the dataset folder" in line and "--images" in line, line
    # With --images DIR the name resolves inside DIR (by its file name), never outside it.
    images = tmp_path / "imgs"
    images.mkdir()
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(images / "x.png")
    res = run_cli(["labels", root, "--level", "P2", "--images", images, "--format", "json"])
    assert res.code == 0, res.stderr
    (images / "x.png").unlink()
    line = error_line(run_cli(["labels", root, "--level", "P2", "--images", images]))
    assert "not found in" in line and str(images) in line, line


# ----------------------------------------------------------------------------- pickle bounds


def _legacy_pickle(path: Path, body: bytes) -> Path:
    path.write_bytes(b"\x80\x02" + body + b".")
    return path


def test_a_mark_flood_is_refused(tmp_path: Path) -> None:
    bomb = _legacy_pickle(tmp_path / "marks.pt", b"(" * 200_000)
    with pytest.raises(InputError, match="marks nested deeper"):
        load_checkpoint(bomb)


def test_an_opcode_flood_stops_with_bounded_memory(tmp_path: Path) -> None:
    """30M EMPTY_DICT opcodes would hold 30M dicts (~2 GB) in torch's unpickler; the bound
    refuses them first. Peak memory of a fresh process is measured."""
    data = b"\x80\x02" + b"}" * 30_000_000 + b"."
    bomb = tmp_path / "dicts.pt"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("archive/data.pkl", data)
        zf.writestr("archive/version", "3\n")
    code = (
        "import resource, sys\n"
        "from convdiag.load.checkpoint import load_checkpoint\n"
        "from convdiag.errors import InputError\n"
        "try:\n    load_checkpoint(sys.argv[1])\n"
        "except InputError as e:\n    print(e)\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
    )
    res = subprocess.run(
        [sys.executable, "-c", code, str(bomb)], capture_output=True, text=True, cwd=REPO,
        timeout=600,
    )  # fmt: skip
    message, peak_kib = res.stdout.strip().splitlines()
    assert "pickle opcodes" in message, res.stdout + res.stderr
    assert int(peak_kib) < 1_200_000, f"peak RSS {int(peak_kib) / 1024:.0f} MiB"


def test_array_constructors_are_capped(tmp_path: Path) -> None:
    # numpy.ndarray((2**40,), 'f8') and _reconstruct(ndarray, (2**40,), b'b'): 8 TB / 1 TB.
    shape = b"\x8a\x06\x00\x00\x00\x00\x00\x01\x85"  # LONG1 2**40, TUPLE1
    calls = {
        "ndarray": b"cnumpy\nndarray\n(" + shape + b"X\x02\x00\x00\x00f8tR",
        "reconstruct": b"cnumpy.core.multiarray\n_reconstruct\n(cnumpy\nndarray\n"
        + shape + b"X\x01\x00\x00\x00btR",
    }  # fmt: skip
    for name, body in calls.items():
        path = _legacy_pickle(tmp_path / f"{name}.pt", body)
        with pytest.raises(InputError, match="exceeds 256 MiB"):
            load_checkpoint(path)


def test_to_plain_summarises_deep_and_huge_metadata() -> None:
    deep: list[object] = []
    cur = deep
    for _ in range(100_000):  # deeper than Python could recurse
        nxt: list[object] = []
        cur.append(nxt)
        cur = nxt
    out = to_plain({"hyper_parameters": deep})
    level, depth = out["hyper_parameters"], 1
    while isinstance(level, list):
        level, depth = level[0], depth + 1
    assert "omitted: nested deeper" in level and depth == MAX_PLAIN_DEPTH + 1
    huge = to_plain({"a": list(range(MAX_PLAIN_ITEMS + 10)), "b": np.zeros(10**7)})
    assert huge["a"][:3] == [0, 1, 2] and "omitted" in huge["a"][-1]
    assert isinstance(huge["b"], str) and "omitted" in huge["b"]
    assert to_plain({"x": np.arange(3)}) == {"x": [0, 1, 2]}
