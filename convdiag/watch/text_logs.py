"""Plain-text training logs, the only log many repositories commit. Recognised line forms:

- mmdetection 2.x (``mmcv`` logger): ``... - mmdet - INFO - Epoch [1][5/25]\\tlr: 8.1e-05,
  eta: 0:01:23, ..., loss_cls: 1.1994, loss_bbox: 0.2577, loss: 1.4571``; ``Iter [500/90000]``
  for iteration-based runs; ``Epoch(val) [1][25]\\tbbox_mAP: 0.10, bbox_mAP_50: 0.20, ...``.
- mmengine: ``... - mmengine - INFO - Epoch(train) [1][1/6]  lr: 4.0e-08  ...  loss: 0.42``,
  ``Iter(train) [500/90000]  ...``, ``Epoch(val) [10][6/6]  coco/bbox_mAP: ...`` and
  ``Iter(val) [6/6]  ...``.
- BasicIRSTD / DNANet style: ``Jul 18 14:16:58 Epoch---10, total_loss---0.997293,`` per epoch
  and tuple lines such as ``pixAcc, mIoU:\\t(0.83, 0.75)`` or ``PD, FA:\\t(0.935, 3.8e-05)``.
- CenterNet family ``log.txt``: ``2025-12-02-20-20: epoch: 1 |loss 5.646 | hm_loss 2.343 |
  wh_loss 1.702 | off_loss 0.236 | time 0.016 |``.
- YOLOv5 / ultralytics console output: the ``Epoch GPU_mem box_loss ...`` header, the rows
  ``  3/99  3.2G  0.053 ...`` (progress bars: the last update of a row wins) and the
  ``all  128  929  0.734  0.639  0.694  0.466`` validation rows, named as in results.csv.

Steps: mmdet/mmengine train lines count iterations ((epoch - 1) x iterations per epoch + iter
for epoch-based runs); validation lines sit at the last training iteration before them. The
other styles count epochs. Bytes that are not UTF-8 are replaced (noted). The file is read
line by line: memory grows with the number of values, not with the file's other text.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from convdiag.errors import InputError
from convdiag.watch.csv_logs import check_log_file
from convdiag.watch.progress import EVERY, tick
from convdiag.watch.table import RawLog, Series

NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|nan|inf|-inf"
# mmcv / mmengine: "key: value" separated by ", " (mmcv) or two spaces (mmengine)
_KV = re.compile(r"(?:^|[\s,])([A-Za-z_][\w/.\-()@]*):\s*(" + NUM + r")(?=[,\s]|$)")
_MM_HEAD = re.compile(
    r"\b(Epoch|Iter)(?:\((train|val|test)\))?\s*\[\s*(\d+)\s*\]"
    r"(?:\[\s*(\d+)\s*(?:/\s*(\d+)\s*)?\])?"
    r"|\b(Iter)(?:\((train|val|test)\))?\s*\[\s*(\d+)\s*/\s*(\d+)\s*\]"
)
_MM_LOGGER = re.compile(r" - (mmdet|mmengine|mmcv|mmpose|mmrotate|mmyolo|mmseg|\w+) - INFO - ")
_DASH = re.compile(r"([A-Za-z_][\w/.]*)---(" + NUM + r")")
_TUPLE = re.compile(r"^\s*([A-Za-z][\w ,/.]*?):\s*\(([^)]*)\)\s*$")
_PIPE_EPOCH = re.compile(r"\bepoch:\s*(\d+)\s*\|")
_PIPE_KV = re.compile(r"\|\s*([A-Za-z_][\w/.]*)\s+(" + NUM + r")\s*(?=\|)")
_YOLO_ROW = re.compile(r"^\s*(\d+)/(\d+)\s+(\S+)\s+(.*)$")
YOLO_VAL_NAMES = ("metrics/precision(B)", "metrics/recall(B)", "metrics/mAP50(B)",
                  "metrics/mAP50-95(B)")  # fmt: skip
MAX_LINE = 1 << 16


def _lines(p: Path, notes: list[str]) -> Iterator[str]:
    """The file's lines, decoded as UTF-8 with replacement; ``\\r`` splits progress bars."""
    replaced = 0
    try:
        with p.open("rb") as f:
            for n, raw in enumerate(f, 1):
                if n % EVERY == 0:
                    tick(f.tell())
                text = raw[:MAX_LINE].decode("utf-8", errors="replace")
                replaced += text.count("\ufffd")
                for part in text.replace("\r\n", "\n").split("\r"):
                    yield part.rstrip("\n")
    except OSError as e:
        raise InputError(f"{p}: cannot read ({e.strerror or e})") from None
    if replaced:
        notes.append(
            f"{replaced} byte sequences that are not UTF-8 were replaced (e.g. a GBK header)"
        )


def sniff_text_log(p: Path, limit: int = 1 << 16) -> str | None:
    """The text-log style of ``p`` from its first ``limit`` bytes, or None (also for
    anything but a regular file: opening a FIFO would block)."""
    if not p.is_file():
        return None
    try:
        with p.open("rb") as f:
            head = f.read(limit).decode("utf-8", errors="replace")
    except OSError:
        return None
    for line in head.splitlines():
        if _MM_LOGGER.search(line) and _MM_HEAD.search(line):
            return "mmlab"
        if _DASH.search(line) and "Epoch---" in line:
            return "irstd"
        if _PIPE_EPOCH.search(line):
            return "centernet"
        if "Epoch" in line and "box_loss" in line:
            return "yolo"
    return None


class _Columns:
    """Series under construction: name -> ([x], [value])."""

    def __init__(self) -> None:
        self.data: dict[str, tuple[list[float], list[float]]] = defaultdict(lambda: ([], []))

    def add(self, name: str, x: float, value: float) -> None:
        xs, vs = self.data[name]
        xs.append(x)
        vs.append(value)

    def series(self) -> dict[str, Series]:
        return {k: Series(k, np.array(xs), np.array(vs)) for k, (xs, vs) in self.data.items()}


def _mmlab(lines: Iterator[str], cols: _Columns) -> str:
    per_epoch: int | None = None
    last_train = 0.0
    for line in lines:
        if not _MM_LOGGER.search(line):
            continue
        m = _MM_HEAD.search(line)
        if m is None:
            continue
        if m.group(1):
            kind, mode = m.group(1), m.group(2) or "train"
            a, b, c = int(m.group(3)), m.group(4), m.group(5)
            if kind == "Iter":  # "Iter [500/90000]" is caught by the second branch
                continue
            if mode == "train" and b is not None:
                if c is not None:
                    per_epoch = int(c)
                step = float((a - 1) * (per_epoch or 0) + int(b)) if per_epoch else float(b)
            else:  # "Epoch(val) [10][6/6]", "Epoch(val) [1][25]": after the epoch's training
                step = float(a * per_epoch) if per_epoch else last_train
                mode = "val" if mode == "train" else mode
        else:
            mode = m.group(7) or "train"
            step = float(m.group(8)) if mode == "train" else last_train
        tail = line[m.end() :]
        for key, value in _KV.findall(tail):
            if key.endswith("_copypaste") or (
                key in ("eta", "time", "data_time", "memory") and mode != "train"
            ):
                continue
            name = key if mode == "train" or "/" in key else f"val/{key}"
            cols.add(name, step, float(value))
        if mode == "train":
            last_train = step
    return "step"


def _irstd(lines: Iterator[str], cols: _Columns) -> str:
    epoch = 0.0
    for line in lines:
        pairs = _DASH.findall(line)
        if pairs:
            d = {k: float(v) for k, v in pairs}
            epoch = d.pop("Epoch", epoch + 1)
            for k, v in d.items():
                cols.add(k, epoch, v)
            continue
        t = _TUPLE.match(line)
        if t:
            names = [n.strip() for n in t.group(1).split(",")]
            texts = [v.strip() for v in t.group(2).split(",")]
            if len(names) == len(texts) and all(re.fullmatch(NUM, v) for v in texts):
                for n, text in zip(names, texts, strict=True):
                    cols.add(n, epoch, float(text))
    return "epoch"


def _centernet(lines: Iterator[str], cols: _Columns) -> str:
    for line in lines:
        m = _PIPE_EPOCH.search(line)
        if not m:
            continue
        epoch = float(m.group(1))
        for k, v in _PIPE_KV.findall(line[m.end() - 1 :] + "|"):
            cols.add(k, epoch, float(v))
    return "epoch"


def _yolo(lines: Iterator[str], cols: _Columns) -> str:
    train_names: list[str] = []
    rows: dict[int, list[float]] = {}
    val: dict[int, list[float]] = {}
    epoch = -1
    for line in lines:
        words = line.split()
        if "Epoch" in words and any(w.endswith("_loss") for w in words):
            train_names = [f"train/{w}" if w.endswith("_loss") else w for w in words[1:]]
            continue
        m = _YOLO_ROW.match(line)
        if m and train_names:
            epoch = int(m.group(1))
            values = [m.group(3), *m.group(4).split()]
            nums: list[float] = []
            for v in values[: len(train_names)]:
                v = v.rstrip("G")
                if not re.fullmatch(NUM, v):
                    break
                nums.append(float(v))
            rows[epoch] = nums  # a progress bar's last update wins
            continue
        if words[:1] == ["all"] and len(words) >= 7 and epoch >= 0:
            tail = words[-4:]
            if all(re.fullmatch(NUM, v) for v in tail):
                val[epoch] = [float(v) for v in tail]
    for ep, nums in rows.items():
        for name, v in zip(train_names, nums, strict=False):
            if name.startswith("train/"):
                cols.add(name, float(ep), v)
    for ep, nums in val.items():
        for name, v in zip(YOLO_VAL_NAMES, nums, strict=True):
            cols.add(name, float(ep), v)
    return "epoch"


_READERS = {"mmlab": _mmlab, "irstd": _irstd, "centernet": _centernet, "yolo": _yolo}


def read_text_log(p: Path) -> RawLog:
    """Read a plain-text training log (style sniffed from its content) into a ``RawLog``.

    A file in none of the known styles -> InputError naming it and the styles read.
    """
    check_log_file(p)
    style = sniff_text_log(p)
    if style is None:
        raise InputError(
            f"{p}: unknown log format: a text log in none of the styles convdiag reads "
            "(mmdetection/mmengine, "
            "BasicIRSTD/DNANet, CenterNet log.txt, YOLOv5/ultralytics console output)"
        )
    notes: list[str] = [f"text log read as {style} style"]
    cols = _Columns()
    x_name = _READERS[style](_lines(p, notes), cols)
    return RawLog(f"text-{style}", str(p), [str(p)], cols.series(), x_name, notes)
