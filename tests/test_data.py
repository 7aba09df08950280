"""Dataset loaders: mask folders, points tables, COCO JSON, split files, bad input."""

from __future__ import annotations

import json
from collections import deque
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image

from convdiag.errors import InputError
from convdiag.load.datasets import load_dataset, load_train_val, mask_to_points, read_image
from convdiag.load.imageio import read_mask
from convdiag.load.options import DatasetOptions

LUMA = np.array([0.299, 0.587, 0.114])


# ----------------------------------------------------------------------------- helpers


def save(path: Path, array: np.ndarray, mode: str | None = None) -> Path:
    """Save an array as an image; mode 'P' builds a palette image from indices."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if mode == "P":
        img = Image.frombytes(
            "P", (array.shape[1], array.shape[0]), array.astype(np.uint8).tobytes()
        )
        img.putpalette(palette().ravel().tolist())
    else:
        img = Image.fromarray(array)
    img.save(path)
    return path


def palette() -> np.ndarray:
    """A fixed 256-colour palette [256, 3] uint8."""
    i = np.arange(256)
    return np.stack([i, (i * 7) % 256, 255 - i], axis=1).astype(np.uint8)


def mask_with(size: tuple[int, int], pixels: list[tuple[int, int]], value: int = 255) -> np.ndarray:
    m = np.zeros(size, dtype=np.uint8)
    for r, c in pixels:
        m[r, c] = value
    return m


def mask_folder(
    root: Path, n: int = 4, size: tuple[int, int] = (24, 32), suffix: str = "", value: int = 255
) -> dict[str, np.ndarray]:
    """images/img<i>.png (L), masks/img<i><suffix>.png with i % 5 one-pixel targets (img0 empty)."""
    rng = np.random.default_rng(1)
    masks = {}
    for i in range(n):
        ident = f"img{i}"
        save(root / "images" / f"{ident}.png", rng.integers(0, 256, size, dtype=np.uint8))
        pix = [(2 + 4 * k, 3 + 5 * k) for k in range(i % 5)]
        masks[ident] = mask_with(size, pix, value)
        save(root / "masks" / f"{ident}{suffix}.png", masks[ident])
    return masks


def flood_fill_points(mask: np.ndarray) -> list[tuple[float, float]]:
    """Independent reference: BFS over 8-neighbours, centroid of pixel centres, sorted."""
    h, w = mask.shape
    seen = np.zeros((h, w), dtype=bool)
    out = []
    for r0 in range(h):
        for c0 in range(w):
            if not mask[r0, c0] or seen[r0, c0]:
                continue
            queue = deque([(r0, c0)])
            seen[r0, c0] = True
            pix = []
            while queue:
                r, c = queue.popleft()
                pix.append((r, c))
                for dr in (-1, 0, 1):
                    for dc in (-1, 0, 1):
                        rr, cc = r + dr, c + dc
                        if 0 <= rr < h and 0 <= cc < w and mask[rr, cc] and not seen[rr, cc]:
                            seen[rr, cc] = True
                            queue.append((rr, cc))
            out.append(
                (sum(c + 0.5 for _, c in pix) / len(pix), sum(r + 0.5 for r, _ in pix) / len(pix))
            )
    return sorted(out)


def opts(**kw: object) -> DatasetOptions:
    return DatasetOptions(**kw)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- images


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "P", "I;16", "LA", "1"])
def test_read_image_modes(tmp_path: Path, mode: str) -> None:
    rng = np.random.default_rng(0)
    h, w = 7, 9
    if mode == "L":
        a = rng.integers(0, 256, (h, w), dtype=np.uint8)
        path, expected = save(tmp_path / "a.png", a), a / 255.0
    elif mode == "RGB":
        a = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        path, expected = save(tmp_path / "a.png", a), (a @ LUMA) / 255.0
    elif mode == "RGBA":
        a = rng.integers(0, 256, (h, w, 4), dtype=np.uint8)
        path, expected = save(tmp_path / "a.png", a), (a[..., :3] @ LUMA) / 255.0
    elif mode == "LA":
        a = rng.integers(0, 256, (h, w, 2), dtype=np.uint8)
        path = tmp_path / "a.png"
        Image.fromarray(a[..., 0]).convert("LA").save(path)
        expected = a[..., 0] / 255.0
    elif mode == "P":
        a = rng.integers(0, 256, (h, w), dtype=np.uint8)
        path, expected = save(tmp_path / "a.png", a, "P"), (palette()[a] @ LUMA) / 255.0
    elif mode == "1":
        a = rng.integers(0, 2, (h, w)).astype(bool)
        path, expected = save(tmp_path / "a.png", a), a.astype(float)
    else:
        a = rng.integers(0, 65536, (h, w), dtype=np.uint16)
        path, expected = save(tmp_path / "a.png", a), a / 65535.0
    assert Image.open(path).mode == mode
    img = read_image(path)
    assert img.dtype == np.float32 and img.shape == (h, w)
    assert img.min() >= 0.0 and img.max() <= 1.0
    np.testing.assert_allclose(img, expected, atol=1e-6)


def test_read_image_float_tiff(tmp_path: Path) -> None:
    a = np.linspace(-2.0, 6.0, 20, dtype=np.float32).reshape(4, 5)
    Image.fromarray(a, mode="F").save(tmp_path / "f.tif")
    np.testing.assert_allclose(read_image(tmp_path / "f.tif"), (a + 2) / 8, atol=1e-6)


@pytest.mark.parametrize(
    ("content", "needle"),
    [(None, "no such file"), (b"", "empty"), (b"hello, not an image", "not a readable image")],
)
def test_read_image_bad_files(tmp_path: Path, content: bytes | None, needle: str) -> None:
    path = tmp_path / "bad.png"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(InputError, match=needle) as e:
        read_image(path)
    assert str(path) in str(e.value)


def test_read_image_truncated(tmp_path: Path) -> None:
    a = np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8)
    path = save(tmp_path / "t.png", a)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match=r"t\.png"):
        read_image(path)


@given(st.binary(max_size=300))
@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_read_image_random_bytes(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "r.png"
    path.write_bytes(data)
    try:
        img = read_image(path)
    except InputError as e:
        assert str(path) in str(e)
    else:
        assert img.dtype == np.float32


# ----------------------------------------------------------------------------- masks


@given(arrays(np.bool_, st.tuples(st.integers(1, 12), st.integers(1, 12))))
@settings(max_examples=150, deadline=None)
def test_mask_to_points_matches_flood_fill(mask: np.ndarray) -> None:
    got = mask_to_points(mask)
    assert got.dtype == np.float64 and got.shape[1] == 2
    ref = flood_fill_points(mask)
    assert len(got) == len(ref)
    if ref:
        np.testing.assert_allclose(sorted(map(tuple, got)), ref, atol=1e-12)


def test_mask_to_points_diagonal_is_one_target() -> None:
    m = np.zeros((5, 5), dtype=np.uint8)
    m[1, 1] = m[2, 2] = 1
    np.testing.assert_allclose(mask_to_points(m), [[2.0, 2.0]])


@pytest.mark.parametrize("values", [(0, 1), (0, 255), (0,), (255,)])
def test_read_mask_binary(tmp_path: Path, values: tuple[int, ...]) -> None:
    m = np.array([values * 3], dtype=np.uint8)
    got = read_mask(save(tmp_path / "m.png", m))
    np.testing.assert_array_equal(got, m > 0)


@pytest.mark.parametrize("values", [(0, 1, 255), (0, 128), (0, 3, 7)])
def test_read_mask_not_binary(tmp_path: Path, values: tuple[int, ...]) -> None:
    path = save(tmp_path / "m.png", np.array([values], dtype=np.uint8))
    with pytest.raises(InputError, match="not binary") as e:
        read_mask(path)
    assert str(path) in str(e.value)


@pytest.mark.parametrize("value", [1, 255])
@pytest.mark.parametrize("suffix", ["", "_pixels0"])
def test_mask_dataset(tmp_path: Path, value: int, suffix: str) -> None:
    masks = mask_folder(tmp_path, suffix=suffix, value=value)
    (tmp_path / "masks" / "img0.xml").write_text("<annotation/>")
    (tmp_path / "masks" / "notes.txt").write_text("ignore me")
    (tmp_path / "points.csv").write_text("image,x,y\nimages/img1.png,1,1\n")  # must not win
    ds = load_dataset(tmp_path)
    assert ds.format == "masks" and len(ds) == 4
    assert [r.id for r in ds.records] == sorted(masks)
    for r in ds.records:
        assert r.size == (24, 32)
        np.testing.assert_allclose(sorted(map(tuple, r.points)), flood_fill_points(masks[r.id] > 0))
    assert len(ds.records[0].points) == 0  # image without targets: kept and counted
    assert ds.num_targets == 0 + 1 + 2 + 3
    sample = ds[2]
    assert sample.image.shape == (24, 32) and sample.image.dtype == np.float32


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "P", "I;16"])
def test_mask_dataset_image_modes(tmp_path: Path, mode: str) -> None:
    rng = np.random.default_rng(2)
    shape = (10, 14, 3) if mode == "RGB" else (10, 14, 4) if mode == "RGBA" else (10, 14)
    dtype = np.uint16 if mode == "I;16" else np.uint8
    a = rng.integers(0, np.iinfo(dtype).max + 1, shape, dtype=dtype)
    save(tmp_path / "images" / "x.png", a, "P" if mode == "P" else None)
    save(tmp_path / "masks" / "x.png", mask_with((10, 14), [(4, 6), (4, 7)]))
    ds = load_dataset(tmp_path)
    assert Image.open(ds.records[0].image_path).mode == mode
    np.testing.assert_allclose(ds.records[0].points, [[7.0, 4.5]])
    img = ds[0].image
    assert img.shape == (10, 14) and img.dtype == np.float32
    assert img.min() >= 0 and img.max() <= 1 and img.std() > 0


def test_mask_size_mismatch_error_and_skip(tmp_path: Path) -> None:
    mask_folder(tmp_path, n=3)
    bad = tmp_path / "masks" / "img1.png"
    save(bad, np.zeros((20, 32), dtype=np.uint8))
    with pytest.raises(InputError, match="differs") as e:
        load_dataset(tmp_path)
    assert str(bad) in str(e.value) and "--on-mismatch skip" in str(e.value)
    ds = load_dataset(tmp_path, opts(on_mismatch="skip"))
    assert [r.id for r in ds.records] == ["img0", "img2"]
    assert len(ds.skipped) == 1 and ds.skipped[0][0] == str(bad)


def test_mask_multi_value_names_file(tmp_path: Path) -> None:
    mask_folder(tmp_path, n=2)
    bad = save(tmp_path / "masks" / "img1.png", np.full((24, 32), 7, dtype=np.uint8))
    with pytest.raises(InputError, match="not binary") as e:
        load_dataset(tmp_path)
    assert str(bad) in str(e.value)


def test_missing_mask(tmp_path: Path) -> None:
    mask_folder(tmp_path, n=3)
    (tmp_path / "masks" / "img2.png").unlink()
    with pytest.raises(InputError, match=r"img2\.png"):
        load_dataset(tmp_path)
    assert [r.id for r in load_dataset(tmp_path, opts(on_mismatch="skip")).records] == [
        "img0",
        "img1",
    ]


def test_mask_prefix_does_not_steal(tmp_path: Path) -> None:
    # Misc_1 and Misc_10: Misc_10_pixels0 belongs to Misc_10, not Misc_1
    for ident, pix in (("Misc_1", (1, 1)), ("Misc_10", (5, 5))):
        save(tmp_path / "images" / f"{ident}.png", np.zeros((8, 8), np.uint8))
        save(tmp_path / "masks" / f"{ident}_pixels0.png", mask_with((8, 8), [pix]))
    ds = load_dataset(tmp_path)
    pts = {r.id: r.points.tolist() for r in ds.records}
    assert pts == {"Misc_1": [[1.5, 1.5]], "Misc_10": [[5.5, 5.5]]}


@pytest.mark.parametrize("content", [None, b"", b"GIF89a garbage", b"\x89PNG\r\n\x1a\n\x00\x00"])
def test_bad_image_in_mask_dataset(tmp_path: Path, content: bytes | None) -> None:
    mask_folder(tmp_path, n=2)
    bad = tmp_path / "images" / "img1.png"
    if content is None:  # truncated PNG: the header reads, the pixels do not
        bad.write_bytes(bad.read_bytes()[:60])
    else:
        bad.write_bytes(content)
    with pytest.raises(InputError) as e:
        ds = load_dataset(tmp_path)
        for i in range(len(ds)):
            ds[i]
    assert str(bad) in str(e.value)


def test_empty_dataset(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    with pytest.raises(InputError, match="no images in"):
        load_dataset(tmp_path)
    empty = tmp_path / "nothing"
    empty.mkdir()
    with pytest.raises(InputError, match="no images in"):
        load_dataset(empty)
    with pytest.raises(InputError, match="no such file"):
        load_dataset(tmp_path / "missing")


# ----------------------------------------------------------------------------- points tables


def points_folder(root: Path, size: tuple[int, int] = (30, 40)) -> None:
    for name in ("a", "b", "c"):
        save(root / "imgs" / f"{name}.png", np.zeros(size, dtype=np.uint8))


@pytest.mark.parametrize(
    ("coords", "expected"),
    [("continuous", (20.0, 10.0)), ("index0", (20.5, 10.5)), ("index1", (19.5, 9.5))],
)
def test_points_coords(tmp_path: Path, coords: str, expected: tuple[float, float]) -> None:
    points_folder(tmp_path)
    (tmp_path / "points.csv").write_text(
        "image,x,y,class\nimgs/a.png,20,10,0\nimgs/b.png,,\nimgs/a.png,3,4,1\n"
    )
    ds = load_dataset(tmp_path / "points.csv", opts(coords=coords))
    assert ds.format == "points" and [r.id for r in ds.records] == ["a", "b"]
    shift = {"continuous": 0.0, "index0": 0.5, "index1": -0.5}[coords]
    np.testing.assert_allclose(ds.records[0].points, [expected, (3 + shift, 4 + shift)])
    assert ds.records[1].points.shape == (0, 2)  # listed without targets: kept
    assert ds.records[0].size == (30, 40)


def test_points_folder_and_images_dir(tmp_path: Path) -> None:
    points_folder(tmp_path)
    table = tmp_path / "ann" / "points.csv"
    table.parent.mkdir()
    table.write_text("image,x,y\na.png,1.5,2.5\nc,3,3\n")
    with pytest.raises(InputError, match="not found"):
        load_dataset(table)
    ds = load_dataset(tmp_path / "ann", opts(images=str(tmp_path / "imgs")))
    assert [r.id for r in ds.records] == ["a", "c"]
    np.testing.assert_allclose(ds.records[0].points, [[1.5, 2.5]])
    assert ds[1].image.shape == (30, 40)


@pytest.mark.parametrize(
    ("table", "needle"),
    [
        ("image,x\nimgs/a.png,1\n", "lacks column"),
        ("file,u,v\nimgs/a.png,1,2\n", "lacks column"),
        ("image,x,y\nimgs/a.png,one,2\n", "line 2: x 'one' is not a number"),
        ("image,x,y\nimgs/a.png,1,2\nimgs/a.png,-1,2\n", "line 3: negative x"),
        ("image,x,y\nimgs/a.png,1,nan\n", "not a finite"),
        ("image,x,y\nimgs/a.png,40,2\n", "outside"),
        ("image,x,y\nimgs/a.png,1,30.5\n", "outside"),
        ("image,x,y\nimgs/zzz.png,1,2\n", "'imgs/zzz.png' not found"),
        ("image,x,y\nimgs/a.png,1,\n", "both"),
        ("image,x,y\n", "no rows"),
        ("", "empty"),
    ],
)
def test_points_bad_tables(tmp_path: Path, table: str, needle: str) -> None:
    points_folder(tmp_path)
    path = tmp_path / "points.csv"
    path.write_text(table)
    with pytest.raises(InputError, match=needle) as e:
        load_dataset(path)
    assert str(path) in str(e.value)


def test_points_index1_zero_is_outside(tmp_path: Path) -> None:
    points_folder(tmp_path)
    (tmp_path / "p.csv").write_text("image,x,y\nimgs/a.png,0,3\n")
    with pytest.raises(InputError, match="outside"):
        load_dataset(tmp_path / "p.csv", opts(coords="index1"))
    assert len(load_dataset(tmp_path / "p.csv", opts(coords="index0"))) == 1


# ----------------------------------------------------------------------------- COCO


def coco_file(root: Path, anns: list[dict], extra_image: bool = True) -> Path:
    save(root / "images" / "p.png", np.zeros((20, 30), dtype=np.uint8))
    save(root / "images" / "q.png", np.zeros((20, 30), dtype=np.uint8))
    images = [{"id": 1, "file_name": "p.png", "width": 30, "height": 20}]
    if extra_image:
        images.append({"id": 2, "file_name": "images/q.png"})
    path = root / "ann.json"
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": []}))
    return path


def test_coco_boxes_and_keypoints(tmp_path: Path) -> None:
    anns = [
        {"id": 1, "image_id": 1, "bbox": [4, 6, 3, 2]},
        {"id": 2, "image_id": 1, "bbox": [10, 10, 2, 2], "keypoints": [12.25, 8.5, 2, 1, 1, 0]},
        {"id": 3, "image_id": 1, "bbox": [0, 0, 20, 20], "iscrowd": 1},
    ]
    path = coco_file(tmp_path, anns)
    for target in (path, tmp_path):
        ds = load_dataset(target)
        assert ds.format == "coco" and [r.id for r in ds.records] == ["p", "q"]
        np.testing.assert_allclose(ds.records[0].points, [[5.5, 7.0], [12.25, 8.5]])
        assert ds.records[1].points.shape == (0, 2) and ds.records[1].size == (20, 30)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "no 'images' list"),
        ('{"images": [{"id": 1}]}', "no file_name"),
        ('{"images": [{"id": 1, "file_name": "zz.png"}]}', "not found"),
        (
            '{"images": [{"id": 1, "file_name": "p.png"}], "annotations": [{"image_id": 9}]}',
            "unknown image_id",
        ),
        (
            '{"images": [{"id": 1, "file_name": "p.png"}], "annotations": '
            '[{"image_id": 1, "bbox": [1, "a", 2, 2]}]}',
            "bbox",
        ),
        (
            '{"images": [{"id": 1, "file_name": "p.png"}], "annotations": '
            '[{"image_id": 1, "bbox": [40, 1, 2, 2]}]}',
            "outside",
        ),
        ('{"images": []}', "no images"),
    ],
)
def test_coco_bad(tmp_path: Path, text: str, needle: str) -> None:
    coco_file(tmp_path, [])
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(InputError, match=needle) as e:
        load_dataset(path)
    assert str(path) in str(e.value)


def test_coco_declared_size_mismatch(tmp_path: Path) -> None:
    path = coco_file(tmp_path, [])
    data = json.loads(path.read_text())
    data["images"][0]["height"] = 21
    path.write_text(json.dumps(data))
    with pytest.raises(InputError, match="declared size"):
        load_dataset(path)
    assert [r.id for r in load_dataset(path, opts(on_mismatch="skip")).records] == ["q"]


# ----------------------------------------------------------------------------- splits


def test_splits_by_name_and_path(tmp_path: Path) -> None:
    mask_folder(tmp_path, n=4)
    (tmp_path / "idx_4").mkdir()
    (tmp_path / "idx_4" / "trainval.txt").write_text("img3\n\nimages/img1.png\n")
    for name in ("trainval", "trainval.txt", str(tmp_path / "idx_4" / "trainval.txt")):
        assert [r.id for r in load_dataset(tmp_path, opts(split=name)).records] == ["img1", "img3"]
    (tmp_path / "img_idx").mkdir()
    (tmp_path / "img_idx" / "test_MyData.txt").write_text("img0\n")
    assert [r.id for r in load_dataset(tmp_path, opts(split="test")).records] == ["img0"]


@pytest.mark.parametrize(
    ("content", "needle"), [("img1\nimg9\n", "unknown image id 'img9'"), ("\n\n", "empty")]
)
def test_split_errors(tmp_path: Path, content: str, needle: str) -> None:
    mask_folder(tmp_path, n=3)
    (tmp_path / "50_50").mkdir()
    path = tmp_path / "50_50" / "train.txt"
    path.write_text(content)
    with pytest.raises(InputError, match=needle) as e:
        load_dataset(tmp_path, opts(split="train"))
    assert str(path) in str(e.value)
    with pytest.raises(InputError, match="--split nosuch"):
        load_dataset(tmp_path, opts(split="nosuch"))


def test_train_val_from_split_files(tmp_path: Path) -> None:
    mask_folder(tmp_path, n=5)
    (tmp_path / "train.txt").write_text("img0\nimg1\nimg2\n")
    (tmp_path / "test.txt").write_text("img3\nimg4\n")
    train, val = load_train_val(tmp_path, None)
    assert [r.id for r in train.records] == ["img0", "img1", "img2"]
    assert [r.id for r in val.records] == ["img3", "img4"]
    (tmp_path / "val.txt").write_text("img2\n")  # val.txt wins over test.txt; never overlaps
    train, val = load_train_val(tmp_path, None)
    assert [r.id for r in train.records] == ["img0", "img1"]
    assert [r.id for r in val.records] == ["img2"]
    (tmp_path / "my_val.txt").write_text("img4\n")
    train, val = load_train_val(tmp_path, opts(split="test", val_split="my_val.txt"))
    assert [r.id for r in train.records] == ["img3"] and [r.id for r in val.records] == ["img4"]


def test_train_val_holdout(tmp_path: Path) -> None:
    mask_folder(tmp_path, n=10)
    train, val = load_train_val(tmp_path, None, seed=3, val_fraction=0.3)
    t, v = {r.id for r in train.records}, {r.id for r in val.records}
    assert len(v) == 3 and len(t) == 7 and not t & v
    again = load_train_val(tmp_path, None, seed=3, val_fraction=0.3)[1]
    assert [r.id for r in again.records] == sorted(v)
    other = {r.id for r in load_train_val(tmp_path, None, seed=4, val_fraction=0.3)[1].records}
    assert len(other) == 3
    one = tmp_path / "one"
    mask_folder(one, n=1)
    with pytest.raises(InputError, match="too few"):
        load_train_val(one, None)


# ----------------------------------------------------------------------------- random bytes


@pytest.mark.parametrize("target", ["image", "mask", "csv", "json", "split"])
@given(data=st.binary(max_size=200))
@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_random_bytes_give_input_error(tmp_path: Path, target: str, data: bytes) -> None:
    root = tmp_path / target
    if not root.exists():
        mask_folder(root, n=2, size=(6, 8))
    options = DatasetOptions()
    if target == "image":
        (root / "images" / "img1.png").write_bytes(data)
    elif target == "mask":
        (root / "masks" / "img1.png").write_bytes(data)
    elif target == "split":
        (root / "split.txt").write_bytes(data)
        options = opts(split="split.txt")
    else:
        path = root / f"table.{target}"
        path.write_bytes(data)
        root = path
    try:
        ds = load_dataset(root, options)
        for i in range(len(ds)):
            ds[i]
    except InputError as e:
        assert "\n" not in str(e)


def _valid_png(size: tuple[int, int] = (6, 8)) -> bytes:
    import io

    buf = io.BytesIO()
    Image.fromarray(np.arange(size[0] * size[1], dtype=np.uint8).reshape(size)).save(buf, "PNG")
    return buf.getvalue()


@given(cut=st.integers(0, 200), flips=st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255))))
@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_corrupted_png_gives_input_error(
    tmp_path: Path, cut: int, flips: list[tuple[int, int]]
) -> None:
    data = bytearray(_valid_png()[: max(cut, 8)])
    for pos, value in flips:
        if pos < len(data):
            data[pos] = value
    for reader in (read_image, read_mask):
        path = tmp_path / "c.png"
        path.write_bytes(bytes(data))
        try:
            reader(path)
        except InputError as e:
            assert str(path) in str(e)


_KEYS = ["images", "annotations", "id", "file_name", "image_id", "bbox", "keypoints", "width",
         "height", "iscrowd"]  # fmt: skip
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 50) | st.floats() | st.sampled_from(["p.png", "x"]),
    lambda c: st.lists(c, max_size=5) | st.dictionaries(st.sampled_from(_KEYS), c, max_size=6),
    max_leaves=25,
)


@given(value=_JSON)
@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_fuzzed_coco_gives_input_error(tmp_path: Path, value: object) -> None:
    coco_file(tmp_path, [])
    path = tmp_path / "fuzz.json"
    path.write_text(json.dumps(value))
    try:
        load_dataset(path)
    except InputError as e:
        assert str(path) in str(e)


@given(
    text=st.text(alphabet=',\n\r"-.0123456789eEaxyimgs/pn_ \t;', max_size=80), header=st.booleans()
)
@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_fuzzed_points_table_gives_input_error(tmp_path: Path, text: str, header: bool) -> None:
    points_folder(tmp_path)
    path = tmp_path / "fuzz.csv"
    path.write_text(("image,x,y\n" if header else "") + text)
    for coords in ("continuous", "index1"):
        try:
            load_dataset(path, opts(coords=coords))
        except InputError as e:
            assert str(path) in str(e)


@pytest.mark.parametrize("mode", ["P", "RGB", "I;16", "1"])
def test_read_mask_modes(tmp_path: Path, mode: str) -> None:
    m = np.zeros((6, 7), dtype=bool)
    m[1, 2] = m[4, 5] = m[4, 6] = True
    path = tmp_path / "m.png"
    if mode == "P":
        save(path, m.astype(np.uint8), "P")  # indices 0/1, whatever the palette colours
    elif mode == "RGB":
        save(path, np.stack([m * 255] * 3, axis=-1).astype(np.uint8))
    elif mode == "I;16":
        save(path, (m * 255).astype(np.uint16))
    else:
        save(path, m)
    assert Image.open(path).mode == mode
    np.testing.assert_array_equal(read_mask(path), m)


def test_mask_without_image(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Images define the samples (issue 14): a mask of no image is ignored and counted."""
    mask_folder(tmp_path, n=3)
    (tmp_path / "images" / "img1.png").unlink()
    orphan = tmp_path / "masks" / "img1.png"
    for o in (opts(), opts(on_mismatch="skip")):
        ds = load_dataset(tmp_path, o)
        assert [r.id for r in ds.records] == ["img0", "img2"]
        assert ds.ignored_masks == [str(orphan)] and ds.skipped == []
        assert "ignored 1 mask(s) without an image" in capsys.readouterr().err
