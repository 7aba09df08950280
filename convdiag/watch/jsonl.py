"""JSON-lines training logs: mmengine ``scalars.json`` / ``vis_data/<ts>.json`` and mmdet 2.x
``<ts>.log.json`` (also a plain JSON array of such objects).

- mmengine: train lines hold ``lr``, ``loss``, ``loss_*``, ``iter``, ``step`` (and ``epoch``
  in epoch-based runs); validation lines hold the metrics and ``step``, which counts
  *epochs* when metrics are logged by epoch (mmengine's default). Such steps are moved to
  the last training step of that epoch so every series shares one axis; validation steps
  that otherwise lie behind the training iterations (``"step": 0`` after iteration 500)
  are moved to the preceding training iteration.
- mmdet 2.x: each line has ``mode`` (train/val), ``epoch`` and ``iter`` (counted within the
  epoch); the first line is environment info without them and is skipped. The step is
  (epoch - 1) x iterations per epoch + iter; validation lines sit at the end of their epoch.
  Keys of validation lines get a ``val/`` prefix unless they already hold a ``/``.

Booleans and non-numbers are ignored; JSON ``NaN``/``Infinity`` stay non-finite.
"""

from __future__ import annotations

import json
import math
from array import array
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from convdiag.errors import InputError
from convdiag.watch.csv_logs import open_log
from convdiag.watch.progress import EVERY, tick
from convdiag.watch.table import RawLog, Series

X_KEYS = ("step", "global_step", "iter", "iteration")
TRAIN_MARKS = ("lr", "base_lr")


def _parse(text: str) -> Any:
    """json.loads with every integer read as a float: a 5,000-digit integer is a huge number
    (inf), never Python's int-conversion error; nesting past Python's recursion is an error."""
    try:
        return json.loads(text, parse_int=float)
    except RecursionError:
        raise json.JSONDecodeError("nested too deeply", text[:50], 0) from None


class Line:
    """One log line kept compact: its numeric keys (a tuple shared by every line with the
    same keys), their values as float64, and ``mode`` (mmdet 2.x) when it is a string.
    Other values are dropped at once, so memory grows by about 8 bytes per number."""

    __slots__ = ("keys", "mode", "vals")
    _KEYS: ClassVar[dict[tuple[str, ...], tuple[str, ...]]] = {}  # cleared for each file

    def __init__(self, d: dict[str, Any]) -> None:
        pairs = [(str(k), f) for k, v in d.items() if (f := _num(v)) is not None]
        keys = tuple(k for k, _ in pairs)
        self.keys = Line._KEYS.setdefault(keys, keys) if len(Line._KEYS) < 10_000 else keys
        self.vals = array("d", (f for _, f in pairs))
        m = d.get("mode")
        self.mode = m if isinstance(m, str) else None

    def get(self, key: str, default: Any = None) -> Any:
        """The value of ``key`` (``mode`` is the string), else ``default``."""
        if key == "mode":
            return self.mode if self.mode is not None else default
        try:
            return self.vals[self.keys.index(key)]
        except ValueError:
            return default

    def __contains__(self, key: object) -> bool:
        return key in self.keys or (key == "mode" and self.mode is not None)

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys)

    def __getitem__(self, key: str) -> Any:
        v = self.get(key, _MISSING)
        if v is _MISSING:
            raise KeyError(key)
        return v

    def items(self) -> Iterator[tuple[str, float]]:
        """(key, value) of the numeric keys."""
        return zip(self.keys, self.vals, strict=True)


_MISSING = object()


def _load_lines(p: Path) -> tuple[list[Any], list[str]]:
    notes: list[str] = []
    Line._KEYS.clear()
    with open_log(p) as f:
        try:
            first = ""
            for first in iter(lambda: f.read(1), ""):
                if not first.isspace():
                    break
            f.seek(0)
            if first == "[":  # a JSON array of objects: parsed whole
                try:
                    data = _parse(f.read())
                except json.JSONDecodeError as e:
                    raise InputError(f"{p}: not valid JSON ({e.msg}, line {e.lineno})") from None
                if not isinstance(data, list) or not all(isinstance(d, dict) for d in data):
                    raise InputError(f"{p}: a JSON array of objects was expected")
                return [Line(d) for d in data], notes
            out: list[Line] = []
            pending: tuple[int, str] | None = None  # a bad line is fatal unless it is the last
            for lineno, ln in enumerate(f, start=1):
                if lineno % EVERY == 0:
                    tick(f.buffer.tell())  # type: ignore[attr-defined]
                if not ln.strip():
                    continue
                if pending is not None:
                    raise InputError(f"{p}: line {pending[0]} is not JSON ({pending[1]})")
                try:
                    d = _parse(ln)
                except json.JSONDecodeError as e:
                    pending = (lineno, e.msg)
                    continue
                if not isinstance(d, dict):
                    raise InputError(f"{p}: line {lineno} is not a JSON object")
                out.append(Line(d))
        except UnicodeDecodeError as e:
            raise InputError(f"{p}: cannot read as text ({e})") from None
    if pending is not None:
        if not out:
            raise InputError(f"{p}: line {pending[0]} is not JSON ({pending[1]})")
        notes.append(f"line {pending[0]}: incomplete last line skipped")  # a run still writing
    return out, notes


def _num(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    return float(v)


def _x_key(lines: list[dict[str, Any]], x_key: str | None, p: Path) -> str | None:
    if x_key is not None:
        if not any(x_key in d for d in lines):
            raise InputError(f"--map step={x_key}: no line of {p} has the key {x_key!r}")
        return x_key
    for k in X_KEYS:
        if any(k in d for d in lines):
            return k
    return None


def split_runs(rows: list[tuple[float, dict[str, Any], bool]]) -> list[list[Any]]:
    """Rows of one file cut where a run restarts: a training row whose step is below the
    previous training row's (several runs appended to one ``scalars.json``)."""
    runs: list[list[Any]] = [[]]
    last = -math.inf
    for row in rows:
        xv, _d, tr = row
        if tr and xv < last and runs[-1]:
            runs.append([])
        if tr:
            last = xv
        runs[-1].append(row)
    return runs


def _pick_run(
    rows: list[tuple[float, dict[str, Any], bool]], run: int | None, p: Path, notes: list[str]
) -> tuple[list[tuple[float, dict[str, Any], bool]], int, int]:
    runs = split_runs(rows)
    k = len(runs) if run is None else run
    if not 1 <= k <= len(runs):
        raise InputError(f"--run {run}: {p} holds {len(runs)} run(s)")
    if len(runs) > 1:
        notes.append(
            f"{len(runs)} runs in this file (steps restart); read run {k} "
            f"({'the last' if run is None else 'as asked'}; --run K picks another)"
        )
    return runs[k - 1], len(runs), k


def read_jsonl_log(path: str | Path, x_key: str | None = None, run: int | None = None) -> RawLog:
    """Every numeric key of a JSON-lines log as a ``Series`` over the global step.

    x_key: the key counting steps (``--map step=KEY``); default step, global_step, iter,
    iteration (mmdet 2.x: derived from epoch and iter, see the module docstring), else
    epoch, else the line number. A file whose training steps restart holds several runs
    (``split_runs``): ``run`` (1-based) picks one, default the last; out of range ->
    InputError naming ``--run``.
    """
    p = Path(path)
    lines, notes = _load_lines(p)
    if any("mode" in d for d in lines) and x_key is None:
        return _read_mmdet2(p, lines, notes)
    xk = _x_key(lines, x_key, p)
    x_name = "step"
    if xk is None:
        xk = "epoch" if any("epoch" in d for d in lines) else None
        x_name = "epoch" if xk else "row"
    rows: list[tuple[float, dict[str, Any], bool]] = []
    skipped = 0
    for i, d in enumerate(lines):
        xv = _num(d.get(xk)) if xk else float(i)
        if xv is None:
            skipped += 1
            continue
        is_train = any(k in d for k in TRAIN_MARKS) or any(str(k).startswith("loss") for k in d)
        rows.append((xv, d, is_train))
    if skipped:
        notes.append(f"{skipped} lines without {xk!r} skipped")
    rows, n_runs, k = _pick_run(rows, run, p, notes)
    # mmengine logs validation metrics by epoch: move them to the epoch's last train step
    epoch_end: dict[float, float] = {}
    for xv, d, tr in rows:
        e = _num(d.get("epoch"))
        if tr and e is not None and xk != "epoch":
            epoch_end[e] = max(epoch_end.get(e, -math.inf), xv)
    val_x = [xv for xv, _, tr in rows if not tr]
    if epoch_end and val_x and all(float(v).is_integer() and v in epoch_end for v in val_x):
        rows = [(xv if tr else epoch_end[xv], d, tr) for xv, d, tr in rows]
        notes.append("validation steps counted epochs: placed at each epoch's last train step")
    else:
        rows = _val_after_train(rows, notes)
    series = _series(rows, {xk} if xk else set())
    return RawLog("jsonl", str(p), [str(p)], series, x_name, notes, runs=n_runs, run=k)


def _val_after_train(
    rows: list[tuple[float, dict[str, Any], bool]], notes: list[str]
) -> list[tuple[float, dict[str, Any], bool]]:
    """Validation rows whose step lies behind the training row before them (an
    iteration-based run logging ``"step": 0`` or an epoch after iterations 500, 1000, ...)
    are placed at that training row's step, so their symptoms start where they were
    measured, not at 0."""
    out, last, moved = [], None, 0
    for xv, d, tr in rows:
        if tr:
            last = xv
        elif last is not None and xv < last:
            xv, moved = last, moved + 1
        out.append((xv, d, tr))
    if moved:
        notes.append(
            f"{moved} validation rows had steps behind the training iterations: placed at "
            "the preceding training iteration"
        )
    return out


def _series(rows: list[tuple[float, Any, bool]], skip: set[str]) -> dict[str, Series]:
    xs: dict[str, array[float]] = defaultdict(lambda: array("d"))
    vs: dict[str, array[float]] = defaultdict(lambda: array("d"))
    for xv, d, _ in rows:
        for k, v in d.items():
            f = _num(v)
            if f is None or k in skip:
                continue
            xs[k].append(xv)
            vs[k].append(f)
    return {k: Series(k, np.frombuffer(xs[k]), np.frombuffer(vs[k])) for k in xs}


def _read_mmdet2(p: Path, lines: list[dict[str, Any]], notes: list[str]) -> RawLog:
    data = [d for d in lines if _num(d.get("epoch")) is not None]
    if len(data) < len(lines):
        notes.append(f"{len(lines) - len(data)} lines without an epoch skipped (environment info)")
    train = [d for d in data if d.get("mode", "train") == "train"]
    ipe = max((_num(d.get("iter")) or 0.0 for d in train), default=0.0)
    rows: list[tuple[float, dict[str, Any], bool]] = []
    for d in data:
        e = float(d["epoch"])
        if d.get("mode", "train") == "train" and ipe > 0:
            xv = (e - 1) * ipe + (_num(d.get("iter")) or 0.0)
            rows.append((xv, d, True))
        else:
            xv = e * ipe if ipe > 0 else e
            renamed = {(k if "/" in k else f"val/{k}"): v for k, v in d.items()}
            rows.append((xv, renamed, False))
    name = "step" if ipe > 0 else "epoch"
    if ipe > 0:
        notes.append(f"mmdet 2.x log: step = (epoch - 1) x {ipe:g} iterations + iter")
    skip = {"epoch", "iter", "val/epoch", "val/iter"}
    return RawLog("jsonl", str(p), [str(p)], _series(rows, skip), name, notes)
