"""``convdiag labels`` through click's CliRunner on a small hand-made mask dataset."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from convdiag.cli.main import cli

H, W = 48, 64
# per image: top-left pixels of 2x2 blobs; the point of a 2x2 blob at (c, r) is (c + 1, r + 1)
BLOBS = {
    "a": [(5, 5), (40, 30)],
    "b": [(10, 20)],
    "c": [(2, 2), (5, 2), (60, 44)],  # the first two share their P3 cell (0, 0)
    "d": [],
}


def make_dataset(root):
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rng = np.random.default_rng(0)
    for name, blobs in BLOBS.items():
        img = (rng.random((H, W)) * 120).astype(np.uint8)
        mask = np.zeros((H, W), np.uint8)
        for c, r in blobs:
            mask[r : r + 2, c : c + 2] = 255
            img[r : r + 2, c : c + 2] = 250
        Image.fromarray(img).save(root / "images" / f"{name}.png")
        Image.fromarray(mask).save(root / "masks" / f"{name}.png")
    return root


@pytest.fixture
def data(tmp_path):
    return make_dataset(tmp_path / "data")


def run(*args):
    return CliRunner().invoke(cli, ["labels", *map(str, args)])


def points():
    return [(c + 1.0, r + 1.0) for blobs in BLOBS.values() for c, r in blobs]


def test_json_numbers(data):
    res = run(data, "--levels", "P2,P3", "--format", "json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert set(out) >= {"levels", "recommendation", "findings", "settings", "dataset"}
    assert list(out["levels"]) == ["P2", "P3"]
    pts = points()
    for name, s in (("P2", 4), ("P3", 8)):
        lv = out["levels"][name]
        cells = len(BLOBS) * math.ceil(H / s) * math.ceil(W / s)
        distinct = len({(b, int(y // s), int(x // s)) for b, blobs in enumerate(BLOBS.values())
                        for x, y in [(c + 1.0, r + 1.0) for c, r in blobs]})  # fmt: skip
        assert lv["stride"] == s and lv["images"] == 4 and lv["targets"] == len(pts)
        assert lv["cells"] == cells and lv["positive_cells"] == distinct
        assert lv["pos_fraction"] == pytest.approx(distinct / cells)
        assert lv["neg_per_pos"] == pytest.approx((cells - distinct) / distinct)
        q = [math.hypot(x - (x // s + 0.5) * s, y - (y // s + 0.5) * s) for x, y in pts]
        assert lv["quantization_px"]["max"] == pytest.approx(max(q))
        assert set(lv["constant_loss"]) == {"bce", "focal"} and lv["soft"] is None
        assert 0 < lv["initial_pos_grad_share"] <= 1
    assert out["levels"]["P2"]["collisions"] == 0 and out["levels"]["P3"]["collisions"] == 2
    assert out["recommendation"]["level"] in ("P2", "P3")
    assert "why" in out["recommendation"]


def test_table_and_markdown(data):
    res = run(data, "--soft")
    assert res.exit_code == 0, res.output
    for text in ("Label statistics", "P2", "P5", "soft positive mass", "Recommendation"):
        assert text in res.stdout
    md = run(data, "--level", "P2", "--format", "markdown")
    assert md.exit_code == 0 and md.stdout.startswith("# Label statistics")
    assert "| statistic | P2 |" in md.stdout and "## Recommendation" in md.stdout


def test_soft_and_schedule_json(data):
    out = json.loads(run(data, "--level", "p2", "--kernel", "5", "--format", "json").stdout)
    soft = out["levels"]["P2"]["soft"]
    assert soft["kernel"] == 5 and soft["sigma"] == 1.0 and soft["trunc"] == 0.1
    assert soft["positive_mass"] > out["levels"]["P2"]["positive_cells"]
    out = json.loads(run(data, "--level", "4", "--schedule", "dynamic", "--format", "json").stdout)
    soft = out["levels"]["P2"]["soft"]
    assert [p["kernel"] for p in soft["phases"]] == [5, 4, 3]
    assert out["settings"]["schedule"] == "0.3:5:1.2,0.7:4:1,1:3:0.8"


def test_out_dir_writes_report_and_plots(data, tmp_path):
    out_dir = tmp_path / "report"
    res = run(data, "--levels", "P2,P4", "--soft", "--out", out_dir, "--format", "json")
    assert res.exit_code == 0, res.output
    saved = json.loads((out_dir / "report.json").read_text())
    assert saved == json.loads(res.stdout)
    md = (out_dir / "report.md").read_text()
    assert "![overlay](overlay.png)" in md and "![pos_fraction](pos_fraction.png)" in md
    for png in ("overlay.png", "pos_fraction.png"):
        with Image.open(out_dir / png) as im:
            assert im.format == "PNG" and im.size[0] > 300
    assert not [p for p in out_dir.iterdir() if p.name.startswith(".")]  # no temp files left


def test_findings_exit_codes(data):
    # 4 images of 48x64 at P5 have p95 quantisation far beyond 3 px: a warning
    res = run(data, "--level", "P5", "--format", "json")
    out = json.loads(res.stdout)
    assert res.exit_code == 0
    assert "label-quantization" in {f["id"] for f in out["findings"]}
    assert all(f["severity"] == "warning" for f in out["findings"])
    assert run(data, "--level", "P5", "--fail-on", "warning").exit_code == 1
    assert run(data, "--level", "P5", "--fail-on", "error").exit_code == 0


def one_line_error(res, *fragments):
    assert res.exit_code == 2, res.output
    err = res.stderr.strip()
    assert err.startswith("convdiag: error:") and "\n" not in err, err
    assert "Traceback" not in res.output
    for f in fragments:
        assert f in err, err


def test_errors(data, tmp_path):
    one_line_error(run(tmp_path / "missing"), "missing")
    empty = tmp_path / "empty"
    (empty / "images").mkdir(parents=True)
    (empty / "masks").mkdir()
    one_line_error(run(empty), "no images")
    one_line_error(run(data, "--levels", "P2,P9"), "--levels", "P9")
    one_line_error(run(data, "--level", "X2"), "--level", "X2")
    one_line_error(run(data, "--schedule", "0.3:5:1.2,0.2:3:1,1:3:1"), "--schedule", "increase")
    one_line_error(run(data, "--schedule", "dynamic", "--sigma", "1"), "--schedule")
    one_line_error(run(data, "--level", "P2", "--levels", "P3"), "--level")
    (data / "images" / "b.png").write_bytes(b"not a png at all")
    one_line_error(run(data), "b.png")
