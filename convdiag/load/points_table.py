"""The points-table loader: a CSV ``image,x,y[,class]`` -> a scanned ``Source``."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import numpy as np

from convdiag.errors import InputError
from convdiag.load.imageio import image_size
from convdiag.load.options import DatasetOptions
from convdiag.load.sample import PointDataset, Record
from convdiag.load.sources import COORD_SHIFT, Source, finish, read_text, resolve_image

_IMAGE_COLUMNS = ("image", "file", "filename", "file_name", "image_path", "path", "img", "name")


def _number(text: str, table: Path, line: int, column: str) -> float:
    shown = repr(text) if len(text) <= 40 else repr(text[:20]) + "..."  # named, not printed
    try:
        v = float(text)
    except ValueError:
        raise InputError(f"{table}: line {line}: {column} {shown} is not a number") from None
    if not math.isfinite(v):
        raise InputError(f"{table}: line {line}: {column} {shown} is not a finite number")
    if v < 0:
        raise InputError(f"{table}: line {line}: negative {column} {shown}")
    return v


def _sniff_delimiter(first_line: str) -> str:
    if "," in first_line:
        return ","
    for d in ("\t", ";"):
        if d in first_line:
            return d
    return ","


def scan_points(table: Path, opts: DatasetOptions) -> Source:
    """Scan the points ``table``: its images and their points, records built on demand."""
    text = read_text(table, "points table")
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
    shift = COORD_SHIFT[opts.coords]
    images_dir = Path(opts.images) if opts.images else None
    points: dict[Path, list[tuple[float, float, int]]] = {}
    names: dict[str, Path] = {}
    resolved: dict[str, Path] = {}
    seen: dict[tuple[Path, float, float], int] = {}  # (image, x, y) -> first line
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
            found = resolve_image(value, table.parent, images_dir, f"{table}: line {n}")
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
        first_line = seen.setdefault((path, x, y), n)
        if first_line != n:
            raise InputError(
                f"{table}: line {n} repeats line {first_line} ({value}, {xs}, {ys}): "
                "duplicate rows, each target must be listed once"
            )
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
        return finish(records, skipped, table, "points")

    return Source(table.parent, "points", sorted(names), build)
