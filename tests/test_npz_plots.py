"""Plots from saved results (issue 13): every command that plots writes report.npz beside
its report.json, and ``convdiag show report.json --plots DIR`` redraws every PNG from the two
files alone, byte for byte. ``command_outputs`` runs each command once per session; the HTML
and TensorBoard tests read the same outputs."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from convdiag.errors import InputError
from convdiag.report import saved_arrays
from convdiag.report.saved_arrays import flatten, load_arrays, save_arrays, unflatten

_OUTPUTS: dict[tuple[str, str], dict[str, Path]] = {}
DEMO_ERRORS: dict[tuple[str, str], str] = {}


def command_outputs(factory: pytest.TempPathFactory, data: Path, ckpt: Path) -> dict[str, Path]:
    """{command: its --out folder} for labels, analyze, retrain, logs, check, sweep and demo
    (analyze and retrain also write into the TensorBoard run ``<root>/tb``), run once."""
    from bad.helpers import run_cli

    key = (str(data), str(ckpt))
    if key in _OUTPUTS:
        return _OUTPUTS[key]
    root = factory.mktemp("commands")
    tb = root / "tb"
    runs: dict[str, list[Any]] = {
        "labels": ["labels", data, "--levels", "P2,P4", "--soft"],
        "analyze": ["analyze", ckpt, "--data", data, "--tensorboard", tb],
        "retrain": ["retrain", ckpt, "--data", data, "--focal", "--steps", 4, "--compare",
                    "--tensorboard", tb],
        "logs": ["logs", root / "retrain" / "history.csv"],  # the retrain run's history
        "check": ["check", ckpt, "--data", data, "--max-images", 8],
        "sweep": ["sweep", data, "--arms", "hard,focal", "--seeds", 1, "--steps", 4,
                  "--eval-every", 2],
        "demo": ["demo", "--n", 16, "--size", "64x96", "--steps", 6, "--retrain-steps", 4],
    }  # fmt: skip
    out = {}
    for name, args in runs.items():
        res = run_cli([*args, "--out", root / name, "--format", "json"])
        if name == "demo" and res.code not in (0, 1):  # test_demo_plots_redraw says why
            DEMO_ERRORS[key] = res.stderr[-2000:]
            continue
        assert res.code in (0, 1), (name, res.stderr[-2000:])
        out[name] = root / name
    out["tb"] = tb
    _OUTPUTS[key] = out
    return out


@pytest.fixture(scope="module")
def outputs(
    tiny_dataset: Path, trained_checkpoint: Any, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    ckpt = trained_checkpoint(head="P2", labels="hard", loss="bce", bias_init="zero")
    return command_outputs(tmp_path_factory, tiny_dataset, ckpt)


def _report_folders(outputs: dict[str, Path]) -> list[Path]:
    names = ("labels", "analyze", "retrain", "logs", "check", "sweep")
    demo = outputs.get("demo")  # a failing demo fails test_demo_plots_redraw, not every test
    return [outputs[n] for n in names] + (
        [demo, demo / "analysis", demo / "retrain"] if demo else []
    )


@pytest.mark.slow
def test_demo_plots_redraw(outputs: dict[str, Path], tmp_path: Path) -> None:
    from bad.helpers import run_cli

    assert "demo" in outputs, DEMO_ERRORS
    demo = outputs["demo"]
    res = run_cli(["show", demo, "--plots", tmp_path, "--format", "json"])
    assert res.code in (0, 1), res.stderr
    assert sorted(p.name for p in tmp_path.glob("*.png")) == ["failing_curves.png"]
    assert (tmp_path / "failing_curves.png").read_bytes() == (
        demo / "failing_curves.png"
    ).read_bytes()
    shown = run_cli(["show", demo, "--format", "html"])
    assert shown.stdout == (demo / "report.html").read_text(encoding="utf-8")


@pytest.mark.slow
def test_show_redraws_every_plot_byte_for_byte(outputs: dict[str, Path], tmp_path: Path) -> None:
    from bad.helpers import run_cli

    for folder in _report_folders(outputs):
        pngs = sorted(p.name for p in folder.glob("*.png"))
        plotted = folder.name != "check"
        assert (folder / "report.npz").is_file() == plotted, folder
        assert bool(pngs) == plotted, folder
        redrawn = tmp_path / f"{folder.parent.name}-{folder.name}"
        res = run_cli(["show", folder, "--plots", redrawn, "--format", "json"])
        assert res.code in (0, 1), (folder, res.stderr)
        assert sorted(p.name for p in redrawn.glob("*.png")) == pngs, folder
        for name in pngs:  # the same bytes: drawn from the same saved data, no timestamps
            assert (redrawn / name).read_bytes() == (folder / name).read_bytes(), (folder, name)


@pytest.mark.slow
def test_show_renders_every_report_kind(outputs: dict[str, Path]) -> None:
    from bad.helpers import run_cli

    for folder in _report_folders(outputs):
        for fmt in ("table", "markdown", "json"):
            res = run_cli(["show", folder, "--format", fmt])
            assert res.code in (0, 1) and res.stdout.strip(), (folder, fmt, res.stderr)
    md = run_cli(["show", outputs["sweep"], "--format", "markdown"]).stdout
    assert md.startswith("## Sweep") and "| focal |" in md  # sweep.json of the folder
    md = run_cli(["show", outputs["labels"] / "report.json", "--format", "markdown"]).stdout
    assert "![overlay](overlay.png)" in md
    assert (
        "| model.P2.background-collapse |"
        in run_cli(["show", outputs["check"], "--format", "markdown"]).stdout
    )


def test_arrays_round_trip_exactly(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    tree = {
        "P2": {"gradients": {"current.map": rng.random((5, 7)), "example": {
            "index": 3, "image": rng.random((8, 9)).astype(np.float32),
            "points": np.zeros((0, 2)), "grads": {"soft/labels": rng.random((2, 2))}}}},
        "names": np.asarray(["baseline", "remedy"]), "label": "P2 x", "gone": None,
        "mask": np.array([True, False]),
    }  # fmt: skip
    save_arrays(tmp_path, tree)
    back = load_arrays(tmp_path)
    flat, again = flatten(tree), flatten(back)
    assert set(flat) == set(again) and "gone" not in back
    for k in flat:
        assert flat[k].dtype == again[k].dtype and np.array_equal(flat[k], again[k]), k
    ex = back["P2"]["gradients"]["example"]
    assert ex["index"] == 3 and isinstance(ex["index"], int) and back["label"] == "P2 x"
    assert set(ex["grads"]) == {"soft/labels"}  # a '/' inside a name is not a level
    assert unflatten(flatten({})) == {} and load_arrays(tmp_path / "none") == {}


def _npz_bytes(**arrays: Any) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def test_unsafe_or_broken_npz_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bad = tmp_path / "report.npz"
    bad.write_bytes(_npz_bytes(x=np.array([{"a": 1}], dtype=object)))  # needs pickle
    with pytest.raises(InputError, match=r"report\.npz"):
        load_arrays(tmp_path)
    bad.write_bytes(b"PK\x03\x04 not a zip")
    with pytest.raises(InputError, match=r"not a readable report\.npz"):
        load_arrays(tmp_path)
    bad.write_bytes(_npz_bytes(x=np.zeros(1000)))
    monkeypatch.setattr(saved_arrays, "MAX_NPZ_ARRAY_BYTES", 4000)  # 8000 bytes uncompressed
    with pytest.raises(InputError, match="arrays larger than"):
        load_arrays(tmp_path)
    monkeypatch.setattr(saved_arrays, "MAX_NPZ_FILE_BYTES", 100)
    with pytest.raises(InputError, match="larger than"):
        load_arrays(tmp_path)
    with zipfile.ZipFile(bad) as zf:
        assert zf.namelist() == ["x.npy"]
    with pytest.raises(TypeError, match="object array"):
        save_arrays(tmp_path, {"x": np.array([None, 1], dtype=object)})


def test_show_plots_bad_npz_exits_2_naming_it(tmp_path: Path) -> None:
    from bad.helpers import error_line, run_cli

    rows = "step,loss,f1\n" + "".join(f"{i},{1 / (i + 1)},{i / 40}\n" for i in range(40))
    (tmp_path / "train.csv").write_text(rows)
    out = tmp_path / "logs"
    assert run_cli(["logs", tmp_path / "train.csv", "--out", out]).code in (0, 1)
    assert run_cli(["show", out, "--plots", tmp_path / "again"]).code in (0, 1)
    assert (tmp_path / "again" / "timeline.png").read_bytes() == (out / "timeline.png").read_bytes()
    (out / "report.npz").write_bytes(b"garbage")
    res = run_cli(["show", out, "--plots", tmp_path / "re"])
    assert res.code == 2 and "report.npz" in error_line(res), res.stderr
    (out / "report.npz").unlink()
    res = run_cli(["show", out, "--plots", tmp_path / "re"])
    assert res.code == 2 and "report.npz: no such file" in error_line(res), res.stderr
