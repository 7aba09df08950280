"""One clear line for every bad value, from wherever it came (issue 14 sections 4 and 5).

Each input is built to break the place that reads it: integers Python cannot convert,
nesting deeper than the recursion limit, FIFOs and devices where a file is expected,
meta-device tensors, an unrelated TorchScript module, wrongly typed report fields,
--remedy parameters out of range, seeds the generators refuse, config values, symbolic
link loops, UTF-16 tables, duplicate table rows, a prior that cannot be set, stdout that
cannot take the output, Ctrl-C while starting, and pixel limits. Every one must end in
exit 2 (130 for Ctrl-C) and one line naming the file, key or flag.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from bad.helpers import FIXTURES, REPO, error_line, run_cli
from PIL import Image


@pytest.fixture(scope="module")
def w(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("badvalues")
    data = root / "data"
    (data / "images").mkdir(parents=True)
    for k, name in enumerate(("a", "b", "c")):
        img = np.random.default_rng(k).integers(0, 255, (32, 32), dtype=np.uint8)
        Image.fromarray(img).save(data / "images" / f"{name}.png")
    (data / "points.csv").write_text("image,x,y\nimages/a.png,10.5,12.5\nimages/b.png,20,20\n"
                                     "images/c.png,,\n")  # fmt: skip
    from convdiag.load.checkpoint import save_checkpoint
    from convdiag.load.recipe import Recipe
    from convdiag.models.detector import reference

    torch.manual_seed(0)
    args = {"head": "P2", "width": 4, "prior": 0.01, "bias_init": "prior"}
    save_checkpoint(root / "ckpt.pt", reference(**args), "convdiag.models:reference", args,
                    Recipe().to_dict())  # fmt: skip
    return {"root": root, "data": data, "table": data / "points.csv", "ckpt": root / "ckpt.pt"}


def _coco(w: dict[str, Path], tmp_path: Path, width: str) -> Path:
    coco = {"images": [{"id": 1, "file_name": "images/a.png", "width": 32, "height": 32}],
            "annotations": [{"id": 1, "image_id": 1, "bbox": [1, 2, 3, 4]}]}  # fmt: skip
    p = w["data"] / f"coco_{tmp_path.name}.json"
    p.write_text(json.dumps(coco).replace('"width": 32', f'"width": {width}'))
    return p


@pytest.mark.parametrize(
    "width,words",
    [("9" * 5000, ["digits"]), ("9" * 400, ["width and height"]), ("1e999", ["width"])],
)
def test_huge_numbers_in_coco(
    w: dict[str, Path], tmp_path: Path, width: str, words: list[str]
) -> None:
    p = _coco(w, tmp_path, width)
    try:
        line = error_line(run_cli(["labels", p, "--format", "json"]))
    finally:
        p.unlink()
    assert str(p) in line and all(x in line for x in words), line
    assert len(line) < 400, "the number was printed"


def _report(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "report.json"
    p.write_text(text)
    return p


GOOD = {"schema": 1, "kind": "analyze", "findings": [], "metrics": {}}


@pytest.mark.parametrize(
    "text,word",
    [
        ('{"schema":1,"findings":[],"metrics":{"x":' + "9" * 5000 + "}}", "digits"),
        ('{"schema":1,"findings":[],"metrics":' + "[" * 100_000 + "]" * 100_000 + "}", "nested"),
        (json.dumps({**GOOD, "metrics": "abc"}), "metrics"),
        (json.dumps({**GOOD, "analyses": 7}), "analyses"),
        (json.dumps({**GOOD, "findings": [{"id": 5, "severity": [], "evidence": "x"}]}),
         "malformed findings"),
        (json.dumps({**GOOD, "findings": [{"id": "x", "severity": "warning", "evidence": {},
                                           "remedies": "soft"}]}), "malformed findings"),
    ],
)  # fmt: skip
def test_a_hostile_report(tmp_path: Path, text: str, word: str) -> None:
    p = _report(tmp_path, text)
    for fmt in ("table", "markdown", "html"):
        line = error_line(run_cli(["show", p, "--format", fmt]))
        assert str(p) in line and word in line, line


@pytest.mark.parametrize(
    "remedies,word",
    [("7", "malformed remedies"), ('[{"id": "soft-labels", "params": "bad"}]', "malformed"),
     ('[{"id": 5}]', "malformed"), ('[{"id": "focal-loss", "params": {"alpha": "nan"}}]',
                                    "--remedy focal-loss")],
)  # fmt: skip
def test_from_report_with_malformed_remedies(
    w: dict[str, Path], tmp_path: Path, remedies: str, word: str
) -> None:
    finding = '{"id": "x", "severity": "warning", "evidence": {}, "remedies": ' + remedies + "}"
    p = _report(tmp_path, '{"schema": 1, "findings": [' + finding + '], "metrics": {}}')
    args = ["retrain", w["ckpt"], "--data", w["data"], "--from-report", p, "--steps", "1",
            "--batch", "1"]  # fmt: skip
    line = error_line(run_cli(args))
    assert word in line, line


@pytest.mark.parametrize(
    "spec,words",
    [
        ("focal-loss:alpha=nan", ["--remedy focal-loss", "nan"]),
        ("pos-weight:w=-1", ["--remedy pos-weight", "-1"]),
        ("soft-labels:kernel=abc", ["--remedy soft-labels", "abc"]),
        ("soft-labels:kernel=99999999999999999999", ["--remedy soft-labels"]),
        ("soft-labels:sigma=inf", ["--remedy soft-labels", "sigma"]),
        ("oversample:p=2", ["--remedy oversample", "2"]),
        ("copy-paste:n=1.5", ["--remedy copy-paste"]),
    ],
)
def test_remedy_parameters_out_of_range(w: dict[str, Path], spec: str, words: list[str]) -> None:
    args = ["retrain", w["ckpt"], "--data", w["data"], "--remedy", spec, "--steps", "1",
            "--batch", "1"]  # fmt: skip
    line = error_line(run_cli(args))
    assert all(x in line for x in words), line


def test_the_recipe_checks_every_value_at_one_place() -> None:
    """Independent reference: each field's bounds, as the flags document them."""
    from convdiag.errors import InputError
    from convdiag.load.recipe import MAX_KERNEL, Recipe

    bad: dict[str, list[Any]] = {
        "kernel": [0, MAX_KERNEL + 1, 2.5, "x", float("nan"), True],
        "sigma": [0, -1, float("inf"), MAX_KERNEL + 1],
        "trunc": [-0.1, 1.0, float("nan")],
        "lr": [0, float("nan"), -1],
        "batch": [0, 10**7],
        "oversample": [1.5],
        "seed": [-1, 2**32],
        "pos_weight": [0, float("inf")],
        "crop": [(0, 32), (32, "a"), "big"],
    }
    for key, values in bad.items():
        for v in values:
            with pytest.raises(InputError, match="--" + key.replace("_", "-")):
                Recipe(**{key: v})  # type: ignore[arg-type]
    r = Recipe(kernel=5.0, sigma="1.5", crop=(32, 64))  # type: ignore[arg-type]
    assert (r.kernel, r.sigma, r.crop) == (5, 1.5, (32, 64))
    assert isinstance(r.kernel, int)


@pytest.mark.parametrize("seed", ["-1", str(2**32), str(2**64), "1" + "0" * 400])
def test_seeds_outside_the_generators(w: dict[str, Path], seed: str) -> None:
    for args in (["labels", w["data"]], ["synth", w["root"] / "s", "--n", "2"]):
        line = error_line(run_cli([*args, "--seed", seed]))
        assert "--seed" in line and "4294967295" in line, line
    assert not (w["root"] / "s").exists()


@pytest.mark.parametrize(
    "text,words",
    [
        ("sigma = -1\n", ["sigma", "> 0"]),
        ("kernel = 1000\n", ["kernel", "63"]),
        ("threshold = 5\n", ["threshold", "between 0 and 1"]),
        ("radius = 0\n", ["radius"]),
        ("batch = 99999999999999999999\n", ["batch"]),
        ("labels = 'medium'\n", ["labels", "hard, soft"]),
        ("fail_on = 'sometimes'\n", ["fail_on"]),
    ],
)
def test_config_values_are_checked_as_their_flags(
    w: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str,
    words: list[str],
) -> None:  # fmt: skip
    for name, body in (("convdiag.toml", text), ("pyproject.toml", "[tool.convdiag]\n" + text)):
        folder = tmp_path / name
        folder.mkdir()
        (folder / name).write_text(body)
        monkeypatch.chdir(folder)
        line = error_line(run_cli(["check", "--data", w["data"], "--format", "json"]))
        assert str(folder / name) in line and all(x in line for x in words), line
        assert "--" not in line.split(": error: ", 1)[1], f"names a flag: {line}"


def test_fifos_devices_and_link_loops(w: dict[str, Path], tmp_path: Path) -> None:
    fifo = tmp_path / "report.json"
    os.mkfifo(fifo)
    line = error_line(run_cli(["show", fifo]))  # must not block
    assert str(fifo) in line and "FIFO" in line, line
    line = error_line(run_cli(["show", "/dev/zero"]))
    assert "/dev/zero" in line and "FIFO or device" in line, line
    table = tmp_path / "points.csv"
    os.mkfifo(table)
    line = error_line(run_cli(["labels", table]))
    assert str(table) in line and "FIFO" in line, line
    loop1, loop2 = tmp_path / "loop1", tmp_path / "loop2"
    loop1.symlink_to(loop2)
    loop2.symlink_to(loop1)
    for args in (["labels", loop1], ["show", loop1], ["analyze", loop1, "--data", w["data"]]):
        line = error_line(run_cli(args))
        loop = "loop of symbolic links" in line or "Too many levels of symbolic links" in line
        assert str(loop1) in line and loop, line


def test_utf16_tables_and_duplicate_rows(w: dict[str, Path], tmp_path: Path) -> None:
    from convdiag.load.datasets import load_dataset

    text = w["table"].read_text()
    for codec in ("utf-16", "utf-16-be", "utf-32"):
        p = w["data"] / f"points_{codec}.csv"
        bom = {"utf-16-be": b"\xfe\xff"}.get(codec, b"")
        p.write_bytes(bom + text.encode(codec))
        try:
            ds = load_dataset(p)
        finally:
            p.unlink()
        assert [r.id for r in ds.records] == ["a", "b", "c"]
        np.testing.assert_allclose(ds.records[0].points, [[10.5, 12.5]])
    dup = w["data"] / "dup.csv"
    dup.write_text(text + "images/a.png,10.5,12.5\n")
    try:
        line = error_line(run_cli(["labels", dup]))
    finally:
        dup.unlink()
    assert "line 5 repeats line 2" in line and "duplicate" in line, line


def test_meta_tensors_and_unrelated_torchscript(w: dict[str, Path], tmp_path: Path) -> None:
    raw = torch.load(w["ckpt"], weights_only=True)
    meta = {k: torch.empty(v.shape, device="meta") for k, v in raw["state_dict"].items()}
    torch.save({**raw, "state_dict": meta}, tmp_path / "meta.pt")
    torch.save(meta, tmp_path / "meta_sd.pt")
    for p, extra in ((tmp_path / "meta.pt", []),
                     (tmp_path / "meta_sd.pt", ["--model", "convdiag.models:reference",
                                                "--model-arg", "width=4"])):  # fmt: skip
        line = error_line(run_cli(["analyze", p, "--data", w["data"], *extra]))
        assert str(p) in line and "meta-device tensor" in line, line
    torch.jit.script(torch.nn.Linear(3, 2)).save(str(tmp_path / "ts.pt"))
    line = error_line(run_cli(["analyze", tmp_path / "ts.pt", "--data", w["data"]]))
    assert "fails on an image batch" in line and "mat1 and mat2" in line, line


def test_negative_safetensors_shape(w: dict[str, Path], tmp_path: Path) -> None:
    import struct

    hdr = json.dumps({"a": {"dtype": "F32", "shape": [-1, 3], "data_offsets": [0, 12]}}).encode()
    p = tmp_path / "neg.safetensors"
    p.write_bytes(struct.pack("<Q", len(hdr)) + hdr + b"\0" * 12)
    line = error_line(run_cli(["analyze", p, "--data", w["data"], "--model",
                               "convdiag.models:reference"]))  # fmt: skip
    assert str(p) in line and "[-1, 3]" in line, line


def test_memory_flags_are_bounded(w: dict[str, Path]) -> None:
    cases = [
        (["analyze", w["ckpt"], "--data", w["data"], "--pad-to", "100000"], "--pad-to"),
        (["labels", w["data"], "--soft", "--kernel", "999999"], "--kernel"),
        (["labels", w["data"], "--soft", "--sigma", "1e300"], "--sigma"),
        (["labels", w["data"], "--schedule", "1.0:99999:1.0"], "--schedule"),
        (["train", w["data"], "--kernel", "64", "--out", w["root"] / "t"], "--kernel"),
        (["labels", w["data"], "--max-pixels", "0"], "--max-pixels"),
    ]
    for args, flag in cases:
        line = error_line(run_cli(args))
        assert flag in line, line


def test_max_pixels_is_applied(w: dict[str, Path]) -> None:
    line = error_line(run_cli(["labels", w["data"], "--max-pixels", "1000"]))
    assert "32x32 pixels" in line and "--max-pixels" in line and "a.png" in line, line
    assert run_cli(["labels", w["data"], "--max-pixels", "1024", "--format", "json"]).code in (0, 1)
    from convdiag.load.imageio import MAX_PIXELS, max_pixels

    assert max_pixels() == MAX_PIXELS  # restored after the command


def test_a_prior_that_cannot_be_set(tmp_path: Path) -> None:
    data = tmp_path / "full"
    (data / "images").mkdir(parents=True)
    rows = ["image,x,y"]
    for name in ("a", "b"):
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(data / "images" / f"{name}.png")
        rows += [f"images/{name}.png,{x},{y}" for x in (2, 6) for y in (2, 6)]
    (data / "points.csv").write_text("\n".join(rows) + "\n")
    args = ["train", data / "points.csv", "--steps", "1", "--batch", "1", "--width", "4",
            "--out", tmp_path / "out"]  # fmt: skip
    line = error_line(run_cli(args))
    assert "every P2 cell" in line and "holds a target" in line and "--model" not in line, line
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- the process


def _proc(args: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(FIXTURES), str(REPO)]),
           "OMP_WAIT_POLICY": "PASSIVE", **kw.pop("env", {})}  # fmt: skip
    env.pop("CONVDIAG_DEBUG", None)
    kw.setdefault("stdout", subprocess.PIPE)
    return subprocess.run([sys.executable, *args], cwd=REPO, env=env, stderr=subprocess.PIPE,
                          text=True, timeout=120, **kw)  # fmt: skip


def test_stdout_that_cannot_take_the_output(tmp_path: Path) -> None:
    data = tmp_path / "données"  # the title names it: not ASCII
    (data / "images").mkdir(parents=True)
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(data / "images" / "a.png")
    (data / "points.csv").write_text("image,x,y\nimages/a.png,2,2\n")
    res = _proc(["-m", "convdiag", "labels", str(data / "points.csv")],
                env={"PYTHONIOENCODING": "ascii"})  # fmt: skip
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "stdout" in lines[0] and "PYTHONIOENCODING" in lines[0], lines
    report = _report(tmp_path, json.dumps(GOOD))
    with open("/dev/full", "w") as full:
        res = _proc(["-m", "convdiag", "show", str(report), "--format", "json"], stdout=full)
    assert res.returncode == 2, res.stderr
    assert res.stderr.strip() == "convdiag: error: stdout: cannot write the output (No space " \
        "left on device)", res.stderr  # fmt: skip


def test_ctrl_c_while_starting_is_one_line_and_130() -> None:
    """SIGINT arrives while the console script is still importing (deterministic: the
    process signals itself right after importing the entry module)."""
    code = ("import os, signal, sys, time; sys.argv[0] = 'convdiag'; "
            "import convdiag.cli.main; os.kill(os.getpid(), signal.SIGINT); time.sleep(5); "
            "print('not interrupted')")  # fmt: skip
    res = _proc(["-c", code])
    assert res.returncode == 130 and res.stderr == "convdiag: interrupted\n", res
    assert not res.stdout
    # once started, Ctrl-C goes through the command's own handling (exit 130 as well)
    code = (
        "import sys; sys.argv[0] = 'convdiag'; import convdiag.cli.main as m; "
        "import convdiag.cli.labels as l; l.command.callback = lambda **k: "
        "(_ for _ in ()).throw(KeyboardInterrupt); sys.argv[1:] = ['labels', 'x']; m.main()"
    )
    res = _proc(["-c", code])
    assert res.returncode == 130 and res.stderr.strip() == "convdiag: interrupted", res
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # this process untouched
