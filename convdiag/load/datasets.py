"""Dataset loaders: mask folders, points tables (CSV) and COCO JSON -> PointDataset.

Every loader returns records sorted by id with points as float64 [N, 2] (x, y) in
continuous pixel coordinates (DESIGN.md "Coordinates"); images are read lazily by
``dataset.reader(record)``. Images without targets are kept. Any bad input is an InputError
whose one line names the file (and line or entry) and what is wrong.

Formats (``DatasetOptions.data_format``; ``auto`` detects them in this order):

- masks: a folder with ``images/`` and ``masks/`` (or IRSTD-1k's ``*_Img/`` and
  ``*_Label/``), even when a points table sits beside them. A mask is matched to its image
  by stem, with or without a suffix (``Misc_1_pixels0.png`` for ``Misc_1.png``); non-image
  files in both folders are ignored. An image without a mask, a mask without an image, or a
  mask of another size is an InputError unless ``--on-mismatch skip`` (then reported in
  ``dataset.skipped``). A target is an 8-connected component of mask > 0, its
  point the mean of its pixel centres (c + 0.5, r + 0.5).
- points: a ``.csv`` file, or a folder holding ``points.csv`` or exactly one CSV, with a
  header ``image,x,y[,class]``. Image paths are relative to the table's folder or to
  ``--images DIR``; a row with empty x and y lists an image without targets. ``--coords``
  converts 0-based pixel indices (x = c + 0.5) or 1-based ones (x = c - 0.5).
- coco: a ``.json`` file (or a folder holding exactly one): visible keypoints, else box
  centres (x + w/2, y + h/2), become points; ``iscrowd`` annotations are left out.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from convdiag.errors import InputError
from convdiag.load.imageio import (
    IMAGE_EXTENSIONS,
    image_size,
    is_image_file,
    read_image,
    read_mask,
)
from convdiag.load.options import DatasetOptions
from convdiag.load.sample import PointDataset, Record
from convdiag.load.splits import find_split, read_split, resolve_split

__all__ = [
    "load_dataset",
    "load_train_val",
    "mask_to_points",
    "read_image",
    "read_mask",
]

FORMATS = ("auto", "masks", "points", "coco")
COORDS = ("continuous", "index0", "index1")
MISMATCH = ("error", "skip")
# pixel index -> continuous coordinate: x = index + shift
_COORD_SHIFT = {"continuous": 0.0, "index0": 0.5, "index1": -0.5}
_IMAGE_COLUMNS = ("image", "file", "filename", "file_name", "image_path", "path", "img", "name")


def read_record_image(record: Record) -> np.ndarray:
    """The default reader: ``read_image(record.image_path)``, float32 [H, W] in [0, 1]."""
    return read_image(record.image_path)


def mask_to_points(mask: np.ndarray) -> np.ndarray:
    """Target points of a mask: one per 8-connected component of mask > 0.

    mask: [H, W] (bool or numbers). Returns float64 [N, 2] (x, y) with
    x = mean(c + 0.5), y = mean(r + 0.5) over the component's pixels (r, c); components in
    raster order of their first pixel. No targets -> shape (0, 2).
    """
    from scipy import ndimage

    m = np.asarray(mask)
    if m.ndim != 2:
        raise ValueError(f"mask must be 2-D [H, W], got shape {m.shape}")
    labels, n = ndimage.label(m > 0, structure=np.ones((3, 3), dtype=bool))
    if n == 0:
        return np.zeros((0, 2), dtype=np.float64)
    rows, cols = np.nonzero(labels)
    comp = labels[rows, cols] - 1
    count = np.bincount(comp, minlength=n).astype(np.float64)
    x = np.bincount(comp, weights=cols + 0.5, minlength=n) / count
    y = np.bincount(comp, weights=rows + 0.5, minlength=n) / count
    return np.stack([x, y], axis=1)


# ----------------------------------------------------------------------------- sources


@dataclass
class _Source:
    """A scanned dataset: where split files live, all ids, and how to build records for ids."""

    root: Path
    format: str
    ids: list[str]
    build: Callable[[list[str]], PointDataset]


def _check_options(opts: DatasetOptions) -> None:
    for value, allowed, flag in (
        (opts.data_format, FORMATS, "--data-format"),
        (opts.coords, COORDS, "--coords"),
        (opts.on_mismatch, MISMATCH, "--on-mismatch"),
    ):
        if value not in allowed:
            raise InputError(f"{flag} {value}: use one of {', '.join(allowed)}")
    if opts.images is not None:
        try:
            is_dir = Path(opts.images).is_dir()
        except OSError as e:
            raise InputError(f"--images {opts.images}: cannot access ({e.strerror})") from None
        if not is_dir:
            raise InputError(f"--images {opts.images}: not a folder")


def _mask_layout(root: Path) -> tuple[Path, Path] | None:
    """(images dir, masks dir) of a mask dataset folder, or None."""
    if (root / "images").is_dir() and (root / "masks").is_dir():
        return root / "images", root / "masks"
    imgs = [d for d in root.glob("*_Img") if d.is_dir()]
    labels = [d for d in root.glob("*_Label") if d.is_dir()]
    if len(imgs) == 1 and len(labels) == 1:
        return imgs[0], labels[0]
    return None


def _files(root: Path, suffix: str) -> list[Path]:
    return sorted(
        f for f in root.iterdir() if f.suffix.lower() == suffix and f.is_file() and f.name[0] != "."
    )


def _find_table(root: Path) -> Path | None:
    if (root / "points.csv").is_file():
        return root / "points.csv"
    tables = _files(root, ".csv")
    if len(tables) > 1:
        names = ", ".join(t.name for t in tables[:4])
        raise InputError(f"{root}: several CSV tables ({names}); pass the one to use")
    return tables[0] if tables else None


def _find_coco(root: Path) -> Path | None:
    found = _files(root, ".json")
    if len(found) > 1:
        names = ", ".join(t.name for t in found[:4])
        raise InputError(f"{root}: several JSON files ({names}); pass the COCO file to use")
    return found[0] if found else None


def _has_images(root: Path) -> bool:
    for d in (root, root / "images"):
        if d.is_dir() and any(is_image_file(f) for f in d.iterdir()):
            return True
    return False


def _detect(path: Path, fmt: str) -> tuple[str, Path]:
    """The format and its main path (mask root, CSV file or JSON file) of a dataset path."""
    try:
        exists = path.exists()
    except OSError as e:  # a name too long for the file system, ...
        raise InputError(f"{path}: cannot access ({e.strerror})") from None
    if not exists:
        raise InputError(f"{path}: no such file or folder")
    if path.is_file():
        suffix = path.suffix.lower()
        if fmt == "masks":
            raise InputError(f"{path}: a mask dataset is a folder with images/ and masks/")
        if fmt == "points" or (fmt == "auto" and suffix == ".csv"):
            return "points", path
        if fmt == "coco" or (fmt == "auto" and suffix == ".json"):
            return "coco", path
        raise InputError(
            f"{path}: cannot tell the dataset format (expected a .csv points table or a COCO "
            ".json file, or a folder); use --data-format"
        )
    if fmt in ("auto", "masks") and _mask_layout(path) is not None:
        return "masks", path
    if fmt == "masks":
        raise InputError(f"{path}: not a mask dataset (no images/ and masks/ folders)")
    if fmt in ("auto", "points"):
        table = _find_table(path)
        if table is not None:
            return "points", table
        if fmt == "points":
            raise InputError(f"{path}: no points CSV (points.csv) in this folder")
    coco = _find_coco(path)
    if coco is not None:
        return "coco", coco
    if fmt == "coco":
        raise InputError(f"{path}: no COCO .json file in this folder")
    if not _has_images(path):
        raise InputError(f"no images in {path}")
    raise InputError(
        f"{path}: cannot tell the dataset format (expected images/ with masks/, a points CSV "
        "or a COCO JSON)"
    )


def _scan(path: str | os.PathLike[str], opts: DatasetOptions) -> _Source:
    _check_options(opts)
    fmt, main = _detect(Path(path), opts.data_format)
    if fmt == "masks":
        return _scan_masks(main, opts)
    if fmt == "points":
        return _scan_points(main, opts)
    return _scan_coco(main, opts)


def _finish(
    records: list[Record], skipped: list[tuple[str, str]], source: Path, fmt: str
) -> PointDataset:
    if not records:
        why = f" after skipping {len(skipped)} (--on-mismatch skip)" if skipped else ""
        raise InputError(f"no images in {source}{why}")
    records.sort(key=lambda r: r.id)
    return PointDataset(records, read_record_image, str(source), fmt, skipped)


def _mismatch(
    opts: DatasetOptions, skipped: list[tuple[str, str]], file: Path, reason: str
) -> None:
    """Raise (``--on-mismatch error``) or record the skip (``skip``)."""
    if opts.on_mismatch == "skip":
        skipped.append((str(file), reason))
        return
    raise InputError(f"{file}: {reason} (use --on-mismatch skip to leave it out)")


# ----------------------------------------------------------------------------- masks


def _unique_ids(files: list[Path], where: Path) -> dict[str, Path]:
    by_id: dict[str, Path] = {}
    for f in files:
        if f.stem in by_id:
            raise InputError(
                f"{where}: two images share the id {f.stem!r} ({by_id[f.stem].name}, {f.name})"
            )
        by_id[f.stem] = f
    return by_id


def _mask_owner(stem: str, ids: dict[str, Path]) -> str | None:
    """The image id a mask stem belongs to: itself, else its longest prefix ending at '_'/'-'."""
    if stem in ids:
        return stem
    for k in range(len(stem) - 1, 0, -1):
        if stem[k] in "_-" and stem[:k] in ids:
            return stem[:k]
    return None


def _scan_masks(root: Path, opts: DatasetOptions) -> _Source:
    layout = _mask_layout(root)
    assert layout is not None
    img_dir, mask_dir = layout
    images = [f for f in sorted(img_dir.iterdir()) if is_image_file(f) and f.is_file()]
    if not images:
        raise InputError(f"no images in {img_dir}")
    by_id = _unique_ids(images, img_dir)
    masks_of: dict[str, list[Path]] = {}
    orphans: list[tuple[str, str]] = []
    for m in sorted(mask_dir.iterdir()):
        if is_image_file(m) and m.is_file():
            owner = _mask_owner(m.stem, by_id)
            if owner is not None:
                masks_of.setdefault(owner, []).append(m)
            else:  # most often an image that went missing
                _mismatch(opts, orphans, m, f"mask without an image in {img_dir}")

    def mask_for(ident: str) -> Path | None:
        found = masks_of.get(ident, [])
        exact = [m for m in found if m.stem == ident]
        if len(exact) == 1 or len(found) == 1:
            return exact[0] if exact else found[0]
        if found:
            names = ", ".join(m.name for m in found[:4])
            raise InputError(f"{mask_dir}: several masks for image {ident!r} ({names})")
        return None

    def build(ids: list[str]) -> PointDataset:
        records: list[Record] = []
        skipped: list[tuple[str, str]] = list(orphans)
        for ident in ids:
            img = by_id[ident]
            mask_path = mask_for(ident)
            if mask_path is None:
                _mismatch(opts, skipped, img, f"no mask in {mask_dir} for this image")
                continue
            size = image_size(img)
            mask = read_mask(mask_path)
            if mask.shape != size:
                h, w = mask.shape
                reason = (
                    f"mask size {h}x{w} differs from its image {img.name} ({size[0]}x{size[1]})"
                )
                _mismatch(opts, skipped, mask_path, reason)
                continue
            records.append(Record(ident, img, size, mask_to_points(mask)))
        return _finish(records, skipped, root, "masks")

    return _Source(root, "masks", sorted(by_id), build)


# ----------------------------------------------------------------------------- points table


def _read_text(path: Path, what: str) -> str:
    try:
        data = path.read_bytes()
    except OSError as e:
        raise InputError(f"{path}: cannot read {what} ({e.strerror})") from None
    if not data.strip():
        raise InputError(f"{path}: empty {what}")
    if b"\x00" in data:
        raise InputError(f"{path}: binary data, not a {what}")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InputError(f"{path}: {what} is not UTF-8 text") from None


def _is_file(p: Path) -> bool:
    """``p.is_file()``, False also for a name the OS rejects (too long, ...)."""
    try:
        return p.is_file()
    except OSError:
        return False


def _resolve_image(value: str, base: Path, images_dir: Path | None, what: str) -> Path | None:
    """Find the image a table names: relative to --images DIR or the table's folder.

    A name is data from the file: without --images it must stay inside the table's folder
    (an absolute path or a ``..`` part -> InputError naming ``what``); with --images DIR it
    is looked up inside DIR only (as given, then by its file name), never outside it.
    """
    raw = Path(value.replace("\\", "/"))
    escapes = raw.is_absolute() or ".." in raw.parts
    if images_dir is None:
        if escapes:
            raise InputError(
                f"{what}: image {value!r} lies outside the dataset folder {base}; "
                "pass --images DIR to say where the images are"
            )
        bases, rels = [base, base / "images"], [raw]
    else:
        bases, rels = [images_dir], ([] if escapes else [raw]) + [Path(raw.name)]
    for b in bases:
        for rel in rels:
            if not rel.name or rel.name in (".", ".."):
                continue
            p = b / rel
            if _is_file(p):
                return p
            if rel.suffix.lower() not in IMAGE_EXTENSIONS:
                for ext in IMAGE_EXTENSIONS:
                    q = p.with_name(p.name + ext)
                    if _is_file(q):
                        return q
    return None


def _number(text: str, table: Path, line: int, column: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise InputError(f"{table}: line {line}: {column} {text!r} is not a number") from None
    if not math.isfinite(v):
        raise InputError(f"{table}: line {line}: {column} {text!r} is not a finite number")
    if v < 0:
        raise InputError(f"{table}: line {line}: negative {column} {text!r}")
    return v


def _sniff_delimiter(first_line: str) -> str:
    if "," in first_line:
        return ","
    for d in ("\t", ";"):
        if d in first_line:
            return d
    return ","


def _scan_points(table: Path, opts: DatasetOptions) -> _Source:
    text = _read_text(table, "points table")
    lines = text.lstrip().splitlines()
    if not lines:  # only whitespace (str.isspace counts control separators such as \x1c)
        raise InputError(f"{table}: empty points table")
    first = lines[0]
    try:
        rows = list(csv.reader(io.StringIO(text), delimiter=_sniff_delimiter(first)))
    except csv.Error as e:
        raise InputError(f"{table}: malformed CSV ({e})") from None
    header = [h.strip().lower() for h in rows[0]]
    image_col = next((header.index(c) for c in _IMAGE_COLUMNS if c in header), None)
    missing = [c for c in ("x", "y") if c not in header]
    if image_col is None:
        missing.insert(0, "image")
    if missing:
        raise InputError(
            f"{table}: points table lacks column(s) {', '.join(missing)} "
            "(expected a header image,x,y[,class])"
        )
    assert image_col is not None
    xi, yi = header.index("x"), header.index("y")
    shift = _COORD_SHIFT[opts.coords]
    images_dir = Path(opts.images) if opts.images else None
    points: dict[Path, list[tuple[float, float, int]]] = {}
    names: dict[str, Path] = {}
    resolved: dict[str, Path] = {}
    for n, row in enumerate(rows[1:], start=2):
        if not row or all(not c.strip() for c in row):
            continue
        if len(row) < len(header):
            row = row + [""] * (len(header) - len(row))
        value = row[image_col].strip()
        if not value:
            raise InputError(f"{table}: line {n}: empty image name")
        path = resolved.get(value)
        if path is None:
            found = _resolve_image(value, table.parent, images_dir, f"{table}: line {n}")
            if found is None:
                where = images_dir if images_dir is not None else table.parent
                raise InputError(
                    f"{table}: line {n}: image {value!r} not found in {where}"
                    + ("" if images_dir is not None else " (use --images DIR)")
                )
            path = resolved[value] = found
        if path.stem in names and names[path.stem] != path:
            raise InputError(
                f"{table}: line {n}: two images share the id {path.stem!r} "
                f"({names[path.stem]}, {path})"
            )
        names[path.stem] = path
        entry = points.setdefault(path, [])
        xs, ys = row[xi].strip(), row[yi].strip()
        if not xs and not ys:
            continue  # an image without targets
        if not xs or not ys:
            raise InputError(f"{table}: line {n}: x and y must both be given (or both empty)")
        x = _number(xs, table, n, "x") + shift
        y = _number(ys, table, n, "y") + shift
        if x < 0 or y < 0:
            raise InputError(
                f"{table}: line {n}: point ({xs}, {ys}) is outside the image in --coords "
                f"{opts.coords} (1-based indices start at 1)"
            )
        entry.append((x, y, n))
    if not names:
        raise InputError(f"no images in {table} (the table has no rows)")

    def build(ids: list[str]) -> PointDataset:
        records: list[Record] = []
        skipped: list[tuple[str, str]] = []
        for ident in ids:
            path = names[ident]
            h, w = image_size(path)
            rows_ = points[path]
            for x, y, n in rows_:
                if x >= w or y >= h:
                    raise InputError(
                        f"{table}: line {n}: point ({x:g}, {y:g}) lies outside image "
                        f"{path.name} of size {h}x{w} (coords {opts.coords})"
                    )
            pts = np.array([(x, y) for x, y, _ in rows_], dtype=np.float64).reshape(-1, 2)
            records.append(Record(ident, path, (h, w), pts))
        return _finish(records, skipped, table, "points")

    return _Source(table.parent, "points", sorted(names), build)


# ----------------------------------------------------------------------------- COCO


def _coco_error(path: Path, what: str) -> InputError:
    return InputError(f"{path}: not a valid COCO file: {what}")


def _finite_list(value: Any, length: int | None) -> list[float] | None:
    if not isinstance(value, list) or (length is not None and len(value) != length):
        return None
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value):
        return None
    out = [float(v) for v in value]
    return out if all(math.isfinite(v) for v in out) else None


def _coco_points(
    ann: dict[str, Any], k: int, path: Path, shift: float
) -> list[tuple[float, float]]:
    """Points of one annotation: visible keypoints (v > 0), else the box centre."""
    if ann.get("keypoints"):
        kp = _finite_list(ann["keypoints"], None)
        if kp is None or len(kp) % 3:
            raise _coco_error(path, f"annotation {k}: keypoints must be numbers x,y,v,...")
        pts = [(kp[i] + shift, kp[i + 1] + shift) for i in range(0, len(kp), 3) if kp[i + 2] > 0]
        if pts:
            return pts
    if "bbox" in ann:
        box = _finite_list(ann["bbox"], 4)
        if box is None or box[2] < 0 or box[3] < 0:
            raise _coco_error(path, f"annotation {k}: bbox must be [x, y, w, h] with w, h >= 0")
        return [(box[0] + box[2] / 2.0, box[1] + box[3] / 2.0)]
    if "keypoints" in ann:
        return []  # keypoints given, none visible
    raise _coco_error(path, f"annotation {k} has neither bbox nor keypoints")


def _scan_coco(path: Path, opts: DatasetOptions) -> _Source:
    text = _read_text(path, "COCO JSON file")
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as e:
        at = f" (line {e.lineno})" if isinstance(e, json.JSONDecodeError) else ""
        raise InputError(f"{path}: not valid JSON{at}") from None
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise _coco_error(path, "no 'images' list")
    anns = data.get("annotations", [])
    if not isinstance(anns, list):
        raise _coco_error(path, "'annotations' is not a list")
    images_dir = Path(opts.images) if opts.images else None
    shift = _COORD_SHIFT[opts.coords]
    by_coco_id: dict[Any, str] = {}
    entries: dict[str, tuple[Path, tuple[int, int] | None]] = {}
    for k, im in enumerate(data["images"]):
        if not isinstance(im, dict) or not isinstance(im.get("file_name"), str):
            raise _coco_error(path, f"images[{k}] has no file_name")
        cid = im.get("id")
        if not isinstance(cid, int | str) or isinstance(cid, bool) or cid in by_coco_id:
            raise _coco_error(path, f"images[{k}] has a missing or repeated id")
        found = _resolve_image(im["file_name"], path.parent, images_dir, f"{path}: images[{k}]")
        if found is None:
            where = images_dir if images_dir is not None else path.parent
            raise InputError(
                f"{path}: images[{k}]: image {im['file_name']!r} not found in {where}"
                + ("" if images_dir is not None else " (use --images DIR)")
            )
        if found.stem in entries:
            raise _coco_error(path, f"two images share the id {found.stem!r}")
        size: tuple[int, int] | None = None
        wh = _finite_list([im.get("width"), im.get("height")], 2)
        if wh is not None:
            size = (int(wh[1]), int(wh[0]))
        by_coco_id[cid] = found.stem
        entries[found.stem] = (found, size)
    if not entries:
        raise InputError(f"no images in {path}")
    points: dict[str, list[tuple[float, float]]] = {i: [] for i in entries}
    for k, ann in enumerate(anns):
        if not isinstance(ann, dict):
            raise _coco_error(path, f"annotations[{k}] is not an object")
        try:
            ident = by_coco_id[ann.get("image_id")]
        except (KeyError, TypeError):
            raise _coco_error(path, f"annotations[{k}] refers to unknown image_id") from None
        if ann.get("iscrowd") in (1, True):
            continue
        points[ident] += _coco_points(ann, k, path, shift)

    def build(ids: list[str]) -> PointDataset:
        records: list[Record] = []
        skipped: list[tuple[str, str]] = []
        for ident in ids:
            img, declared = entries[ident]
            h, w = image_size(img)
            if declared is not None and declared != (h, w):
                reason = (
                    f"declared size {declared[0]}x{declared[1]} in {path.name} differs from "
                    f"the image ({h}x{w})"
                )
                _mismatch(opts, skipped, img, reason)
                continue
            pts = np.array(points[ident], dtype=np.float64).reshape(-1, 2)
            bad = (pts[:, 0] < 0) | (pts[:, 1] < 0) | (pts[:, 0] >= w) | (pts[:, 1] >= h)
            if bad.any():
                x, y = pts[np.argmax(bad)]
                raise InputError(
                    f"{path}: point ({x:g}, {y:g}) lies outside image {img.name} of size {h}x{w}"
                )
            records.append(Record(ident, img, (h, w), pts))
        return _finish(records, skipped, path, "coco")

    return _Source(path.parent, "coco", sorted(entries), build)


# ----------------------------------------------------------------------------- public API


def load_dataset(
    path: str | os.PathLike[str], options: DatasetOptions | None = None
) -> PointDataset:
    """Load a dataset (mask folder, points CSV or COCO JSON; see the module doc).

    ``options.split`` keeps only the ids of that split file. Returns a PointDataset sorted by
    id: Record.size (H, W) from the image header, points float64 [N, 2] (x, y) continuous.
    InputError naming the file for any bad input, including an empty dataset.
    """
    opts = options or DatasetOptions()
    src = _scan(path, opts)
    ids = src.ids
    if opts.split:
        ids = sorted(read_split(resolve_split(src.root, opts.split), src.ids))
    return src.build(ids)


def _dataset_split(src: _Source, names: tuple[str, ...]) -> list[str] | None:
    for name in names:
        found = find_split(src.root, name)
        if found is not None:
            return read_split(found, src.ids)
    return None


def load_train_val(
    path: str | os.PathLike[str],
    options: DatasetOptions | None = None,
    seed: int = 0,
    val_fraction: float = 0.2,
) -> tuple[PointDataset, PointDataset]:
    """Training and validation datasets, never overlapping.

    val = ``options.val_split``, else the dataset's ``val`` split file, else its ``test`` one,
    else a seeded hold-out of round(val_fraction * n) (at least 1) of the training ids.
    train = ``options.split``, else the dataset's ``train`` split file, else every id; minus val.
    """
    opts = options or DatasetOptions()
    if not 0.0 < val_fraction < 1.0:
        raise InputError(f"validation fraction {val_fraction}: must lie strictly between 0 and 1")
    src = _scan(path, opts)
    val: list[str] | None
    if opts.val_split:
        val = read_split(resolve_split(src.root, opts.val_split, "--val-split"), src.ids)
    else:
        val = _dataset_split(src, ("val", "test"))
    if opts.split:
        train = read_split(resolve_split(src.root, opts.split), src.ids)
    else:
        train = _dataset_split(src, ("train",)) or list(src.ids)
    if val is None:
        pool = sorted(train)
        if len(pool) < 2:
            raise InputError(
                f"{path}: {len(pool)} training image(s): too few to hold out a validation set"
            )
        n_val = min(len(pool) - 1, max(1, round(val_fraction * len(pool))))
        pick = np.random.default_rng(seed).permutation(len(pool))[:n_val]
        val = [pool[i] for i in sorted(pick)]
    held = set(val)
    train = sorted(i for i in train if i not in held)
    if not train:
        raise InputError(f"{path}: no training images left once the validation images are removed")
    return src.build(train), src.build(sorted(val))
