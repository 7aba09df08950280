"""Split files: lists of image ids, found by name inside a dataset or given as a path.

A split file holds one id per line (a stem; a directory part and an image extension are
dropped; blank lines and lines starting with '#' are ignored). Names are looked up in the
dataset root and then in the places IRSTD datasets keep them: ``idx_*/`` (NUAA-SIRST),
``img_idx/`` (BasicIRSTD, where files are called ``<name>_<dataset>.txt``), ``50_50/``
(DNANet) and ``splits/``; ``trainval`` and ``trainval.txt`` both work.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from convdiag.errors import InputError
from convdiag.load.imageio import IMAGE_EXTENSIONS

SPLIT_DIRS = ("", "idx_*", "img_idx", "50_50", "splits")


def _candidate_dirs(root: Path) -> list[Path]:
    dirs: list[Path] = []
    for pattern in SPLIT_DIRS:
        if not pattern:
            dirs.append(root)
        elif "*" in pattern:
            dirs += sorted(d for d in root.glob(pattern) if d.is_dir())
        elif (root / pattern).is_dir():
            dirs.append(root / pattern)
    return dirs


def _is_file(p: Path) -> bool:
    """``p.is_file()``, False also for a name the OS rejects (too long, ...)."""
    try:
        return p.is_file()
    except OSError:
        return False


def find_split(root: str | os.PathLike[str], name: str) -> Path | None:
    """The split file called ``name`` (with or without ``.txt``) inside dataset ``root``, or None.

    Looks in ``root`` then ``idx_*/``, ``img_idx/``, ``50_50/``, ``splits/``; in ``img_idx/``
    a file ``<name>_<anything>.txt`` also matches when it is the only one.
    """
    base = Path(root)
    if base.is_file():
        base = base.parent
    stem = name[:-4] if name.lower().endswith(".txt") else name
    for d in _candidate_dirs(base):
        for candidate in (d / name, d / f"{stem}.txt"):
            if _is_file(candidate):
                return candidate
        if d.name == "img_idx":
            hits = sorted(d.glob(f"{stem}_*.txt"))
            if len(hits) == 1:
                return hits[0]
    return None


def resolve_split(root: str | os.PathLike[str], split: str, flag: str = "--split") -> Path:
    """A split given by the user: an existing path, else a name inside the dataset.

    InputError naming the flag and the places searched when neither exists.
    """
    p = Path(split)
    if _is_file(p):
        return p
    found = find_split(root, split)
    if found is None:
        raise InputError(
            f"{flag} {split}: no such split file (not a path, and not found in {root} "
            f"or its {', '.join(d + '/' for d in SPLIT_DIRS if d)} folders)"
        )
    return found


def _line_id(line: str, known: set[str]) -> str:
    """The image id a split line names: the line itself, else its first token's stem."""
    if line in known:
        return line
    token = line.split()[0].replace("\\", "/").rsplit("/", 1)[-1]
    if token in known:
        return token
    stem, dot, ext = token.rpartition(".")
    if dot and f".{ext.lower()}" in IMAGE_EXTENSIONS:
        return stem
    return token


def read_split(path: str | os.PathLike[str], known: Iterable[str]) -> list[str]:
    """Ids listed in split file ``path``, in file order without repeats, each checked in ``known``.

    InputError naming the file for an unreadable or empty file, or for the first unknown id.
    """
    p = Path(path)
    ids_known = set(known)
    try:
        text = p.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InputError(f"split file {p}: not UTF-8 text") from None
    except OSError as e:
        raise InputError(f"split file {p}: cannot read ({e.strerror})") from None
    if "\x00" in text:
        raise InputError(f"split file {p}: binary data, not a list of ids")
    out: list[str] = []
    seen: set[str] = set()
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        ident = _line_id(line, ids_known)
        if ident not in ids_known:
            raise InputError(f"split file {p}: unknown image id {ident!r} (not in the dataset)")
        if ident not in seen:
            seen.add(ident)
            out.append(ident)
    if not out:
        raise InputError(f"split file {p}: empty (no image ids)")
    return out
