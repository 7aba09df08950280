"""Canonical metric keys and how log columns map to them (``--map key=column,...``).

Column names are compared lowercased and stripped; Lightning's ``_step`` / ``_epoch``
suffixes are tried after each name (step first: more points). The first name of each list
that a log holds wins, and a column serves one key at most.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from convdiag.errors import InputError
from convdiag.watch.table import RawLog, Series

# key -> column names, most specific first (documented in `convdiag logs --help`)
AUTO_NAMES: dict[str, tuple[str, ...]] = {
    "epoch": ("epoch", "epochs"),
    "loss": ("train/loss", "train_loss", "loss", "train/total_loss", "total_loss",
             "train/loss_total", "loss_total", "training_loss", "losses/train_loss"),
    "cls_loss": ("train/hm_loss", "hm_loss", "train_hm_loss", "train/cls_loss", "train_cls_loss",
                 "cls_loss", "train/loss_cls", "loss_cls", "train/loss_hm", "loss_hm",
                 "train/heatmap_loss", "heatmap_loss", "loss_heatmap", "train/focal_loss",
                 "focal_loss"),
    "obj_loss": ("train/obj_loss", "obj_loss", "train_obj_loss", "train/loss_obj", "loss_obj",
                 "loss_objectness"),
    "reg_loss": ("train/off_loss", "off_loss", "train_off_loss", "train/offset_loss",
                 "offset_loss", "train_offset_loss", "train/reg_loss", "train_reg_loss",
                 "reg_loss", "train/loss_offset", "loss_offset", "loss_off", "train/loss_reg",
                 "loss_reg"),
    "f1": ("val/f1", "val_f1", "f1", "f1_at_0.5", "val/f1_score", "f1_score", "metrics/f1",
           "test/f1", "best_f1"),
    "precision": ("val/precision", "val_precision", "precision", "metrics/precision(b)",
                  "metrics/precision", "val/p", "test/precision"),
    "recall": ("val/recall", "val_recall", "recall", "val/pd", "val_pd", "pd",
               "metrics/recall(b)", "metrics/recall", "val/r", "test/recall", "test/pd"),
    "fp": ("val/fp_per_image", "val_fp_per_image", "fp_per_image", "val/fp_per_img",
           "fp_per_img", "val/fp", "val_fp", "fp"),
    "map": ("metrics/map50(b)", "metrics/map_0.5", "val/map50", "map50", "coco/bbox_map_50",
            "val/bbox_map_50", "bbox_map_50", "val/map", "map", "coco/bbox_map", "bbox_map"),
    "lr": ("lr", "train/lr", "lr/pg0", "x/lr0", "lr-adamw", "lr-adam", "lr-sgd", "learning_rate",
           "base_lr"),
    "constant_loss": ("constant_loss", "val/constant_loss"),
    # infrared small-target segmentation metrics (ACM, DNANet, BasicIRSTD)
    "iou": ("eval/miou", "val/miou", "miou", "eval/iou", "val/iou", "iou", "test/miou"),
    "niou": ("eval/niou", "val/niou", "niou", "test/niou"),
    "fa": ("eval/fa", "val/fa", "fa", "test/fa"),
}  # fmt: skip
# Keys whose values are fractions in [0, 1]; a log whose values of one reach past 1 (up to
# 100) reports percentages, which are scaled to fractions with a note.
FRACTION_KEYS = ("f1", "precision", "recall", "map", "iou", "niou")
KEYS = ("step", *AUTO_NAMES)
SIGNAL_KEYS = (
    "loss", "cls_loss", "obj_loss", "reg_loss", "f1", "precision", "recall", "fp", "map",
    "iou", "niou",
)  # fmt: skip
LIGHTNING_SUFFIXES = ("", "_step", "_epoch")


def parse_map(text: str | None) -> dict[str, str]:
    """``"f1=val/F1,cls_loss=train/hm_loss"`` -> {"f1": "val/F1", "cls_loss": "train/hm_loss"}.

    Keys must be canonical (see ``KEYS``); InputError naming ``--map`` otherwise.
    """
    out: dict[str, str] = {}
    if not text:
        return out
    for item in text.split(","):
        if not item.strip():
            continue
        key, sep, col = item.partition("=")
        key, col = key.strip().lower(), col.strip()
        if not sep or not key or not col:
            raise InputError(f"--map {item.strip()!r}: use KEY=COLUMN (keys: {', '.join(KEYS)})")
        if key not in KEYS:
            raise InputError(f"--map {key}: unknown key (keys: {', '.join(KEYS)})")
        out[key] = col
    return out


def norm(name: str) -> str:
    """Lowercase, stripped, inner spaces removed."""
    return "".join(name.lower().split())


@dataclass
class MappedLog:
    """The canonical series of a log: ``series[key]``, ``columns[key]`` = source column."""

    raw: RawLog
    series: dict[str, Series] = field(default_factory=dict)
    columns: dict[str, str] = field(default_factory=dict)

    @property
    def unmapped(self) -> list[str]:
        """Columns of the log that no key uses."""
        used = set(self.columns.values())
        return [c for c in self.raw.columns if c not in used]


def _find(raw: RawLog, name: str) -> str | None:
    if name in raw.columns:
        return name
    want = norm(name)
    for c in raw.columns:
        if norm(c) == want:
            return c
    return None


def map_columns(raw: RawLog, user: dict[str, str] | None = None) -> MappedLog:
    """Canonical series of ``raw``: ``user`` mappings first, then ``AUTO_NAMES``.

    A user mapping to a column the log lacks is an InputError that lists the columns. When
    no F1 is logged but precision and recall are, F1 = 2PR / (P + R) at their common steps.
    A log with none of the signal keys (losses, F1, precision, recall, FP, mAP) is an
    InputError naming the file.
    """
    user = dict(user or {})
    m = MappedLog(raw)
    used: set[str] = set()
    for key, col in user.items():
        if key == "step":
            continue  # the readers use it as the x axis
        found = _find(raw, col)
        if found is None:
            cols = ", ".join(raw.columns) or "none"
            raise InputError(
                f"--map {key}={col}: no column {col!r} in {raw.path} (columns: {cols})"
            )
        m.series[key], m.columns[key] = raw.columns[found], found
        used.add(found)
    for key, names in AUTO_NAMES.items():
        if key in m.series:
            continue
        for name in names:
            hit = None
            for suffix in LIGHTNING_SUFFIXES:
                c = _find(raw, name + suffix)
                if c is not None and c not in used:
                    hit = c
                    break
            if hit is not None:
                m.series[key], m.columns[key] = raw.columns[hit], hit
                used.add(hit)
                break
    _fractions(m)
    if "f1" not in m.series and "precision" in m.series and "recall" in m.series:
        f1 = derived_f1(m.series["precision"], m.series["recall"])
        if f1 is not None:
            m.series["f1"] = f1
            m.columns["f1"] = f"2PR/(P+R) of {m.columns['precision']}, {m.columns['recall']}"
    if not any(k in m.series for k in SIGNAL_KEYS):
        cols = ", ".join(raw.columns) or "no numeric column"
        raise InputError(
            f"{raw.files[0] if len(raw.files) == 1 else raw.path}: no recognised columns "
            f"(found: {cols}); name them with --map KEY=COLUMN (keys: {', '.join(KEYS)})"
        )
    return m


def _fractions(m: MappedLog) -> None:
    """Scale percentage-valued fraction keys to [0, 1]; say what a false-alarm value counts."""
    for key in FRACTION_KEYS:
        s = m.series.get(key)
        if s is None or not s.finite.any():
            continue
        top = float(np.max(s.values[s.finite]))
        if 1.0 < top <= 100.0:
            m.series[key] = Series(s.name, s.x, s.values / 100.0)
            m.raw.notes.append(f"{m.columns[key]}: values up to {top:g} read as percentages")
    fa = m.series.get("fa")
    if fa is not None and fa.finite.any():
        top = float(np.max(fa.values[fa.finite]))
        what = "false-alarm pixel rate" if top < 1.0 else "false-alarm pixels per image"
        m.raw.notes.append(f"{m.columns['fa']}: read as the {what} (values up to {top:g})")


def derived_f1(p: Series, r: Series) -> Series | None:
    """F1 = 2PR / (P + R) at the steps both series share (0 where P + R = 0)."""
    common, ip, ir = np.intersect1d(p.x, r.x, return_indices=True)
    if len(common) == 0:
        return None
    pv, rv = p.values[ip], r.values[ir]
    with np.errstate(invalid="ignore", divide="ignore"):
        f = np.where(pv + rv > 0, 2 * pv * rv / (pv + rv), 0.0)
    f = np.where(np.isfinite(pv) & np.isfinite(rv), f, np.nan)
    return Series("f1", common, f)
