"""The arrays a report's plots are drawn from, saved beside its report.json as report.npz.

Every plot is drawn in one way: compute -> save the arrays (``save_arrays``) -> read them
back (``load_arrays``) -> draw from the report data and those arrays. ``convdiag show
report.json --plots DIR`` takes the last two steps alone, so it redraws the same PNGs
without the model or the data; ``save_png`` writes no varying metadata, so the bytes are the
same for the same matplotlib version.

The file holds a flat name -> array mapping; a nested dict ``{"P2": {"gradients":
{"current.map": a}}}`` is stored as ``"P2/gradients/current.map"`` (each part %-quoted).
Numbers and strings are stored as 0-d arrays and read back as Python numbers and strings;
None values are left out. The file is read with ``allow_pickle=False`` and size caps.
"""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import numpy as np

from convdiag.errors import InputError
from convdiag.load.files import atomic_write_bytes

NPZ_NAME = "report.npz"
MAX_NPZ_FILE_BYTES = 512 * 2**20  # the file on disk
MAX_NPZ_ARRAY_BYTES = 2 * 2**30  # all arrays, uncompressed
MAX_NPZ_MEMBERS = 20_000
PNG_DPI = 110


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, np.ndarray]:
    """``{"a": {"b": x}}`` -> ``{"a/b": np.asarray(x)}``; None leaves are dropped."""
    out: dict[str, np.ndarray] = {}
    for key, value in tree.items():
        name = prefix + quote(str(key), safe="")
        if isinstance(value, dict):
            out.update(flatten(value, name + "/"))
        elif value is None:
            continue
        else:
            arr = np.asarray(value)
            if arr.dtype == object:
                raise TypeError(f"{name}: an object array cannot be saved without pickle")
            out[name] = arr
    return out


def unflatten(flat: dict[str, np.ndarray]) -> dict[str, Any]:
    """The inverse of ``flatten``; 0-d arrays become Python numbers / strings."""
    tree: dict[str, Any] = {}
    for name in sorted(flat):
        parts = [unquote(p) for p in name.split("/")]
        node = tree
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        arr = flat[name]
        node[parts[-1]] = arr.item() if arr.ndim == 0 else arr
    return tree


def save_arrays(out: str | os.PathLike[str], tree: dict[str, Any]) -> Path:
    """Write ``tree`` (nested dicts of arrays) as ``out/report.npz`` (atomically, compressed)."""
    buf = io.BytesIO()
    np.savez_compressed(buf, allow_pickle=False, **flatten(tree))
    path = Path(out) / NPZ_NAME
    atomic_write_bytes(path, buf.getvalue())
    return path


def load_arrays(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a report.npz (or the one in a folder) back as nested dicts; {} when absent.

    Refuses (InputError naming the file) a file over MAX_NPZ_FILE_BYTES, more than
    MAX_NPZ_MEMBERS arrays or MAX_NPZ_ARRAY_BYTES uncompressed, pickled objects, and
    anything that is not a valid npz."""
    p = Path(path)
    if p.is_dir():
        p = p / NPZ_NAME
    if not p.exists():
        return {}
    try:
        if not p.is_file():
            raise InputError(f"{p}: not a regular file")
        if p.stat().st_size > MAX_NPZ_FILE_BYTES:
            raise InputError(f"{p}: larger than {MAX_NPZ_FILE_BYTES // 2**20} MiB")
        with zipfile.ZipFile(p) as zf:
            infos = zf.infolist()
        if len(infos) > MAX_NPZ_MEMBERS:
            raise InputError(f"{p}: more than {MAX_NPZ_MEMBERS} arrays")
        if sum(i.file_size for i in infos) > MAX_NPZ_ARRAY_BYTES:
            raise InputError(f"{p}: arrays larger than {MAX_NPZ_ARRAY_BYTES // 2**20} MiB")
        with np.load(p, allow_pickle=False) as z:
            flat = {k: z[k] for k in z.files}
    except InputError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as e:
        raise InputError(f"{p}: not a readable report.npz ({e})") from None
    return unflatten(flat)


def save_png(fig: Any, path: str | os.PathLike[str]) -> None:
    """Save a matplotlib figure as PNG atomically and close it; no "Software" text, so the
    bytes depend only on the figure and the matplotlib version."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=PNG_DPI, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def saved_data(report: dict[str, Any]) -> dict[str, Any]:
    """``report`` as its report.json reads back (numpy scalars to numbers, NaN to None): what
    the plots and the HTML page are drawn from, when written and when shown again."""
    import json

    from convdiag.load.files import to_json

    data: dict[str, Any] = json.loads(to_json(report))
    return data
