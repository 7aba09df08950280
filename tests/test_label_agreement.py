"""label-shift from the data alone: ``convdiag labels`` compares a points table beside the
masks with the mask centroids, and COCO keypoints with their boxes' centres.

Written the ways real annotation tools go wrong: pixel indices for centres (half a pixel),
1-based rows, row/column order (x/y swapped), a shift by one P2 cell; and a healthy table of
true sub-pixel centres (synth's own), whose quantisation noise must not read as a shift."""

from __future__ import annotations

import csv
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from bad.helpers import run_cli

from convdiag.diagnosis.labels import label_statistics
from convdiag.load.datasets import load_dataset, mask_to_points
from convdiag.load.label_pairs import label_pairs
from convdiag.load.synth import SynthConfig, synthesize

Move = Callable[[float, float], tuple[float, float]]


@pytest.fixture(scope="module")
def masks(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A mask dataset with synth's points.csv (true sub-pixel centres) beside it."""
    out = tmp_path_factory.mktemp("agree") / "ok"
    synthesize(out, SynthConfig(n=40, size=(96, 96), targets=(2, 4), seed=3))
    return out


def _variant(src: Path, dst: Path, move: Move) -> Path:
    shutil.copytree(src, dst)
    rows = list(csv.reader((dst / "points.csv").open()))
    xi, yi = rows[0].index("x"), rows[0].index("y")
    for r in rows[1:]:
        if r[xi]:
            x, y = move(float(r[xi]), float(r[yi]))
            r[xi], r[yi] = f"{x:.4f}", f"{y:.4f}"
    with (dst / "points.csv").open("w", newline="") as f:
        csv.writer(f).writerows(rows)
    return dst


def _labels(path: Path, *extra: str) -> dict:
    r = run_cli(["labels", str(path), "--format", "json", *extra])
    assert r.code == 0, r.stderr
    return json.loads(r.stdout)


def _shift(report: dict) -> dict | None:
    found = [f for f in report["findings"] if f["id"] == "label-shift"]
    assert len(found) <= 1
    return found[0] if found else None


def test_true_centres_agree_with_the_masks(masks: Path) -> None:
    report = _labels(masks)
    a = report["label_agreement"]
    assert a["found_share"] > 0.95 and max(abs(v) for v in a["mean_px"]) < 0.1
    assert _shift(report) is None


def test_statistics_match_a_numpy_reference(masks: Path, tmp_path: Path) -> None:
    """Mean and spread of (mask centroid - table point) over the matched targets, by hand."""
    d = _variant(masks, tmp_path / "d", lambda x, y: (x - 0.7, y + 0.3))
    diffs = []
    table: dict[str, list[tuple[float, float]]] = {}
    for r in list(csv.DictReader((d / "points.csv").open())):
        if r["x"]:
            table.setdefault(Path(r["image"]).stem, []).append((float(r["x"]), float(r["y"])))
    for m in sorted((d / "masks").iterdir()):
        from PIL import Image

        cents = mask_to_points(np.asarray(Image.open(m)))
        for p in table.get(m.stem, []):
            dist = np.hypot(*(cents - p).T)
            if len(cents) and dist.min() <= 6.0:
                diffs.append(cents[np.argmin(dist)] - p)
    ref = np.array(diffs)
    ds = load_dataset(d)
    pairs = label_pairs(ds, d)
    assert pairs is not None and pairs.trained == "mask centroids"
    a = label_statistics([(r.size, r.points) for r in ds.records], ["P2"], pairs=pairs)[
        "label_agreement"
    ]
    assert a["found"] == len(ref)
    np.testing.assert_allclose(a["mean_px"], ref.mean(0), atol=1e-9)
    np.testing.assert_allclose(a["std_px"], ref.std(0, ddof=1), atol=1e-9)


@pytest.mark.parametrize(
    ("name", "move", "coords", "severity"),
    [
        ("index0", lambda x, y: (x - 0.5, y - 0.5), "index0", "warning"),  # pixel indices
        ("index1", lambda x, y: (x + 0.5, y + 0.5), "index1", "warning"),  # 1-based indices
        ("cell", lambda x, y: (min(x + 4.0, 95.9), y), None, "error"),  # one P2 cell right
    ],
)
def test_a_shifted_table_is_named_with_its_fix(
    masks: Path, tmp_path: Path, name: str, move: Move, coords: str | None, severity: str
) -> None:
    f = _shift(_labels(_variant(masks, tmp_path / name, move)))
    assert f is not None and f["severity"] == severity and f["level"] is None
    ev = f["evidence"]
    x0, y0 = move(0.0, 0.0)
    assert ev["shift_dx_px"] == pytest.approx(-x0, abs=0.1)
    assert ev["shift_dy_px"] == pytest.approx(-y0, abs=0.1)
    assert ev["coords"] == coords and ev["labels"] == "table points"
    assert f["remedies"][0]["id"] == "fix-labels"
    if coords:
        assert f"--coords {coords}" in f["explanation"]


def test_the_named_convention_makes_the_two_agree(masks: Path, tmp_path: Path) -> None:
    d = _variant(masks, tmp_path / "idx", lambda x, y: (x - 0.5, y - 0.5))
    assert _shift(_labels(d, "--coords", "index0")) is None


def test_swapped_columns_are_named(masks: Path, tmp_path: Path) -> None:
    f = _shift(_labels(_variant(masks, tmp_path / "sw", lambda x, y: (y, x))))
    assert f is not None and f["evidence"]["swapped_axes"] is True
    assert f["remedies"][0]["params"]["swap_xy"] is True


def test_an_unreadable_table_is_noted_not_fatal(masks: Path, tmp_path: Path) -> None:
    d = _variant(masks, tmp_path / "bad", lambda x, y: (x, y))
    with (d / "points.csv").open("a") as f:
        f.write("images/000000.png,nan,3\n")
    r = run_cli(["labels", str(d), "--format", "json"])
    assert r.code == 0, r.stderr
    assert "points.csv: not compared with the masks" in r.stderr
    assert "label_agreement" not in json.loads(r.stdout)


def _coco(masks: Path, out: Path, keypoint: Move) -> Path:
    """A COCO file of the masks' targets: a 3x3 box centred on the pixel that holds each
    mask centroid, and one keypoint at keypoint(that pixel's centre)."""
    from PIL import Image

    images, anns = [], []
    for k, img in enumerate(sorted((masks / "images").iterdir())):
        h, w = np.asarray(Image.open(img)).shape[:2]
        images.append({"id": k, "file_name": f"images/{img.name}", "width": w, "height": h})
        for x0, y0 in mask_to_points(np.asarray(Image.open(masks / "masks" / img.name))):
            x, y = float(np.floor(x0) + 0.5), float(np.floor(y0) + 0.5)
            kx, ky = keypoint(x, y)
            box = [x - 1.5, y - 1.5, 3.0, 3.0]
            anns.append({"id": len(anns), "image_id": k, "bbox": box, "keypoints": [kx, ky, 2]})
    out.mkdir()
    shutil.copytree(masks / "images", out / "images")
    (out / "ann.json").write_text(json.dumps({"images": images, "annotations": anns}))
    return out / "ann.json"


def test_coco_keypoints_as_pixel_indices_disagree_with_their_boxes(
    masks: Path, tmp_path: Path
) -> None:
    ann = _coco(masks, tmp_path / "coco", lambda x, y: (np.floor(x), np.floor(y)))
    f = _shift(_labels(ann))
    assert f is not None and f["evidence"]["labels"] == "keypoints"
    assert f["evidence"]["coords"] == "index0"
    assert "convdiag trains on the keypoints" in f["explanation"]
    exact = _coco(masks, tmp_path / "coco2", lambda x, y: (x, y))
    assert _shift(_labels(exact)) is None


def test_the_console_names_the_finding_for_the_whole_data(masks: Path, tmp_path: Path) -> None:
    d = _variant(masks, tmp_path / "con", lambda x, y: (x - 0.5, y - 0.5))
    r = run_cli(["labels", str(d), "--levels", "P2"])
    assert r.code == 0, r.stderr
    flat = " ".join(r.stdout.split())
    assert "label-shift [data]: The table points of" in flat
    assert "--coords index0" in flat
