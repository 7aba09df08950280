"""Find the training log inside a path and read it with the reader of its format."""

from __future__ import annotations

import fnmatch
import os
from pathlib import Path

from convdiag.errors import InputError
from convdiag.watch.table import RawLog

FORMATS = ("auto", "lightning", "tensorboard", "jsonl", "ultralytics", "csv", "text")
# format -> file-name patterns, in the order a folder search prefers them
PATTERNS: dict[str, tuple[str, ...]] = {
    "lightning": ("metrics.csv",),
    "ultralytics": ("results.csv",),
    "tensorboard": ("events.out.tfevents.*",),
    "jsonl": ("scalars.json", "*.log.json", "*.jsonl", "*.json"),
    "csv": ("history.csv", "*.csv"),
    "text": ("*.log", "log.txt", "*.txt", "*.out"),
}
MAX_DEPTH = 6
SKIP_DIRS = {"checkpoints", "weights", "__pycache__", "node_modules"}


def format_of(path: Path) -> str | None:
    """The log format a file name says, or None."""
    for fmt, pats in PATTERNS.items():
        if any(fnmatch.fnmatch(path.name, p) for p in pats):
            return fmt
    return None


def _walk(root: Path) -> list[Path]:
    out: list[Path] = []
    base = len(root.parts)
    for d, dirs, files in os.walk(root):
        dirs[:] = sorted(x for x in dirs if not x.startswith(".") and x not in SKIP_DIRS)
        if len(Path(d).parts) - base >= MAX_DEPTH:
            dirs[:] = []
        # regular files only: a FIFO or device in a run folder would block a content sniff
        out += [Path(d) / f for f in sorted(files) if not f.startswith(".")]
    return [f for f in out if f.is_file()]


def _json_ok(p: Path) -> bool:
    """A *.json found in a folder is a log only when it is JSON lines (or mmengine's)."""
    if p.name == "scalars.json" or p.name.endswith((".log.json", ".jsonl")):
        return True
    if "vis_data" in p.parts:
        return True
    try:
        with p.open("rb") as f:
            first = f.readline(1 << 16).strip()
    except OSError:
        return False
    return first.startswith(b"{") and first.endswith(b"}")


def find_log(path: str | Path, log_format: str = "auto") -> tuple[str, list[Path], list[str]]:
    """(format, files, notes) of the log at ``path`` (a file, or a folder searched).

    In a folder: metrics.csv, then results.csv, then TensorBoard event files (all of them,
    merged), then JSON lines, then convdiag's history.csv, then text logs whose content is
    in a known style; among several files of one kind the newest is read (noted). A file is
    read as a text log when its content is in a known style, whatever its name.
    """
    if log_format not in FORMATS:
        raise InputError(f"--log-format {log_format!r}: use {', '.join(FORMATS)}")
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: no such file or directory")
    if p.is_file():
        fmt = format_of(p) if log_format == "auto" else log_format
        if log_format == "auto" and fmt in (None, "text", "csv", "jsonl"):
            from convdiag.watch.text_logs import sniff_text_log

            if sniff_text_log(p) is not None:  # the content says text log, whatever the name
                fmt = "text"
        if fmt is None:
            raise InputError(
                f"{p}: unknown log format (file name); pass --log-format {'|'.join(FORMATS[1:])}"
            )
        return fmt, [p], []
    files = _walk(p)
    order = list(PATTERNS) if log_format == "auto" else [log_format]
    for fmt in order:
        pats = PATTERNS[fmt]
        if fmt == "csv" and log_format == "auto":
            pats = ("history.csv",)  # convdiag train's; any other CSV is too vague to guess
        hits = [f for f in files if any(fnmatch.fnmatch(f.name, pat) for pat in pats)]
        if fmt == "jsonl":
            hits = [f for f in hits if _json_ok(f)]
        if fmt == "text":
            from convdiag.watch.text_logs import sniff_text_log

            hits = [f for f in hits if sniff_text_log(f) is not None]
        if not hits:
            continue
        if fmt == "tensorboard":
            return fmt, hits, []
        newest = max(hits, key=lambda f: (f.stat().st_mtime, str(f)))
        notes = []
        if len(hits) > 1:
            notes.append(
                f"{len(hits)} {fmt} logs under {p}; read the newest, {newest} "
                "(pass a file to read another)"
            )
        return fmt, [newest], notes
    looked = ", ".join(pat for f in order for pat in PATTERNS[f] if f != "csv" or len(order) == 1)
    if log_format == "auto":
        looked += ", history.csv"
    raise InputError(f"{p}: no training log found (looked for {looked})")


def read_log(
    path: str | Path, log_format: str = "auto", x_column: str | None = None, run: int | None = None
) -> RawLog:
    """Find and read the log at ``path``. x_column: ``--map step=COLUMN`` (CSV and JSON).

    run: which run of a JSON-lines file or of a folder of event files holding several
    (1-based; default the last).
    """
    from convdiag.watch.csv_logs import read_csv_log
    from convdiag.watch.jsonl import read_jsonl_log
    from convdiag.watch.tensorboard import read_tensorboard
    from convdiag.watch.text_logs import read_text_log

    fmt, files, notes = find_log(path, log_format)
    root = Path(path)
    if fmt == "tensorboard":
        raw = read_tensorboard(files, root if root.is_dir() else None, run)
    elif fmt == "jsonl":
        raw = read_jsonl_log(files[0], x_column, run)
    elif fmt == "text":
        raw = read_text_log(files[0])
    else:
        raw = read_csv_log(files[0], fmt, x_column)
    raw.notes = notes + raw.notes
    if run is not None and not 1 <= run <= raw.runs:
        raise InputError(f"--run {run}: {path} holds {raw.runs} run(s)")
    if not raw.columns:
        raise InputError(f"{raw.files[0] if len(raw.files) == 1 else path}: no numeric values")
    return raw
