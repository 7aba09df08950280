"""TensorBoard event files read without TensorBoard: TFRecord framing and the Event protobuf.

A file is a sequence of records: uint64 length (little-endian), uint32 masked CRC-32C of
the length bytes, the data, uint32 masked CRC-32C of the data. Each record is an ``Event``
message; the fields read are ``step`` (2, int64) and ``summary`` (5) -> ``value`` (1,
repeated) -> ``tag`` (1, string) with either ``simple_value`` (2, float; old-style
scalars) or ``tensor`` (8, a TensorProto holding one float or double; new-style scalars
of ``SummaryWriter(new_style=True)`` and TF2). Histograms, images and the rest are
skipped. The length CRC is checked (a mismatch ends the read: the rest of the file is not
framed); the data CRC is not (pure-Python CRC of every byte costs seconds on long runs).
A record cut short at the end (a run still writing) is skipped with a note.
"""

from __future__ import annotations

import struct
from collections import defaultdict
from pathlib import Path

import numpy as np

from convdiag.errors import InputError
from convdiag.watch.table import RawLog, Series

_CRC_TABLE: list[int] = []
for _n in range(256):
    _c = _n
    for _ in range(8):
        _c = (_c >> 1) ^ 0x82F63B78 if _c & 1 else _c >> 1
    _CRC_TABLE.append(_c)

DT_FLOAT, DT_DOUBLE = 1, 2


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli, reflected polynomial 0x82F63B78) of ``data``."""
    crc = 0xFFFFFFFF
    for b in data:
        crc = _CRC_TABLE[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def masked_crc32c(data: bytes) -> int:
    """TFRecord's masked CRC: rotate right by 15 bits and add 0xA282EAD8 (mod 2^32)."""
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


# --------------------------------------------------------------------------- protobuf


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result, shift = 0, 0
    while True:
        if pos >= len(buf):
            raise ValueError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 70:
            raise ValueError("varint too long")


def _fields(buf: bytes) -> list[tuple[int, int, int | bytes]]:
    """(field number, wire type, value) of one message: ints for varint/fixed, bytes for
    length-delimited and for fixed32/fixed64 (raw little-endian)."""
    out: list[tuple[int, int, int | bytes]] = []
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        field, wt = key >> 3, key & 7
        value: int | bytes
        if wt == 0:
            value, pos = _varint(buf, pos)
        elif wt == 1:
            value, pos = buf[pos : pos + 8], pos + 8
        elif wt == 2:
            n, pos = _varint(buf, pos)
            value, pos = buf[pos : pos + n], pos + n
        elif wt == 5:
            value, pos = buf[pos : pos + 4], pos + 4
        else:
            raise ValueError(f"unsupported wire type {wt}")
        if pos > len(buf):
            raise ValueError("truncated field")
        out.append((field, wt, value))
    return out


def _tensor_scalar(buf: bytes) -> float | None:
    """The single float/double of a TensorProto, or None when it is anything else."""
    dtype, vals = 0, []
    content = b""
    for f, _, v in _fields(buf):
        if f == 1 and isinstance(v, int):
            dtype = v
        elif f == 4 and isinstance(v, bytes):
            content = v
        elif f == 5 and isinstance(v, bytes):  # float_val: packed (wt 2) or single (wt 5)
            vals += list(struct.unpack(f"<{len(v) // 4}f", v))
        elif f == 6 and isinstance(v, bytes):  # double_val: packed (wt 2) or single (wt 1)
            vals += list(struct.unpack(f"<{len(v) // 8}d", v))
    if content and dtype in (DT_FLOAT, DT_DOUBLE):
        width, code = (4, "f") if dtype == DT_FLOAT else (8, "d")
        vals = list(struct.unpack(f"<{len(content) // width}{code}", content))
    if dtype not in (DT_FLOAT, DT_DOUBLE) or len(vals) != 1:
        return None
    return float(vals[0])


def _summary_scalars(buf: bytes) -> list[tuple[str, float]]:
    out = []
    for f, _, v in _fields(buf):
        if f != 1 or not isinstance(v, bytes):
            continue
        tag, value = None, None
        for g, _, w in _fields(v):
            if g == 1 and isinstance(w, bytes):
                tag = w.decode("utf-8", "replace")
            elif g == 2 and isinstance(w, bytes):
                value = struct.unpack("<f", w)[0]
            elif g == 8 and isinstance(w, bytes):
                value = _tensor_scalar(w)
        if tag is not None and value is not None:
            out.append((tag, float(value)))
    return out


def parse_event(data: bytes) -> tuple[int | None, list[tuple[str, float]]]:
    """(step, [(tag, value), ...]) of one serialized Event (step None when absent)."""
    step: int | None = None
    scalars: list[tuple[str, float]] = []
    for f, _, v in _fields(data):
        if f == 2 and isinstance(v, int):
            step = v - (1 << 64) if v >= 1 << 63 else v
        elif f == 5 and isinstance(v, bytes):
            scalars += _summary_scalars(v)
    return step, scalars


# --------------------------------------------------------------------------- files


def read_records(path: str | Path) -> tuple[list[bytes], list[str]]:
    """The data of every TFRecord in ``path`` and notes on a cut or corrupt tail."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise InputError(f"{p}: cannot read ({e.strerror})") from None
    out: list[bytes] = []
    notes: list[str] = []
    pos = 0
    while pos < len(raw):
        if pos + 12 > len(raw):
            notes.append(f"{p.name}: incomplete record at byte {pos} skipped")
            break
        head = raw[pos : pos + 8]
        (n,) = struct.unpack("<Q", head)
        (crc,) = struct.unpack("<I", raw[pos + 8 : pos + 12])
        if crc != masked_crc32c(head):
            if pos == 0:
                raise InputError(f"{p}: not a TensorBoard event file (bad record header)")
            notes.append(f"{p.name}: corrupt record header at byte {pos}; the rest is skipped")
            break
        end = pos + 12 + n + 4
        if end > len(raw):
            notes.append(f"{p.name}: incomplete record at byte {pos} skipped")
            break
        out.append(raw[pos + 12 : pos + 12 + n])
        pos = end
    return out, notes


def _writer_of(f: Path) -> tuple[float, str]:
    """(creation time, writer key) from ``events.out.tfevents.{time}.{host}.{pid}.{n}``.

    The writer key is host and pid (``add_scalars`` sub-writers share their run's); a
    name without a pid (TensorFlow's ``...{time}.{host}``) keys by host and folder.
    """
    rest = f.name[len("events.out.tfevents.") :].split(".")
    try:
        t = float(rest[0])
    except (ValueError, IndexError):
        t = 0.0
    if len(rest) >= 4 and rest[-2].isdigit():
        return t, ".".join(rest[1:-2]) + ":" + rest[-2]
    return t, ".".join(rest[1:]) + ":" + str(f.parent)


def split_tb_runs(files: list[Path]) -> list[list[Path]]:
    """Event files grouped into runs, oldest run first: one run per writing process (host
    and pid of the file name), so a folder holding several runs is not merged."""
    groups: dict[str, list[tuple[float, Path]]] = defaultdict(list)
    for f in files:
        t, key = _writer_of(f)
        groups[key].append((t, f))
    runs = sorted(groups.values(), key=lambda g: (min(t for t, _ in g), str(g[0][1])))
    return [[f for _, f in sorted(g, key=lambda tf: (tf[0], str(tf[1])))] for g in runs]


def read_tensorboard(files: list[Path], root: Path | None = None, run: int | None = None) -> RawLog:
    """Scalars of one run of event files as series over the step.

    The files are split into runs (``split_tb_runs``); ``run`` (1-based) picks one, default
    the last (out of range: InputError naming ``--run``). Files in sub-folders of the run's
    top folder (``SummaryWriter.add_scalars`` writes one per curve) get their folder as a
    tag prefix: ``loss_train/loss``. A tag written twice at a step keeps both points; the
    later one is drawn last.
    """
    runs = split_tb_runs(files)
    k = len(runs) if run is None else run
    if not 1 <= k <= len(runs):
        raise InputError(f"--run {run}: {root or files[0]} holds {len(runs)} run(s)")
    chosen = runs[k - 1]
    base = min((f.parent for f in chosen), key=lambda d: (len(d.parts), str(d)))
    xs: dict[str, list[float]] = defaultdict(list)
    vs: dict[str, list[float]] = defaultdict(list)
    notes: list[str] = []
    if len(runs) > 1:
        notes.append(
            f"{len(runs)} runs in these event files (one per writing process); read run {k} "
            f"({base}), pass --run K for another"
        )
    for f in chosen:
        records, n = read_records(f)
        notes += n
        prefix = ""
        if f.parent != base and f.parent.is_relative_to(base):
            prefix = f.parent.relative_to(base).as_posix() + "/"
        for i, data in enumerate(records):
            try:
                step, scalars = parse_event(data)
            except (ValueError, struct.error) as e:
                notes.append(f"{f.name}: record {i} is not an Event ({e}); skipped")
                continue
            for tag, value in scalars:
                xs[prefix + tag].append(float(step or 0))
                vs[prefix + tag].append(value)
    series = {key: Series(key, np.array(xs[key]), np.array(vs[key])) for key in xs}
    path = str(root if root is not None else files[0])
    return RawLog(
        "tensorboard", path, [str(f) for f in chosen], series, "step", notes, len(runs), k
    )
