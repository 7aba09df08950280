"""Bounded reads: a regular file's bytes up to a limit (folders, FIFOs and devices refused
without blocking), JSON that never fails with a traceback, and the real reason a path is
absent (a loop of symbolic links, a dangling link)."""

from __future__ import annotations

import errno
import json
import os
import stat
from pathlib import Path
from typing import Any

from convdiag.errors import InputError

MAX_REPORT_BYTES = 256 * 2**20  # a saved report.json (show, --from-report) larger is refused


def cause(e: OSError) -> str:
    """The cause of an OSError in a few words (for one-line errors)."""
    if isinstance(e, IsADirectoryError):
        return "it is a directory"
    if isinstance(e, PermissionError):
        return "permission denied"
    return str(e.strerror or e)


def absent_reason(path: str | os.PathLike[str]) -> str:
    """Why ``path`` cannot be opened: 'no such file or folder', 'a loop of symbolic links'
    or 'a symbolic link to nothing'."""
    p = Path(path)
    try:
        os.stat(p)
    except OSError as e:
        if e.errno == errno.ELOOP:
            return "a loop of symbolic links"
        if p.is_symlink():
            return "a symbolic link to nothing"
        if e.errno != errno.ENOENT:
            return f"cannot access ({cause(e)})"
    return "no such file or folder"


def read_limited(path: str | os.PathLike[str], limit: int, what: str = "file") -> bytes:
    """The bytes of the regular file ``path``, at most ``limit`` of them: InputError naming
    it for a missing file, a symbolic-link loop, a folder, FIFO or device (opened without
    blocking and refused), a larger file, or a read error."""
    p = Path(path)
    try:
        fd = os.open(p, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise InputError(f"{p}: {absent_reason(p)}") from None
    except OSError as e:
        why = "a loop of symbolic links" if e.errno == errno.ELOOP else cause(e)
        raise InputError(f"{p}: cannot read the {what} ({why})") from None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            kind = "a folder" if stat.S_ISDIR(st.st_mode) else "a FIFO or device"
            raise InputError(f"{p}: {kind}, not a regular {what}")
        if st.st_size > limit:
            raise InputError(f"{p}: the {what} is larger than {limit / 2**20:.6g} MiB")
        try:
            data = f.read(limit + 1)
        except OSError as e:
            raise InputError(f"{p}: cannot read the {what} ({cause(e)})") from None
    if len(data) > limit:
        raise InputError(f"{p}: the {what} is larger than {limit / 2**20:.6g} MiB")
    return data


def parse_json(text: str, where: str) -> Any:
    """``json.loads`` with every failure one InputError naming ``where``: invalid JSON (with
    its line), nesting too deep for Python, an integer too long to convert."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(f"{where}: not valid JSON ({e.msg}, line {e.lineno})") from None
    except RecursionError:
        raise InputError(f"{where}: not readable JSON (nested too deeply)") from None
    except ValueError as e:  # "Exceeds the limit (4300 digits) for integer string conversion"
        raise InputError(f"{where}: not readable JSON ({str(e).split(';')[0]})") from None


def read_json(path: str | os.PathLike[str], limit: int, what: str = "JSON file") -> Any:
    """A JSON file read with ``read_limited`` and ``parse_json`` (UTF-8, a BOM allowed)."""
    raw = read_limited(path, limit, what)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise InputError(f"{path}: the {what} is not UTF-8 text (byte {e.start})") from None
    return parse_json(text, str(path))
