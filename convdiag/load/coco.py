"""The COCO loader: visible keypoints, else box centres, of a COCO JSON -> a ``Source``."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from convdiag.errors import InputError
from convdiag.load.imageio import image_size
from convdiag.load.options import DatasetOptions
from convdiag.load.reads import parse_json
from convdiag.load.sample import LabelPairs, PointDataset, Record
from convdiag.load.sources import COORD_SHIFT, Source, finish, mismatch, read_text, resolve_image


def _coco_error(path: Path, what: str) -> InputError:
    return InputError(f"{path}: not a valid COCO file: {what}")


def _finite_list(value: Any, length: int | None) -> list[float] | None:
    if not isinstance(value, list) or (length is not None and len(value) != length):
        return None
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value):
        return None
    try:
        out = [float(v) for v in value]
    except OverflowError:  # an integer of hundreds of digits
        return None
    return out if all(math.isfinite(v) for v in out) else None


def _box_centre(ann: dict[str, Any], k: int, path: Path) -> tuple[float, float] | None:
    """The centre (x + w / 2, y + h / 2) of an annotation's bbox, None without one."""
    if "bbox" not in ann:
        return None
    box = _finite_list(ann["bbox"], 4)
    if box is None or box[2] < 0 or box[3] < 0:
        raise _coco_error(path, f"annotation {k}: bbox must be [x, y, w, h] with w, h >= 0")
    return (box[0] + box[2] / 2.0, box[1] + box[3] / 2.0)


def _coco_points(
    ann: dict[str, Any], k: int, path: Path, shift: float
) -> tuple[list[tuple[float, float]], tuple[float, float] | None]:
    """(points, box centre) of one annotation: the points are its visible keypoints (v > 0),
    else its box centre; the centre is returned beside them when it has both."""
    centre = _box_centre(ann, k, path)
    if ann.get("keypoints"):
        kp = _finite_list(ann["keypoints"], None)
        if kp is None or len(kp) % 3:
            raise _coco_error(path, f"annotation {k}: keypoints must be numbers x,y,v,...")
        pts = [(kp[i] + shift, kp[i + 1] + shift) for i in range(0, len(kp), 3) if kp[i + 2] > 0]
        if pts:
            return pts, centre
    if centre is not None:
        return [centre], None
    if "keypoints" in ann:
        return [], None  # keypoints given, none visible
    raise _coco_error(path, f"annotation {k} has neither bbox nor keypoints")


def _pairs(
    pairs: dict[str, list[tuple[tuple[float, float], tuple[float, float]]]],
    records: list[Record],
    path: Path,
) -> LabelPairs | None:
    """The keypoints and their boxes' centres in ``records`` (None when none has both)."""
    images = {
        r.id: (
            np.array([a for a, _ in pairs[r.id]]).reshape(-1, 2),
            np.array([b for _, b in pairs[r.id]]).reshape(-1, 2),
            r.size,
        )
        for r in records
        if r.id in pairs
    }
    if not images:
        return None
    return LabelPairs("keypoints", "box centres", str(path), "keypoints", images)


def scan_coco(path: Path, opts: DatasetOptions) -> Source:
    """Scan the COCO JSON ``path``: its images and their points, records built on demand."""
    text = read_text(path, "COCO JSON file")
    data = parse_json(text, str(path))
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise _coco_error(path, "no 'images' list")
    anns = data.get("annotations", [])
    if not isinstance(anns, list):
        raise _coco_error(path, "'annotations' is not a list")
    images_dir = Path(opts.images) if opts.images else None
    shift = COORD_SHIFT[opts.coords]
    by_coco_id: dict[Any, str] = {}
    entries: dict[str, tuple[Path, tuple[int, int] | None]] = {}
    for k, im in enumerate(data["images"]):
        if not isinstance(im, dict) or not isinstance(im.get("file_name"), str):
            raise _coco_error(path, f"images[{k}] has no file_name")
        cid = im.get("id")
        if not isinstance(cid, int | str) or isinstance(cid, bool) or cid in by_coco_id:
            raise _coco_error(path, f"images[{k}] has a missing or repeated id")
        found = resolve_image(im["file_name"], path.parent, images_dir, f"{path}: images[{k}]")
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
        elif "width" in im or "height" in im:
            raise _coco_error(path, f"images[{k}]: width and height must be finite numbers")
        by_coco_id[cid] = found.stem
        entries[found.stem] = (found, size)
    if not entries:
        raise InputError(f"no images in {path}")
    points: dict[str, list[tuple[float, float]]] = {i: [] for i in entries}
    # one-keypoint annotations with a box: (keypoint, box centre), compared by ``labels``
    pairs: dict[str, list[tuple[tuple[float, float], tuple[float, float]]]] = {}
    for k, ann in enumerate(anns):
        if not isinstance(ann, dict):
            raise _coco_error(path, f"annotations[{k}] is not an object")
        try:
            ident = by_coco_id[ann.get("image_id")]
        except (KeyError, TypeError):
            raise _coco_error(path, f"annotations[{k}] refers to unknown image_id") from None
        if ann.get("iscrowd") in (1, True):
            continue
        pts, centre = _coco_points(ann, k, path, shift)
        points[ident] += pts
        if centre is not None and len(pts) == 1:
            pairs.setdefault(ident, []).append((pts[0], centre))

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
                mismatch(opts, skipped, img, reason)
                continue
            pts = np.array(points[ident], dtype=np.float64).reshape(-1, 2)
            bad = (pts[:, 0] < 0) | (pts[:, 1] < 0) | (pts[:, 0] >= w) | (pts[:, 1] >= h)
            if bad.any():
                x, y = pts[np.argmax(bad)]
                raise InputError(
                    f"{path}: point ({x:g}, {y:g}) lies outside image {img.name} of size {h}x{w}"
                )
            records.append(Record(ident, img, (h, w), pts))
        ds = finish(records, skipped, path, "coco")
        ds.label_pairs = _pairs(pairs, ds.records, path)
        return ds

    return Source(path.parent, "coco", sorted(entries), build)
