"""Dataset loaders: mask folders, points tables (CSV) and COCO JSON -> PointDataset.

Here: format detection, mask folders, the public ``load_dataset`` / ``load_train_val``;
points tables are ``load.points_table``, COCO files ``load.coco``, what they share
``load.sources``.

Every loader returns records sorted by id with points as float64 [N, 2] (x, y) in
continuous pixel coordinates (DESIGN.md "Coordinates"); images are read lazily by
``dataset.reader(record)``. Images without targets are kept. Any bad input is an InputError
whose one line names the file (and line or entry) and what is wrong.

Formats (``DatasetOptions.data_format``; ``auto`` detects them in this order):

- masks: a folder with ``images/`` and ``masks/`` (or IRSTD-1k's ``*_Img/`` and
  ``*_Label/``), even when a points table sits beside them. A mask is matched to its image
  by stem, with or without a suffix (``Misc_1_pixels0.png`` for ``Misc_1.png``); non-image
  files in both folders are ignored. Images define the samples: a mask without an image is
  ignored (counted in ``dataset.ignored_masks`` and noted on stderr); an image without a
  mask, or a mask of another size, is an InputError unless ``--on-mismatch skip`` (then
  reported in ``dataset.skipped``). A target is an 8-connected component of mask > 0, its
  point the mean of its pixel centres (c + 0.5, r + 0.5).
- points: a ``.csv`` file, or a folder holding ``points.csv`` or exactly one CSV, with a
  header ``image,x,y[,class]``. Image paths are relative to the table's folder or to
  ``--images DIR``; a row with empty x and y lists an image without targets. ``--coords``
  converts 0-based pixel indices (x = c + 0.5) or 1-based ones (x = c - 0.5).
- coco: a ``.json`` file (or a folder holding exactly one): visible keypoints, else box
  centres (x + w/2, y + h/2), become points; ``iscrowd`` annotations are left out.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from convdiag.errors import InputError
from convdiag.load.coco import scan_coco
from convdiag.load.files import declare_input_dir
from convdiag.load.imageio import (
    image_size,
    is_image_file,
    read_image,
    read_mask,
)
from convdiag.load.options import DatasetOptions
from convdiag.load.points_table import scan_points
from convdiag.load.reads import absent_reason
from convdiag.load.sample import PointDataset, Record
from convdiag.load.sources import Source, finish, mismatch, note
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


def mask_layout(root: Path) -> tuple[Path, Path] | None:
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


def find_table(root: Path) -> Path | None:
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
        raise InputError(f"{path}: {absent_reason(path)}")
    if not path.is_file() and not path.is_dir():
        raise InputError(f"{path}: a FIFO or device, not a dataset file or folder")
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
    if fmt in ("auto", "masks") and mask_layout(path) is not None:
        return "masks", path
    if fmt == "masks":
        raise InputError(f"{path}: not a mask dataset (no images/ and masks/ folders)")
    if fmt in ("auto", "points"):
        table = find_table(path)
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


def _scan(path: str | os.PathLike[str], opts: DatasetOptions) -> Source:
    _check_options(opts)
    if Path(path).is_dir():  # a folder is searched: no output may lie inside it
        declare_input_dir(path, str(path))
    fmt, main = _detect(Path(path), opts.data_format)
    if fmt == "masks":
        return _scan_masks(main, opts)
    if fmt == "points":
        return scan_points(main, opts)
    return scan_coco(main, opts)


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


def _scan_masks(root: Path, opts: DatasetOptions) -> Source:
    layout = mask_layout(root)
    assert layout is not None
    img_dir, mask_dir = layout
    images = [f for f in sorted(img_dir.iterdir()) if is_image_file(f) and f.is_file()]
    if not images:
        raise InputError(f"no images in {img_dir}")
    by_id = _unique_ids(images, img_dir)
    masks_of: dict[str, list[Path]] = {}
    orphans: list[str] = []  # images define the samples: a mask of no image is ignored
    for m in sorted(mask_dir.iterdir()):
        if is_image_file(m) and m.is_file():
            owner = _mask_owner(m.stem, by_id)
            if owner is not None:
                masks_of.setdefault(owner, []).append(m)
            else:  # annotation folders often hold masks of images kept elsewhere
                orphans.append(str(m))
    if orphans:
        note(f"ignored {len(orphans)} mask(s) without an image in {img_dir} (e.g. {orphans[0]})")

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
        skipped: list[tuple[str, str]] = []
        for ident in ids:
            img = by_id[ident]
            mask_path = mask_for(ident)
            if mask_path is None:
                mismatch(opts, skipped, img, f"no mask in {mask_dir} for this image")
                continue
            size = image_size(img)
            mask = read_mask(mask_path)
            if mask.shape != size:
                h, w = mask.shape
                reason = (
                    f"mask size {h}x{w} differs from its image {img.name} ({size[0]}x{size[1]})"
                )
                mismatch(opts, skipped, mask_path, reason)
                continue
            records.append(Record(ident, img, size, mask_to_points(mask)))
        ds = finish(records, skipped, root, "masks")
        ds.ignored_masks = list(orphans)
        return ds

    return Source(root, "masks", sorted(by_id), build)


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


def _dataset_split(src: Source, names: tuple[str, ...]) -> list[str] | None:
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
