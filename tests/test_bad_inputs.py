"""The bad-input corpus: every command, every kind of bad input (issue 6, "Bad input").

Each case runs a command on one bad input and asserts what DESIGN.md "Exit codes" promises:
exit code 2, exactly one line on stderr starting ``convdiag: error:`` that names the file or
flag and what is wrong (checked by the words each case lists), no traceback, nothing on
stdout, and no file created or changed: the whole fixture tree (inputs and an existing
``--out`` folder holding an earlier report) is compared byte for byte and by mtime, and a
new ``--out`` folder must not appear.

Most cases run in-process (CliRunner keeps stderr apart); a few run ``python -m convdiag``
as a user does. A model whose output holds NaN/Inf is not bad input: it is the finding
``non-finite-outputs``, checked here next to the cases.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from bad.helpers import error_line, run_cli, run_proc, snapshot
from PIL import Image

H, W = 32, 48


def _png(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def _noise(seed: int, h: int = H, w: int = W) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, size=(h, w), dtype=np.uint8)


def _mask(points: list[tuple[int, int]], h: int = H, w: int = W) -> np.ndarray:
    m = np.zeros((h, w), dtype=np.uint8)
    for r, c in points:
        m[r, c] = 255
    return m


def _points_set(root: Path, rows: str, images: tuple[str, ...] = ("a", "b", "c")) -> Path:
    for k, name in enumerate(images):
        _png(root / "images" / f"{name}.png", _noise(k))
    root.mkdir(parents=True, exist_ok=True)
    (root / "points.csv").write_text(rows)
    return root


GOOD_ROWS = "image,x,y\na.png,10.5,12.5\nb.png,30.2,20.7\nc.png,,\n"


def _mask_set(root: Path) -> Path:
    for k, name in enumerate(("a", "b", "c")):
        _png(root / "images" / f"{name}.png", _noise(k))
        _png(root / "masks" / f"{name}.png", _mask([(5 + k, 7 + k), (20, 30)]))
    return root


def _save_convdiag_ckpt(path: Path, width: int = 4) -> None:
    from convdiag.load.checkpoint import save_checkpoint
    from convdiag.load.recipe import Recipe
    from convdiag.models.detector import reference

    torch.manual_seed(0)
    model = reference(head="P2", width=width, prior=0.01)
    args = {"head": "P2", "width": width, "prior": 0.01, "bias_init": "prior"}
    save_checkpoint(path, model, "convdiag.models:reference", args, Recipe().to_dict(),
                    meta={"step": 0, "steps": 0})  # fmt: skip


@dataclass
class World:
    """Fixture tree: good inputs, one bad input per case, an existing --out with a report."""

    root: Path

    def __truediv__(self, name: str) -> Path:
        return self.root / name

    @property
    def out_old(self) -> Path:
        return self.root / "out_old"

    @property
    def good(self) -> Path:
        return self.root / "good"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    root = tmp_path_factory.mktemp("bad_world") / "w"
    w = World(root)
    good = _points_set(w / "good", GOOD_ROWS)
    (good / "train.txt").write_text("a\nb\n")
    (good / "val.txt").write_text("c\n")
    (good / "empty_split.txt").write_text("# nothing\n\n")
    (good / "unknown_split.txt").write_text("a\nzebra\n")
    _mask_set(w / "masks_ok")

    # images: missing, empty, truncated, not an image
    _points_set(w / "img_missing", GOOD_ROWS.replace("b.png", "gone.png"))
    empty = _points_set(w / "img_empty", GOOD_ROWS)
    (empty / "images" / "b.png").write_bytes(b"")
    trunc = _points_set(w / "img_trunc", GOOD_ROWS)
    data = (trunc / "images" / "b.png").read_bytes()
    (trunc / "images" / "b.png").write_bytes(data[: len(data) // 2])
    names = tuple(f"m{k:02d}" for k in range(12))
    many = _points_set(
        w / "img_trunc_late",
        "image,x,y\n" + "".join(f"{n}.png,{5 + k},{6 + k}\n" for k, n in enumerate(names)),
        images=names,
    )
    (many / "train.txt").write_text("\n".join(names[:10]) + "\n")
    (many / "val.txt").write_text("\n".join(names[10:]) + "\n")
    data = (many / "images" / "m05.png").read_bytes()
    (many / "images" / "m05.png").write_bytes(data[: len(data) // 2])
    notimg = _points_set(w / "img_text", GOOD_ROWS)
    (notimg / "images" / "b.png").write_text("this is not a PNG\n")
    # masks: another size, values other than 0/1/255
    ms = _mask_set(w / "mask_size")
    _png(ms / "masks" / "b.png", _mask([(3, 3)], H + 4, W))
    mv = _mask_set(w / "mask_values")
    bad = _mask([(3, 3)])
    bad[10, 10] = 128
    _png(mv / "masks" / "b.png", bad)
    # points tables
    _points_set(w / "csv_columns", "image,x\na.png,3\n")
    _points_set(w / "csv_text", "image,x,y\na.png,ten,3\n")
    _points_set(w / "csv_negative", "image,x,y\na.png,-2,3\n")
    _points_set(w / "csv_outside", f"image,x,y\na.png,{W + 5},3\n")
    _points_set(w / "csv_unknown", "image,x,y\nzebra.png,3,3\n")
    _points_set(w / "csv_binary", "image,x,y\n").joinpath("points.csv").write_bytes(
        b"\x89PNG\x00\x01garbage"
    )
    # COCO
    coco = w / "coco_bad"
    _png(coco / "a.png", _noise(0))
    (coco / "ann.json").write_text('{"images": [{"id": 1, "file_name": "a.png"}], "annot')
    coco2 = w / "coco_noimages"
    _png(coco2 / "a.png", _noise(0))
    (coco2 / "ann.json").write_text('{"annotations": []}')
    # empty datasets
    (w / "empty_dir").mkdir()
    _points_set(w / "csv_header_only", "image,x,y\n", images=())
    # checkpoints
    _save_convdiag_ckpt(w / "ckpt.pt")
    raw = (w / "ckpt.pt").read_bytes()
    (w / "ckpt_trunc.pt").write_bytes(raw[: len(raw) // 3])
    (w / "ckpt_text.pt").write_text("not a checkpoint\n")
    _save_convdiag_ckpt(w / "ckpt_w8.pt", width=8)
    from bad.models import healthy

    torch.manual_seed(0)
    sd = healthy().state_dict()
    torch.save(sd, w / "healthy_sd.pt")
    torch.save({k: v for k, v in sd.items() if not k.startswith("cls.")}, w / "nohead_sd.pt")
    from bad.models import odd_stride, wrong_shape

    torch.save(wrong_shape().state_dict(), w / "wrong_shape_sd.pt")
    torch.save(odd_stride().state_dict(), w / "odd_stride_sd.pt")
    # reports and logs
    (w / "not_report.json").write_text('{"hello": 1}')
    (w / "logs").mkdir()
    (w / "logs" / "metrics.csv").write_text("alpha,beta\n1,2\n3,4\n")
    (w / "logs_text.csv").write_text("step,loss\n1,abc\n2,def\n")
    # an earlier run's output that a failed command must leave alone
    w.out_old.mkdir()
    (w.out_old / "report.json").write_text('{"earlier": true}\n')
    (w.out_old / "checkpoint.pt").write_bytes(raw)
    (w.out_old / "junit.xml").write_text("<testsuites/>\n")
    # a file where a folder is expected
    (w / "a_file").write_text("x")
    return w


@dataclass(frozen=True)
class Case:
    """One bad input: the command line (built from the world) and words the error must hold."""

    name: str
    args: Callable[[World], list[object]]
    words: tuple[str, ...]
    new_out: bool = True  # add --out NEW (must not be created)


CKPT_MODEL = ("--model", "bad.models:healthy")

# fmt: off
CASES = [
    # ------------------------------------------------------------------ dataset, every format
    Case("image-missing", lambda w: ["labels", w / "img_missing"], ("gone.png", "not found")),
    Case("image-empty", lambda w: ["labels", w / "img_empty"], ("b.png", "empty")),
    Case("image-truncated-analyze",
         lambda w: ["analyze", w / "ckpt.pt", "--data", w / "img_trunc"],
         ("b.png", "truncated")),
    Case("image-truncated-labels-overlay",
         lambda w: ["labels", w / "img_trunc", "--level", "P2", "--examples", "3"],
         ("b.png", "truncated")),
    # read late in training (m05 is one of 10 training images, one per step): the earlier
    # checkpoint of this run must not replace the old one (seed 3 draws m05 first at step 8)
    Case("image-truncated-train-keeps-old-checkpoint",
         lambda w: ["train", w / "img_trunc_late", "--steps", "30", "--eval-every", "1",
                    "--batch", "1", "--width", "4", "--seed", "3", "--force", "--out", w.out_old],
         ("m05.png", "truncated")),
    Case("image-truncated-retrain",
         lambda w: ["retrain", w / "ckpt.pt", "--data", w / "img_trunc", "--soft", "--steps",
                    "3", "--out", w.out_old], ("b.png", "truncated")),
    Case("image-not-an-image", lambda w: ["labels", w / "img_text"], ("b.png", "not a readable")),
    Case("mask-size", lambda w: ["labels", w / "mask_size"], ("b.png", "size", "--on-mismatch")),
    Case("mask-values", lambda w: ["check", "--data", w / "mask_values"],
         ("b.png", "not binary", "128")),
    Case("csv-missing-column", lambda w: ["labels", w / "csv_columns"], ("points.csv", "y")),
    Case("csv-non-numeric", lambda w: ["labels", w / "csv_text"], ("points.csv", "line 2", "ten")),
    Case("csv-negative", lambda w: ["labels", w / "csv_negative"], ("points.csv", "negative")),
    Case("csv-outside-image", lambda w: ["labels", w / "csv_outside"],
         ("points.csv", "outside", "a.png")),
    Case("csv-unknown-image", lambda w: ["labels", w / "csv_unknown"],
         ("points.csv", "zebra.png", "not found")),
    Case("csv-binary", lambda w: ["labels", w / "csv_binary"], ("points.csv", "binary")),
    Case("coco-malformed", lambda w: ["labels", w / "coco_bad" / "ann.json"],
         ("ann.json", "not valid JSON")),
    Case("coco-no-images", lambda w: ["labels", w / "coco_noimages"], ("ann.json", "images")),
    Case("dataset-empty-folder", lambda w: ["labels", w / "empty_dir"], ("empty_dir", "no ")),
    Case("dataset-header-only", lambda w: ["labels", w / "csv_header_only"],
         ("points.csv", "no images")),
    Case("dataset-missing", lambda w: ["labels", w / "nowhere"], ("nowhere", "no such")),
    Case("split-empty", lambda w: ["labels", w.good, "--split", "empty_split.txt"],
         ("empty_split.txt", "empty")),
    Case("split-unknown-name", lambda w: ["labels", w.good, "--split", "holdout"],
         ("--split", "holdout", "no such split")),
    Case("split-unknown-id", lambda w: ["train", w.good, "--split", "unknown_split.txt",
                                        "--steps", "1"], ("unknown_split.txt", "zebra")),
    Case("val-split-empty", lambda w: ["retrain", w / "ckpt.pt", "--data", w.good, "--soft",
                                       "--val-split", w.good / "empty_split.txt"],
         ("empty_split.txt", "empty")),
    # ------------------------------------------------------------------ checkpoints and models
    Case("ckpt-truncated", lambda w: ["analyze", w / "ckpt_trunc.pt", "--data", w.good],
         ("ckpt_trunc.pt", "truncated")),
    Case("ckpt-not-a-checkpoint", lambda w: ["retrain", w / "ckpt_text.pt", "--data", w.good,
                                             "--soft"], ("ckpt_text.pt", "not a checkpoint")),
    Case("ckpt-missing", lambda w: ["check", w / "nope.pt", "--data", w.good],
         ("nope.pt", "no such")),
    Case("ckpt-other-architecture",
         lambda w: ["analyze", w / "ckpt_w8.pt", "--data", w.good, "--model-arg", "width=4"],
         ("ckpt_w8.pt", "shape")),
    Case("ckpt-state-dict-other-architecture",
         lambda w: ["analyze", w / "healthy_sd.pt", "--data", w.good, "--model",
                    "convdiag.models:reference"], ("healthy_sd.pt",)),
    Case("ckpt-no-cls-head",
         lambda w: ["analyze", w / "nohead_sd.pt", "--data", w.good, *CKPT_MODEL],
         ("nohead_sd.pt", "cls")),
    Case("ckpt-state-dict-without-model",
         lambda w: ["analyze", w / "healthy_sd.pt", "--data", w.good],
         ("healthy_sd.pt", "--model")),
    Case("model-wrong-shape",
         lambda w: ["analyze", w / "wrong_shape_sd.pt", "--data", w.good, "--model",
                    "bad.models:wrong_shape"], ("cls", "shape", "[B, 1, h, w]")),
    Case("model-odd-stride",
         lambda w: ["analyze", w / "odd_stride_sd.pt", "--data", w.good, "--model",
                    "bad.models:odd_stride"], ("stride", "power of two")),
    Case("model-odd-stride-train",
         lambda w: ["train", w.good, "--model", "bad.models:odd_stride", "--steps", "2",
                    "--batch", "1"],
         ("stride", "power of two")),
    Case("factory-does-not-import",
         lambda w: ["analyze", w / "healthy_sd.pt", "--data", w.good, "--model",
                    "bad.broken_import:build"], ("--model", "bad.broken_import", "nosuchpkg")),
    Case("factory-no-such-module",
         lambda w: ["train", w.good, "--model", "nosuch_pkg_xyz.mod:build", "--steps", "1",
                    "--batch", "1"],
         ("--model", "nosuch_pkg_xyz")),
    Case("factory-malformed", lambda w: ["retrain", w / "healthy_sd.pt", "--data", w.good,
                                         "--model", "no colon here", "--soft"], ("--model",)),
    Case("adapter-does-not-import",
         lambda w: ["analyze", w / "ckpt.pt", "--data", w.good, "--adapter", "nosuch_xyz:f"],
         ("--adapter", "nosuch_xyz")),
    Case("model-arg-not-key-value",
         lambda w: ["analyze", w / "ckpt.pt", "--data", w.good, "--model-arg", "width"],
         ("--model-arg", "key=value")),
    # ------------------------------------------------------------------ levels and recipes
    Case("level-unknown-labels", lambda w: ["labels", w.good, "--level", "Q7"], ("--level", "Q7")),
    Case("levels-unknown-analyze",
         lambda w: ["analyze", w / "ckpt.pt", "--data", w.good, "--levels", "P2,banana"],
         ("--levels", "banana")),
    Case("level-not-output-by-model",
         lambda w: ["analyze", w / "ckpt.pt", "--data", w.good, "--levels", "P4"],
         ("--levels", "P4")),
    Case("head-unknown-train",
         lambda w: ["train", w.good, "--head", "P9x", "--steps", "1", "--batch", "1"],
         ("P9x",)),
    Case("schedule-bad-labels", lambda w: ["labels", w.good, "--schedule", "0.5:3"],
         ("--schedule", "0.5:3")),
    Case("schedule-bad-train",
         lambda w: ["train", w.good, "--schedule", "0.3:5:1.2,0.6:3:0.8", "--steps", "1",
                    "--batch", "1"],
         ("--schedule", "1.0")),
    Case("schedule-bad-remedy",
         lambda w: ["retrain", w / "ckpt.pt", "--data", w.good, "--remedy",
                    "sigma-schedule:schedule=fast"], ("schedule", "fast")),
    Case("kernel-zero-labels", lambda w: ["labels", w.good, "--kernel", "0"], ("--kernel", "0")),
    Case("kernel-zero-remedy",
         lambda w: ["retrain", w / "ckpt.pt", "--data", w.good, "--remedy",
                    "soft-labels:kernel=0"], ("kernel", "0")),
    Case("sigma-negative-labels", lambda w: ["labels", w.good, "--sigma", "-1"], ("--sigma",)),
    Case("sigma-negative-remedy",
         lambda w: ["retrain", w / "ckpt.pt", "--data", w.good, "--remedy",
                    "soft-labels:sigma=-0.5"], ("sigma", "-0.5")),
    Case("sigma-negative-check", lambda w: ["check", "--data", w.good, "--sigma", "-2"],
         ("--sigma",)),
    Case("remedy-unknown", lambda w: ["retrain", w / "ckpt.pt", "--data", w.good, "--remedy",
                                      "magic"], ("--remedy", "magic")),
    Case("from-report-not-a-report",
         lambda w: ["retrain", w / "ckpt.pt", "--data", w.good, "--from-report",
                    w / "not_report.json"], ("--from-report", "not_report.json")),
    Case("crop-bad", lambda w: ["train", w.good, "--crop", "big", "--steps", "1"],
         ("--crop", "big")),
    Case("device-unavailable", lambda w: ["train", w.good, "--device", "cuda:7", "--steps", "1"],
         ("--device", "cuda:7")),
    Case("demo-size-bad", lambda w: ["demo", "--size", "12by4", "--n", "10"], ("--size",)),
    Case("demo-remedy-bad", lambda w: ["demo", "--remedy", "nope", "--n", "10"],
         ("--remedy", "nope")),
    # ------------------------------------------------------------------ outputs
    Case("out-unwritable-labels", lambda w: ["labels", w.good, "--out", w / "a_file" / "sub"],
         ("--out", "a_file")),
    Case("out-is-a-file-train", lambda w: ["train", w.good, "--steps", "1", "--out",
                                           w / "a_file"], ("--out", "a_file")),
    Case("out-unwritable-synth", lambda w: ["synth", w / "a_file" / "sub", "--n", "2",
                                            "--size", "32x32"], ("a_file",)),
    Case("junit-unwritable", lambda w: ["check", "--data", w.good, "--junit",
                                        w / "a_file" / "j.xml"], ("--junit", "a_file")),
    Case("synth-size-bad", lambda w: ["synth", w / "synth_out", "--size", "0x10"], ("--size",)),
    Case("synth-targets-bad", lambda w: ["synth", w / "synth_out", "--targets", "5-1"],
         ("--targets", "5-1")),
    # ------------------------------------------------------------------ sweep
    Case("sweep-arm-unknown", lambda w: ["sweep", w.good, "--arms", "nope", "--steps", "1"],
         ("--arms", "nope")),
    Case("sweep-head-unknown", lambda w: ["sweep", w.good, "--heads", "P9x", "--steps", "1"],
         ("--heads", "P9x")),
    Case("sweep-soft-sigmas-bad",
         lambda w: ["sweep", w.good, "--soft-sigmas", "3=abc", "--steps", "1"],
         ("--soft-sigmas", "3=abc")),
    Case("sweep-dataset-bad", lambda w: ["sweep", w / "img_empty", "--arms", "hard",
                                         "--steps", "1"], ("b.png", "empty")),
    # ------------------------------------------------------------------ show and logs
    Case("show-not-a-report", lambda w: ["show", w / "not_report.json"],
         ("not_report.json", "not an analyze report"), new_out=False),
    Case("show-missing", lambda w: ["show", w / "nope.json"], ("nope.json", "no such"),
         new_out=False),
    Case("logs-no-recognised-columns", lambda w: ["logs", w / "logs"], ("metrics.csv",)),
    Case("logs-non-numeric", lambda w: ["logs", w / "logs_text.csv"], ("logs_text.csv",)),
    Case("logs-missing", lambda w: ["logs", w / "nolog.csv"], ("nolog.csv", "no such")),
    Case("logs-bad-map", lambda w: ["logs", w / "logs", "--map", "alpha"], ("--map", "alpha")),
]
# fmt: on


def _check_case(case: Case, world: World, run: Callable[[list[str]], object]) -> None:
    args = [str(a) for a in case.args(world)]
    new_out = world.root.parent / f"new_out_{case.name}"
    if case.new_out and "--out" not in args and args[0] not in ("synth", "show"):
        args += ["--out", str(new_out)]
    before = snapshot(world.root)
    outcome = run(args)
    line = error_line(outcome)  # type: ignore[arg-type]
    for word in case.words:
        assert word in line, (word, line)
    assert snapshot(world.root) == before, "a file was created or changed"
    assert not new_out.exists(), f"{new_out} was created"
    assert not (world.root / "synth_out").exists()


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input(case: Case, world: World) -> None:
    _check_case(case, world, run_cli)


def test_corpus_size() -> None:
    commands = {c.args(World(Path("/x")))[0] for c in CASES}
    assert len(CASES) >= 30
    assert commands >= {"labels", "train", "analyze", "retrain", "show", "check", "logs",
                        "synth", "demo", "sweep"}  # fmt: skip


# A handful as a user runs them: a real process, its real stderr.
PROCESS_CASES = ["image-truncated-analyze", "csv-missing-column", "ckpt-truncated",
                 "model-wrong-shape", "logs-no-recognised-columns"]  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("name", PROCESS_CASES)
def test_bad_input_subprocess(name: str, world: World) -> None:
    case = next(c for c in CASES if c.name == name)
    _check_case(case, world, run_proc)


def test_non_finite_outputs_are_a_finding_not_a_crash(world: World, tmp_path: Path) -> None:
    out = tmp_path / "rep"
    args = ["analyze", world / "healthy_sd.pt", "--data", world.good, "--model",
            "bad.models:non_finite", "--format", "json", "--out", out]  # fmt: skip
    res = run_cli([str(a) for a in args])
    assert res.code == 0, res.stderr
    assert "Traceback" not in res.stderr
    report = json.loads(res.stdout)
    ids = [f["id"] for f in report["findings"]]
    assert "non-finite-outputs" in ids
    finding = report["findings"][ids.index("non-finite-outputs")]
    assert finding["severity"] == "error"
    # two bad cells inside each image's own grid (NaN and +Inf), three images
    assert finding["evidence"]["cls_nonfinite"] == 2 * 3
    assert finding["evidence"]["reg_nonfinite"] == 0
    assert json.loads((out / "report.json").read_text())["findings"] == report["findings"]
    gated = run_cli([str(a) for a in args[:-2]] + ["--fail-on", "error"])
    assert gated.code == 1


def test_healthy_control_passes(world: World) -> None:
    """The fixtures the corpus breaks are otherwise fine: the same commands succeed."""
    res = run_cli(["labels", str(world.good), "--level", "P2", "--format", "json"])
    assert res.code == 0, res.stderr
    assert json.loads(res.stdout)["dataset"]["targets"] == 2
    res = run_cli(["labels", str(world / "masks_ok"), "--level", "P2", "--format", "json"])
    assert res.code == 0, res.stderr
    res = run_cli(["analyze", str(world / "healthy_sd.pt"), "--data", str(world.good),
                   *CKPT_MODEL, "--format", "json"])  # fmt: skip
    assert res.code == 0, res.stderr


def test_truncated_image_never_leaves_partial_report(world: World, tmp_path: Path) -> None:
    """Existing outputs survive a run that fails half-way: every file is as it was."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "report.json").write_text("old")
    (out / "overlay.png").write_bytes(b"old png")
    before = snapshot(out)
    res = run_cli(["labels", str(world / "img_trunc"), "--level", "P2", "--out", str(out)])
    error_line(res)
    assert snapshot(out) == before
