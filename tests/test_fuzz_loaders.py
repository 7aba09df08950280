"""Property-based tests: random bytes and random tables fed to every loader (issue 6).

The property is the same everywhere: a loader either returns data that satisfies its
contract, or raises InputError with a one-line message naming the file; never another
exception. Where a loader returns, the result is checked against an independent reading
(numpy for masks, the table's own rows for points).

Loaders: images and masks, points tables, COCO JSON, split files, checkpoints (random bytes,
damaged real files, random safetensors headers), training logs (CSV, JSON lines,
TensorBoard, random tables), saved reports (``show``), the config file, and two commands
end to end.
"""

from __future__ import annotations

import csv
import io
import json
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image

from convdiag.errors import InputError

FUZZ = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def _expect_input_error(e: InputError, path: Path | str | None = None) -> None:
    event("InputError")
    msg = str(e)
    assert msg and "\n" not in msg, msg
    if path is not None:
        assert str(path) in msg, msg


# ----------------------------------------------------------------------------- images, masks

PIXEL_ARRAYS = st.one_of(
    arrays(np.uint8, st.tuples(st.integers(1, 9), st.integers(1, 9)),
           elements=st.sampled_from([0, 1, 2, 127, 128, 254, 255])),
    arrays(np.uint16, st.tuples(st.integers(1, 9), st.integers(1, 9)),
           elements=st.sampled_from([0, 1, 255, 256, 65535])),
    arrays(np.bool_, st.tuples(st.integers(1, 9), st.integers(1, 9))),
    arrays(np.uint8, st.tuples(st.integers(1, 9), st.integers(1, 9), st.just(3)),
           elements=st.sampled_from([0, 1, 255, 7])),
)  # fmt: skip


def _mask_reference(arr: np.ndarray) -> np.ndarray | None:
    """DESIGN.md: 0 and at most one other value, 1 or 255 (colour: the max of R, G, B)."""
    a = arr.max(axis=-1) if arr.ndim == 3 else arr
    values = set(np.unique(a.astype(np.int64)).tolist())
    if arr.dtype == np.bool_:
        return a.astype(bool)
    if values - {0, 1, 255} or {1, 255} <= values:
        return None
    return a > 0


@given(arr=PIXEL_ARRAYS, fmt=st.sampled_from(["PNG", "TIFF"]))
@FUZZ
def test_random_pixel_tables_as_masks(tmp_path: Path, arr: np.ndarray, fmt: str) -> None:
    from convdiag.load.imageio import read_image, read_mask

    path = tmp_path / f"m.{fmt.lower()}"
    Image.fromarray(arr).save(path, fmt)
    expected = _mask_reference(arr)
    try:
        got = read_mask(path)
    except InputError as e:
        _expect_input_error(e, path)
        assert expected is None, "a binary mask was refused"
    else:
        event("loaded")
        assert expected is not None, f"non-binary values accepted: {np.unique(arr)}"
        np.testing.assert_array_equal(got, expected)
    img = read_image(path)
    assert img.dtype == np.float32 and img.shape == arr.shape[:2]
    assert float(img.min()) >= 0.0 and float(img.max()) <= 1.0


IMAGE_HEADS = [b"", b"\x89PNG\r\n\x1a\n", b"BM", b"\xff\xd8\xff", b"II*\x00", b"GIF89a", b"P5\n"]


@given(head=st.sampled_from(IMAGE_HEADS), tail=st.binary(max_size=200))
@FUZZ
def test_random_bytes_as_image_and_mask(tmp_path: Path, head: bytes, tail: bytes) -> None:
    from convdiag.load.imageio import image_size, read_image, read_mask

    path = tmp_path / "x.png"
    path.write_bytes(head + tail)
    for reader in (image_size, read_image, read_mask):
        try:
            reader(path)
        except InputError as e:
            _expect_input_error(e, path)


# ----------------------------------------------------------------------------- points tables

H, W = 20, 30
NAMES = ["a.png", "a", "images/a.png", "b.png", "/", ".", "..", "", " ", "zebra.png",
         "a" * 300, "images/", "ä.png", "a.png\\x"]  # fmt: skip
NUMBERS = ["0", "1", "29.99", "30", "19.5", "-0", "-1", "1e309", "nan", "inf", "-inf", "",
           " 3 ", "3,5", "x", "0x10", "1_0", "1e-300"]  # fmt: skip
HEADERS = ["image", "file_name", "x", "y", "class", "X", "Y", "", "extra"]


@given(
    header=st.lists(st.sampled_from(HEADERS), min_size=1, max_size=5),
    rows=st.lists(st.lists(st.sampled_from(NAMES + NUMBERS), max_size=6), max_size=6),
    coords=st.sampled_from(["continuous", "index0", "index1"]),
    delimiter=st.sampled_from([",", ";", "\t"]),
)
@FUZZ
def test_random_points_tables(
    tmp_path: Path, header: list[str], rows: list[list[str]], coords: str, delimiter: str
) -> None:
    from convdiag.load.datasets import load_dataset
    from convdiag.load.options import DatasetOptions

    for name in ("a", "b"):
        path = tmp_path / "images" / f"{name}.png"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.zeros((H, W), dtype=np.uint8)).save(path)
    table = tmp_path / "points.csv"
    buf = io.StringIO()
    csv.writer(buf, delimiter=delimiter).writerows([header, *rows])
    table.write_text(buf.getvalue())
    try:
        ds = load_dataset(table, DatasetOptions(coords=coords))
    except InputError as e:
        _expect_input_error(e, table)
        return
    event("loaded")
    assert len(ds) >= 1
    for r in ds.records:
        assert r.size == (H, W) and r.id in ("a", "b")
        pts = r.points
        assert pts.dtype == np.float64 and pts.ndim == 2 and pts.shape[1] == 2
        assert np.isfinite(pts).all()
        assert ((pts[:, 0] >= 0) & (pts[:, 0] < W) & (pts[:, 1] >= 0) & (pts[:, 1] < H)).all()


# ----------------------------------------------------------------------------- COCO, splits


def _coco_bytes() -> bytes:
    return json.dumps({
        "images": [{"id": 1, "file_name": "a.png", "width": W, "height": H}],
        "annotations": [{"id": 1, "image_id": 1, "bbox": [3, 4, 2, 2]},
                        {"id": 2, "image_id": 1, "keypoints": [10, 5, 2]}],
    }).encode()  # fmt: skip


@given(
    cut=st.integers(0, 400),
    flips=st.lists(st.tuples(st.integers(0, 400), st.binary(min_size=1, max_size=1)), max_size=4),
)
@FUZZ
def test_damaged_coco(tmp_path: Path, cut: int, flips: list[tuple[int, bytes]]) -> None:
    from convdiag.load.datasets import load_dataset

    img = tmp_path / "a.png"
    if not img.exists():
        Image.fromarray(np.zeros((H, W), dtype=np.uint8)).save(img)
    data = bytearray(_coco_bytes()[:cut] if cut < 400 else _coco_bytes())
    for pos, b in flips:
        if pos < len(data):
            data[pos : pos + 1] = b
    path = tmp_path / "ann.json"
    path.write_bytes(bytes(data))
    try:
        ds = load_dataset(path)
    except InputError as e:
        _expect_input_error(e, path)
    else:
        event("loaded")
        assert all(np.isfinite(r.points).all() for r in ds.records)


SPLIT_LINES = ["a", "b", "img_1", " a ", "a.png", "dir/b.png", "C:\\x\\img_1.tif", "# note",
               "", "zebra", "a b", "\x00", "\ufeffa", "img_1.txt"]  # fmt: skip


@given(
    lines=st.lists(st.sampled_from(SPLIT_LINES) | st.text(max_size=8), max_size=8),
    newline=st.sampled_from(["\n", "\r\n", "\r"]),
    raw=st.none() | st.binary(max_size=40),
)
@FUZZ
def test_random_split_files(
    tmp_path: Path, lines: list[str], newline: str, raw: bytes | None
) -> None:
    from convdiag.load.splits import read_split

    path = tmp_path / "split.txt"
    if raw is None:
        path.write_text(newline.join(lines), encoding="utf-8", errors="surrogatepass")
    else:
        path.write_bytes(raw)
    known = {"a", "b", "img_1"}
    try:
        ids = read_split(path, known)
    except InputError as e:
        _expect_input_error(e, path)
    else:
        event("loaded")
        assert ids and set(ids) <= known and len(set(ids)) == len(ids)


# ----------------------------------------------------------------------------- checkpoints


@pytest.fixture(scope="module")
def real_checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """A convdiag checkpoint (zip), a legacy-format state dict and a safetensors file."""
    from convdiag.load.checkpoint import save_checkpoint
    from convdiag.load.recipe import Recipe
    from convdiag.models.detector import reference

    root = tmp_path_factory.mktemp("real_ckpts")
    torch.manual_seed(0)
    model = reference(head="P2", width=2, prior=0.01)
    save_checkpoint(root / "c.pt", model, "convdiag.models:reference",
                    {"head": "P2", "width": 2, "prior": 0.01}, Recipe().to_dict())  # fmt: skip
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf, _use_new_zipfile_serialization=False)
    return {"zip": (root / "c.pt").read_bytes(), "legacy": buf.getvalue(),
            "safetensors": _safetensors(model.state_dict())}  # fmt: skip


def _safetensors(sd: dict[str, torch.Tensor]) -> bytes:
    header: dict[str, object] = {}
    body = b""
    for k, v in sd.items():
        raw = v.detach().contiguous().numpy().astype("<f4").tobytes()
        header[k] = {"dtype": "F32", "shape": list(v.shape),
                     "data_offsets": [len(body), len(body) + len(raw)]}  # fmt: skip
        body += raw
    h = json.dumps(header).encode()
    return struct.pack("<Q", len(h)) + h + body


def _load(path: Path) -> None:
    from convdiag.load.checkpoint import load_checkpoint

    try:
        loaded = load_checkpoint(path, model="convdiag.models:reference",
                                 model_args={"width": "2"})  # fmt: skip
    except InputError as e:
        _expect_input_error(e, path)
    else:
        event("loaded")
        assert isinstance(loaded.model, torch.nn.Module)


CKPT_HEADS = [
    b"",
    b"PK\x03\x04",
    b"\x80\x02",
    b"\x80\x04\x95",
    b"\x10\x00\x00\x00\x00\x00\x00\x00{",
]


@given(head=st.sampled_from(CKPT_HEADS), tail=st.binary(max_size=300))
@FUZZ
def test_random_bytes_as_checkpoint(tmp_path: Path, head: bytes, tail: bytes) -> None:
    path = tmp_path / "r.pt"
    path.write_bytes(head + tail)
    _load(path)


@given(
    kind=st.sampled_from(["zip", "legacy", "safetensors"]),
    cut=st.floats(0.0, 1.0),
    flips=st.lists(st.tuples(st.floats(0.0, 1.0), st.integers(0, 255)), max_size=3),
)
@FUZZ
def test_damaged_real_checkpoints(
    tmp_path: Path,
    real_checkpoints: dict[str, bytes],
    kind: str,
    cut: float,
    flips: list[tuple[float, int]],
) -> None:
    data = bytearray(real_checkpoints[kind])
    data = data[: max(1, int(len(data) * cut))] if cut < 1.0 else data
    if kind != "legacy":  # legacy pickles carry storage sizes; flipped, torch may allocate GBs
        for where, value in flips:
            data[min(int(where * len(data)), len(data) - 1)] = value
    path = tmp_path / "d.pt"
    path.write_bytes(bytes(data))
    _load(path)


ST_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats()
    | st.sampled_from(["F32", "F16", "I64", "BOOL", "U8", "X9", "stem.weight"]),
    lambda c: st.lists(c, max_size=4) | st.dictionaries(
        st.sampled_from(["dtype", "shape", "data_offsets", "__metadata__", "cls.weight"]), c,
        max_size=4),
    max_leaves=12,
)  # fmt: skip


@given(header=st.dictionaries(st.sampled_from(["cls.weight", "stem.bias", "__metadata__"]),
                              ST_VALUES, max_size=3), body=st.binary(max_size=64))  # fmt: skip
@FUZZ
def test_random_safetensors_headers(tmp_path: Path, header: dict[str, object], body: bytes) -> None:
    h = json.dumps(header).encode()
    path = tmp_path / "s.safetensors"
    path.write_bytes(struct.pack("<Q", len(h)) + h + body)
    _load(path)


# ----------------------------------------------------------------------------- training logs

LOG_NAMES = ["metrics.csv", "results.csv", "log.jsonl", "events.out.tfevents.1.host", "history.csv"]


@given(name=st.sampled_from(LOG_NAMES), data=st.binary(max_size=300))
@FUZZ
def test_random_bytes_as_logs(tmp_path: Path, name: str, data: bytes) -> None:
    from convdiag.watch import analyze_log

    path = tmp_path / name
    path.write_bytes(data)
    try:
        report = analyze_log(path)
    except InputError as e:
        _expect_input_error(e)
    else:
        assert isinstance(report["findings"], list)


LOG_COLUMNS = ["step", "epoch", "loss", "train/hm_loss", "val/F1", "val/recall", "lr", "fp",
               "metrics/mAP50(B)", "off_loss", "", "junk", "step"]  # fmt: skip
LOG_CELLS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(-5, 10_000).map(str),
    st.sampled_from(["", "nan", "inf", "-inf", "NaN", "abc", "1e400", "tensor(0.5)"]),
)


@given(
    columns=st.lists(st.sampled_from(LOG_COLUMNS), min_size=1, max_size=6),
    rows=st.lists(st.lists(LOG_CELLS, max_size=7), max_size=25),
    name=st.sampled_from(["metrics.csv", "results.csv", "history.csv"]),
)
@FUZZ
def test_random_log_tables(
    tmp_path: Path, columns: list[str], rows: list[list[str]], name: str
) -> None:
    from convdiag.watch import analyze_log

    buf = io.StringIO()
    csv.writer(buf).writerows([columns, *rows])
    path = tmp_path / name
    path.write_text(buf.getvalue())
    try:
        report = analyze_log(path, prior=1e-3)
    except InputError as e:
        _expect_input_error(e)
    else:
        event("loaded")
        for f in report["findings"]:
            assert f["severity"] in ("error", "warning", "info")


@given(
    lines=st.lists(
        st.dictionaries(st.sampled_from(LOG_COLUMNS[:-2]),
                        st.one_of(st.floats(), st.integers(), st.text(max_size=3), st.none()),
                        max_size=5),
        max_size=15,
    )
)  # fmt: skip
@FUZZ
def test_random_json_lines(tmp_path: Path, lines: list[dict[str, object]]) -> None:
    from convdiag.watch import analyze_log

    path = tmp_path / "log.jsonl"
    path.write_text("".join(json.dumps(d) + "\n" for d in lines))
    try:
        analyze_log(path, prior=1e-3)
    except InputError as e:
        _expect_input_error(e)


# ----------------------------------------------------------------------------- reports, config


REPORT_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 3) | st.floats()
    | st.sampled_from(["error", "warning", "info", "P2", "background-collapse", "x"]),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(
        st.sampled_from(["schema", "findings", "metrics", "id", "severity", "evidence", "level",
                         "remedies", "params", "explanation", "verdict"]), c, max_size=5),
    max_leaves=20,
)  # fmt: skip


@given(value=REPORT_VALUES)
@FUZZ
def test_random_reports_for_show(tmp_path: Path, value: object) -> None:
    from convdiag.diagnosis.findings import Finding
    from convdiag.report.saved import read_report

    path = tmp_path / "report.json"
    path.write_text(json.dumps(value))
    try:
        data = read_report(str(path))
        [Finding.from_dict(f) for f in data["findings"]]
    except InputError as e:
        _expect_input_error(e, path)
    except (TypeError, ValueError, KeyError):
        pass  # Finding.from_dict's own errors: ``show`` turns these into InputError


@given(data=st.binary(max_size=200) | st.text(max_size=80).map(str.encode))
@FUZZ
def test_random_config_files(tmp_path: Path, data: bytes) -> None:
    from convdiag.load.config import load_config

    (tmp_path / "convdiag.toml").write_bytes(data)
    try:
        load_config(tmp_path)
    except InputError as e:
        _expect_input_error(e, tmp_path / "convdiag.toml")


# ----------------------------------------------------------------------------- end to end


@given(data=st.binary(min_size=1, max_size=120), as_data=st.booleans())
@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
def test_random_files_through_the_cli(tmp_path: Path, data: bytes, as_data: bool) -> None:
    from bad.helpers import error_line, run_cli

    good = tmp_path / "good"
    if not good.exists():
        (good / "images").mkdir(parents=True)
        Image.fromarray(np.zeros((H, W), dtype=np.uint8)).save(good / "images" / "a.png")
        (good / "points.csv").write_text("image,x,y\na.png,3,4\n")
    bad = tmp_path / ("bad.csv" if as_data else "bad.pt")
    bad.write_bytes(data)
    if as_data:
        res = run_cli(["labels", str(bad), "--level", "P2", "--format", "json"])
    else:
        res = run_cli(["analyze", str(bad), "--data", str(good), "--format", "json"])
    line = error_line(res)
    assert str(bad) in line, line


# Lines in each text-log style, and their pieces cut anywhere (issue 11: the text reader).
TEXT_LINES = [
    "2023-02-11 20:16:03,202 - mmdet - INFO - Epoch [1][5/25]\tlr: 8.092e-05, eta: 0:01:02, "
    "loss_cls: 1.1994, loss_bbox: 0.2577, loss: 1.4571",
    "2023-02-11 20:17:03,202 - mmdet - INFO - Epoch(val) [1][25]\tbbox_mAP: 0.0010, "
    "bbox_mAP_50: 0.0030",
    "12/02 20:16:03 - mmengine - INFO - Epoch(train)  [1][1/6]  lr: 4.0e-08  loss: 0.4219  "
    "loss_kpt: 0.4219",
    "12/02 20:16:03 - mmengine - INFO - Iter(train) [  500/90000]  lr: 1e-2  loss: nan",
    "12/02 20:16:03 - mmengine - INFO - Epoch(val) [10][5/5]  coco/bbox_mAP: 0.1000",
    "Jul 18 14:16:58 Epoch---10, total_loss---0.997293,",
    "pixAcc, mIoU:\t(0.83, 0.75)",
    "PD, FA:\t(0.935, 3.8e-05)",
    "2025-12-02-20-20: epoch: 1 |loss 5.646 | hm_loss 2.343 | wh_loss 1.702 | off_loss 0.236 |",
    "      Epoch    GPU_mem   box_loss   obj_loss   cls_loss  Instances       Size",
    "        0/1      3.21G     0.1250    0.0301          0        41        640: 33%",
    "                   all         64        80      0.000      0.000      0.000      0.000",
]


@given(
    lines=st.lists(
        st.sampled_from(TEXT_LINES).flatmap(
            lambda s: st.integers(0, len(s)).map(lambda k: s[:k]) | st.just(s)
        )
        | st.text(max_size=12),
        min_size=1,
        max_size=20,
    ),
    junk=st.binary(max_size=20),
    name=st.sampled_from(["train.log", "log.txt", "run.out"]),
)
@FUZZ
def test_random_text_logs(tmp_path: Path, lines: list[str], junk: bytes, name: str) -> None:
    from convdiag.watch import analyze_log

    path = tmp_path / name
    path.write_bytes(junk + "\n".join(lines).encode("utf-8", "surrogatepass"))
    try:
        report = analyze_log(path)
    except InputError as e:
        _expect_input_error(e)
    else:
        assert isinstance(report["findings"], list) and report["findings"]
