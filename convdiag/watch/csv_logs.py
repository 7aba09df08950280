"""CSV training logs: Lightning ``metrics.csv``, ultralytics ``results.csv`` and any CSV.

All three are one header line and one row per logged event. Lightning's rows are sparse
(train and validation keys at different steps, empty cells between); ultralytics pads
headers and values with spaces and has no step column (one row per epoch). Cells are
stripped; an empty cell is missing, while ``nan``/``inf`` stay as non-finite values.
"""

from __future__ import annotations

import csv
import io
import math
from array import array
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from convdiag.errors import InputError
from convdiag.watch.progress import EVERY, tick
from convdiag.watch.table import RawLog, Series

STEP_COLUMNS = ("step", "global_step", "trainer/global_step", "iter", "iteration", "it")
EPOCH_COLUMNS = ("epoch", "epochs")


def _number(cell: str) -> float | None:
    """float of a cell; None when empty; raises ValueError when not a number."""
    if cell == "":
        return None
    return float(cell)  # accepts nan, inf, -inf, infinity in any case


MAX_LOG_BYTES = 4 * 2**30


def check_log_file(path: Path) -> None:
    """InputError unless ``path`` is a regular file of at most ``MAX_LOG_BYTES`` (devices,
    FIFOs and sockets are refused: reading them may never end)."""
    import stat

    try:
        st = path.stat()
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except OSError as e:
        raise InputError(f"{path}: cannot read ({e.strerror or e})") from None
    if not stat.S_ISREG(st.st_mode):
        raise InputError(f"{path}: not a regular file (a device, FIFO or socket)")
    if st.st_size > MAX_LOG_BYTES:
        raise InputError(
            f"{path}: {st.st_size / 2**30:.1f} GiB, over the {MAX_LOG_BYTES >> 30} GiB limit"
        )


def open_log(path: Path) -> io.TextIOWrapper:
    """Open a log file (checked by ``check_log_file``) for streaming UTF-8 text reads."""
    check_log_file(path)
    try:
        return path.open(encoding="utf-8-sig", newline="")
    except OSError as e:
        raise InputError(f"{path}: cannot read ({e.strerror or e})") from None


def _rows(path: Path) -> tuple[list[str], Iterator[list[str]]]:
    """(header, the other non-blank rows), cells stripped, streamed from the file."""
    f = open_log(path)

    def gen() -> Iterator[list[str]]:
        with f:
            try:
                for n, r in enumerate(reader, 1):
                    if n % EVERY == 0:
                        tick(f.buffer.tell())  # type: ignore[attr-defined]
                    if any(c.strip() for c in r):
                        yield [c.strip() for c in r]
            except csv.Error as e:
                raise InputError(f"{path}: not a valid CSV file ({e})") from None
            except UnicodeDecodeError as e:
                raise InputError(f"{path}: cannot read as text ({e})") from None

    reader = csv.reader(f)
    rows = gen()
    header = next(rows, None)
    if header is None:
        raise InputError(f"{path}: empty log (no header line)")
    return header, rows


def _pick_x(header: list[str], x_column: str | None, path: Path) -> tuple[int | None, str]:
    """Index of the x column and what it counts ("step", "epoch" or "row")."""
    lower = [h.lower() for h in header]
    if x_column is not None:
        want = x_column.strip().lower()
        if want not in lower:
            raise InputError(
                f"--map step={x_column}: no column {x_column!r} in {path} "
                f"(columns: {', '.join(header)})"
            )
        k = lower.index(want)
        return k, "epoch" if want in EPOCH_COLUMNS else "step"
    for names, kind in ((STEP_COLUMNS, "step"), (EPOCH_COLUMNS, "epoch")):
        for n in names:
            if n in lower:
                return lower.index(n), kind
    return None, "row"


def read_csv_log(path: str | Path, fmt: str = "csv", x_column: str | None = None) -> RawLog:
    """Every numeric column of a CSV log as a ``Series`` over its step (or epoch, or row).

    fmt: "lightning", "ultralytics" or "csv" (only recorded). x_column: the column counting
    steps (``--map step=COLUMN``); default the first of step, global_step, iter, ... then
    epoch, then the row number. A column with any non-numeric cell is not a metric and is
    skipped (noted). Rows without an x value are dropped (noted).
    """
    p = Path(path)
    header, rows = _rows(p)
    if len(set(header)) != len(header):
        dup = sorted({h for h in header if header.count(h) > 1})
        raise InputError(f"{p}: duplicate column names {', '.join(dup)}")
    xk, x_name = _pick_x(header, x_column, p)
    notes: list[str] = []
    ncol = len(header)
    # one float64 array per column, NaN for an empty cell and for a literal nan alike;
    # `present` keeps which cells were given (a literal nan is a value, empty is missing)
    cols = [array("d") for _ in range(ncol)]
    present = [array("b") for _ in range(ncol)]
    numeric = [True] * ncol
    n = 0
    for r in rows:
        if len(r) > ncol:
            raise InputError(
                f"{p}: a row has {len(r)} cells for {ncol} header columns "
                "(was the header rewritten mid-run? read the newest file)"
            )
        n += 1
        for k in range(ncol):
            if not numeric[k]:
                continue
            cell = r[k] if k < len(r) else ""
            try:
                v = _number(cell)
            except ValueError:
                numeric[k] = False
                cols[k], present[k] = array("d"), array("b")  # free it
                continue
            cols[k].append(math.nan if v is None else v)
            present[k].append(v is not None)
    skipped = [h for h, ok in zip(header, numeric, strict=True) if not ok]
    if skipped:
        notes.append(f"non-numeric columns skipped: {', '.join(skipped)}")
    if xk is not None and not numeric[xk]:
        raise InputError(f"{p}: column {header[xk]!r} holds non-numbers; it cannot be the step")
    if xk is None:
        x = np.arange(n, dtype=np.float64)
    else:
        x = np.frombuffer(cols[xk], dtype=np.float64).copy()
        x[np.frombuffer(present[xk], dtype=np.int8) == 0] = math.nan
        missing = int(np.isnan(x).sum())
        if missing:
            notes.append(f"{missing} rows without a {header[xk]} value dropped")
    series: dict[str, Series] = {}
    for k, name in enumerate(header):
        if not numeric[k] or k == xk or not name:
            continue
        keep = np.frombuffer(present[k], dtype=np.int8).astype(bool)
        keep &= np.isfinite(x)
        if keep.any():
            vals = np.frombuffer(cols[k], dtype=np.float64)
            series[name] = Series(name, x[keep], vals[keep])
            del vals
        cols[k], present[k] = array("d"), array("b")  # the copy is kept: free the column
    return RawLog(fmt, str(p), [str(p)], series, x_name, notes)
