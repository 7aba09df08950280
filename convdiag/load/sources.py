"""What the dataset loaders share: a scanned ``Source``, finishing and skipping records,
reading a text file as input, and resolving an image path a table names."""

from __future__ import annotations

import codecs
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from convdiag.errors import InputError
from convdiag.load.imageio import IMAGE_EXTENSIONS, read_image
from convdiag.load.options import DatasetOptions
from convdiag.load.reads import read_limited
from convdiag.load.sample import PointDataset, Record

# pixel index -> continuous coordinate: x = index + shift
COORD_SHIFT = {"continuous": 0.0, "index0": 0.5, "index1": -0.5}


def read_record_image(record: Record) -> np.ndarray:
    """The default reader: ``read_image(record.image_path)``, float32 [H, W] in [0, 1]."""
    return read_image(record.image_path)


@dataclass
class Source:
    """A scanned dataset: where split files live, all ids, and how to build records for ids."""

    root: Path
    format: str
    ids: list[str]
    build: Callable[[list[str]], PointDataset]


def finish(
    records: list[Record], skipped: list[tuple[str, str]], source: Path, fmt: str
) -> PointDataset:
    """Sort ``records`` by id into a PointDataset (InputError when none is left)."""
    if not records:
        why = f" after skipping {len(skipped)} (--on-mismatch skip)" if skipped else ""
        raise InputError(f"no images in {source}{why}")
    records.sort(key=lambda r: r.id)
    return PointDataset(records, read_record_image, str(source), fmt, skipped)


def note(message: str) -> None:
    """One line on stderr about the input that does not stop the command."""
    print(f"convdiag: note: {message}", file=sys.stderr)


def mismatch(opts: DatasetOptions, skipped: list[tuple[str, str]], file: Path, reason: str) -> None:
    """Raise (``--on-mismatch error``) or record the skip (``skip``)."""
    if opts.on_mismatch == "skip":
        skipped.append((str(file), reason))
        return
    raise InputError(f"{file}: {reason} (use --on-mismatch skip to leave it out)")


MAX_TABLE_BYTES = 2**30  # a points table or COCO file larger than 1 GiB is refused
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),  # before UTF-16 LE, whose BOM it starts with
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


def read_text(path: Path, what: str) -> str:
    """The text of ``path``: UTF-8 (a BOM allowed), or UTF-16/32 when it starts with their
    BOM. InputError naming it and ``what`` when it is empty, binary, not a regular file (a
    FIFO or device is refused without blocking), over MAX_TABLE_BYTES, or not decodable."""
    data = read_limited(path, MAX_TABLE_BYTES, what)
    for bom, codec in _BOMS:
        if data.startswith(bom):
            try:
                data = data.decode(codec).encode("utf-8")
            except UnicodeDecodeError:
                raise InputError(f"{path}: {what} is not valid {codec.upper()} text") from None
            break
    if not data.strip():
        raise InputError(f"{path}: empty {what}")
    if b"\x00" in data:
        raise InputError(f"{path}: binary data, not a {what}")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InputError(f"{path}: {what} is not UTF-8 text") from None


def is_file(p: Path) -> bool:
    """``p.is_file()``, False also for a name the OS rejects (too long, ...)."""
    try:
        return p.is_file()
    except OSError:
        return False


def resolve_image(value: str, base: Path, images_dir: Path | None, what: str) -> Path | None:
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
            if is_file(p):
                return p
            if rel.suffix.lower() not in IMAGE_EXTENSIONS:
                for ext in IMAGE_EXTENSIONS:
                    q = p.with_name(p.name + ext)
                    if is_file(q):
                        return q
    return None
