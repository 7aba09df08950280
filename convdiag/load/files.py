"""Atomic file output: every file convdiag writes goes through a temporary file and a rename
(JSON, CSV, text, bytes, PNG figures); the bottom layer, so every stage may write. A
command's files form one output set (``output_set``): all are written or none is left."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import stat
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from convdiag.errors import InputError
from convdiag.load.reads import cause as _cause


def prepare_out_dir(
    out: str | os.PathLike[str], run_files: Sequence[str] = (), hint: str = "", data: bool = False
) -> Path:
    """Create ``out`` (and parents) and check that it is writable; InputError otherwise.

    Inside an output set the folder is locked for the set (``.convdiag.lock``: a second
    process refuses, a dead process's lock is replaced) and may not be, or lie inside, a
    dataset folder the set reads. With ``run_files``, a folder already holding one of them
    is refused (``hint`` says how to continue: e.g. --resume or --force). ``data``: the
    folder is a dataset being written (synth), which the same command may then read.
    """
    path = Path(out)
    s = _current()
    resolved = path.resolve()
    for folder, what in s.inputs if s and not data else []:
        _refuse_inside(resolved, str(out), folder, what)
    held = [n for n in run_files if (path / n).exists()]
    if held:
        raise InputError(f"--out {out} already holds a run ({', '.join(held)}){hint}")
    make_dir(path)
    if not path.is_dir() or not os.access(path, os.W_OK | os.X_OK):
        raise InputError(f"--out {out}: not a writable directory")
    if s is not None:
        if not data:
            s.outs.append((resolved, str(out)))
        _lock(path, str(out))
    return path


def _read_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _read_umask()


def _file_mode(target: Path) -> int:
    """Permissions of the new file: those of the file it replaces, else what ``open`` would
    give (0o666 less the umask); mkstemp alone would leave the owner-only 0o600."""
    try:
        return stat.S_IMODE(target.stat().st_mode)
    except OSError:
        return 0o666 & ~_UMASK


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename.

    The file keeps the permissions of the one it replaces (new files: 0o666 less the umask).
    A write that fails (no space, a directory in the way, permission) raises InputError
    naming the path and the cause; the old file stays whole. Inside an output set the file
    is part of the set (removed, or the old one put back, if the set fails).
    """
    target = Path(path)
    if target.is_dir():
        raise InputError(f"{target}: cannot write (it is a directory)")
    try:
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    except OSError as e:
        raise InputError(f"{target}: cannot write ({_cause(e)})") from None
    try:
        with os.fdopen(fd, "wb") as f:
            if hasattr(os, "fchmod"):
                os.fchmod(f.fileno(), _file_mode(target))
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        _record(target)
        os.replace(tmp, target)
    except BaseException as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(e, OSError):
            raise InputError(f"{target}: cannot write ({_cause(e)})") from None
        raise


def copy_file(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
    """Copy ``src`` to ``dst`` atomically (``atomic_write_bytes``; part of the output set)."""
    try:
        data = Path(src).read_bytes()
    except OSError as e:
        raise InputError(f"{src}: cannot read ({_cause(e)})") from None
    atomic_write_bytes(dst, data)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write UTF-8 text atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def to_json(data: Any) -> str:
    """Serialise plain data (dicts, lists, numbers, numpy scalars) to indented JSON.

    Non-finite floats are written as null so that any JSON parser reads the file.
    """
    return json.dumps(_finite(data), indent=2, default=_json_default) + "\n"


def _finite(obj: Any) -> Any:
    if isinstance(obj, float | np.floating):
        return float(obj) if np.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj


def csv_text(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    """Rows as CSV text with ``columns`` as header; floats to 6 significant digits, and
    None or non-finite values as empty cells."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(columns), extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _cell(row.get(k)) for k in columns})
    return buf.getvalue()


def _cell(v: Any) -> Any:
    if isinstance(v, float | np.floating):
        return "" if not math.isfinite(v) else f"{v:.6g}"
    return "" if v is None else v


def write_json(path: str | os.PathLike[str], data: Any) -> None:
    """Write ``data`` as JSON atomically."""
    atomic_write_text(path, to_json(data))


def save_figure(fig: Any, path: str | os.PathLike[str], dpi: int = 110) -> None:
    """Save a matplotlib figure as PNG atomically and close it."""
    import io

    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


# --------------------------------------------------------------------------- output sets
#
# A command's outputs form one set: all of them are written, or none is left behind. Inside
# ``output_set()`` every ``atomic_write_bytes`` is recorded; a file it replaces is kept as a
# hidden hard link (``.NAME.<random>.bak``) until the set ends. When the set fails, the new
# files are removed, the replaced ones put back, and the folders ``prepare_out_dir`` created
# are removed again; when it succeeds the backups are deleted. ``prepare_out_dir`` also takes
# a lock in each output folder and refuses a folder inside a dataset the set reads.

LOCK_NAME = ".convdiag.lock"


@dataclass
class _OutputSet:
    all_or_nothing: bool
    written: dict[Path, Path | None] = field(default_factory=dict)  # target -> backup
    created: list[Path] = field(default_factory=list)  # folders, in creation order
    locks: list[Path] = field(default_factory=list)
    outs: list[tuple[Path, str]] = field(default_factory=list)  # (resolved folder, as given)
    inputs: list[tuple[Path, str]] = field(default_factory=list)  # (resolved folder, as given)


_SETS: list[_OutputSet] = []


def _current() -> _OutputSet | None:
    return _SETS[-1] if _SETS else None


@contextmanager
def output_set(all_or_nothing: bool = True) -> Iterator[None]:
    """Run a command's writes as one set (see above); a nested call joins the outer set.

    With ``all_or_nothing=False`` (``train``: an interrupted run keeps its checkpoint) files
    stay on failure; locks are released and empty new folders removed either way.
    """
    if _SETS:
        yield
        return
    s = _OutputSet(all_or_nothing)
    _SETS.append(s)
    try:
        yield
    except BaseException:
        if s.all_or_nothing:
            _roll_back(s)
        _end(s)
        raise
    else:
        for backup in s.written.values():
            _unlink(backup)
        _end(s)
    finally:
        _SETS.remove(s)


def _unlink(p: Path | None) -> None:
    if p is not None:
        with suppress(OSError):
            p.unlink()


def _roll_back(s: _OutputSet) -> None:
    for target, backup in reversed(list(s.written.items())):
        try:
            if backup is not None:
                os.replace(backup, target)
            else:
                target.unlink()
        except OSError:
            pass


def _end(s: _OutputSet) -> None:
    for lock in s.locks:
        _unlink(lock)
    for d in reversed(s.created):  # innermost first; rmdir never deletes content
        with suppress(OSError):
            d.rmdir()


def _record(target: Path) -> None:
    """Before ``target`` is replaced inside a set: keep the file it replaces (first time)."""
    s = _current()
    if s is None or not s.all_or_nothing or target in s.written:
        return
    backup = None
    if target.is_file():
        backup = target.with_name(f".{target.name}.{os.getpid()}.{len(s.written)}.bak")
        _unlink(backup)
        try:
            os.link(target, backup)
        except OSError:  # no hard links here: keep a copy
            backup.write_bytes(target.read_bytes())
    s.written[target] = backup


def remove_file(path: str | os.PathLike[str]) -> None:
    """Remove the file ``path`` (if there); inside an output set it comes back if the set
    fails."""
    target = Path(path)
    if not target.is_file():
        return
    _record(target)
    with suppress(FileNotFoundError):
        target.unlink()


def make_dir(path: str | os.PathLike[str], what: str = "--out") -> Path:
    """Create folder ``path`` and its parents; inside an output set the new ones are removed
    again if the set fails or ends empty. InputError naming ``what`` when it cannot be made."""
    p = Path(path)
    missing = _missing_dirs(p)
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InputError(f"{what} {path}: cannot create directory ({_cause(e)})") from None
    s = _current()
    if s is not None:
        s.created += reversed(missing)
    return p


def _missing_dirs(path: Path) -> list[Path]:
    """``path`` and its ancestors that do not exist yet, innermost first."""
    missing: list[Path] = []
    p = path.absolute()
    try:
        while not p.exists() and p != p.parent:
            missing.append(p)
            p = p.parent
    except OSError:  # a name the OS rejects: nothing of it can be created
        return []
    return missing


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def _lock(path: Path, given: str) -> None:
    """Take ``path/.convdiag.lock`` for this set (stale locks of dead processes replaced)."""
    s = _current()
    lock = path / LOCK_NAME
    if s is None or lock in s.locks or os.environ.get("RANK", "0") not in ("", "0"):
        return  # no set (library use), already ours, or a torchrun rank other than 0
    for _ in range(3):
        try:
            fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            try:
                pid = int(lock.read_text(encoding="ascii", errors="replace").split()[0])
            except (OSError, ValueError, IndexError):
                pid = -1
            if pid == os.getpid() or (pid > 0 and not _alive(pid)):
                _unlink(lock)  # ours from an earlier command in this process, or stale
                continue
            raise InputError(
                f"--out {given}: in use by another convdiag process "
                f"({'pid ' + str(pid) if pid > 0 else 'unreadable lock'}); remove "
                f"{lock} if no convdiag runs there"
            ) from None
        except OSError as e:
            raise InputError(f"--out {given}: cannot write there ({_cause(e)})") from None
        with os.fdopen(fd, "w") as f:
            f.write(f"{os.getpid()}\n")
        s.locks.append(lock)
        return


def _inside(a: Path, b: Path) -> bool:
    return a == b or a.is_relative_to(b)


def declare_input_dir(path: str | os.PathLike[str], what: str) -> None:
    """Record that this set reads the dataset folder ``path``: an output folder equal to it or
    inside it is refused (a later run would read the reports and plots as data)."""
    s = _current()
    if s is None:
        return
    p = Path(path).resolve()
    s.inputs.append((p, what))
    for out, given in s.outs:
        _refuse_inside(out, given, p, what)


def _refuse_inside(out: Path, given: str, data: Path, what: str) -> None:
    if _inside(out, data):
        where = "is" if out == data else "is inside"
        raise InputError(
            f"--out {given} {where} the dataset folder {what}: a later run would read "
            "its reports and plots as data; choose a folder outside it"
        )
