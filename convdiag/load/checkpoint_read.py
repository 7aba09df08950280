"""Reading a checkpoint file safely: its kind from its bytes (``sniff``), the globals a
pickle would import (``describe_unsafe_globals``), and ``unpickle``: torch's weights-only
loader, then convdiag's allow-listed containers, else only with ``--trust-checkpoint``."""

from __future__ import annotations

import os
import pickle
import re
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch

from convdiag.errors import InputError
from convdiag.load.safe_unpickle import (
    NDARRAY_TYPE,
    PickleLimitError,
    container_globals,
    torch_allowed_globals,
    torch_pickle_globals,
)

# ----------------------------------------------------------------------------- sniffing


def sniff(path: Path) -> str:
    """The file's kind from its bytes: torch-zip, torchscript, safetensors or torch-legacy."""
    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            head = f.read(9)
    except FileNotFoundError:
        raise InputError(f"{path}: no such checkpoint file") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a directory, not a checkpoint file") from None
    except OSError as e:
        raise InputError(f"{path}: cannot read ({e.strerror or e})") from None
    if size == 0:
        raise InputError(f"{path}: empty file, not a checkpoint")
    if head[:4] == b"PK\x03\x04":
        try:
            with zipfile.ZipFile(path) as zf:
                names = zf.namelist()
        except (zipfile.BadZipFile, OSError, ValueError) as e:
            raise InputError(f"{path}: truncated or corrupt checkpoint ({e})") from None
        if any(n.endswith("constants.pkl") and n.count("/") <= 1 for n in names):
            return "torchscript"
        if any(n.endswith("data.pkl") and n.count("/") <= 1 for n in names):
            return "torch-zip"
        raise InputError(f"{path}: a zip archive but not a PyTorch checkpoint")
    if len(head) >= 9:
        n = int.from_bytes(head[:8], "little")
        if 2 <= n <= size - 8 and head[8:9] == b"{":
            return "safetensors"
    if head[:1] == b"\x80":
        return "torch-legacy"
    raise InputError(
        f"{path}: not a checkpoint (expected a PyTorch, TorchScript or safetensors file)"
    )


# ----------------------------------------------------------------------------- unpickling


def describe_unsafe_globals(path: str | os.PathLike[str]) -> list[str]:
    """The globals (``module.Class``) a pickled checkpoint names beyond torch's allow-list.

    These are what unpickling it would import. Found by reading the pickle's opcodes, never
    by loading it. Empty for safetensors and TorchScript files (no Python pickle of user
    classes). Names of modules outside torch come first. Missing/corrupt file -> InputError.
    """
    p = Path(path)
    kind = sniff(p)
    if kind in ("safetensors", "torchscript"):
        return []
    try:
        found = torch_pickle_globals(str(p), kind == "torch-zip")
    except PickleLimitError as e:
        raise InputError(f"{p}: refusing to unpickle: {e} (a pickle bomb?)") from None
    except (ValueError, zipfile.BadZipFile, OSError, KeyError) as e:
        raise InputError(f"{p}: truncated or corrupt checkpoint ({e})") from None
    unsafe = found - torch_allowed_globals()
    return sorted(unsafe, key=lambda g: (g.startswith("torch."), g))


def torch_load(path: Path, weights_only: bool) -> Any:
    """``torch.load`` on the CPU, without the pickle-protocol warning."""
    with warnings.catch_warnings():
        # a pickle protocol above 2 only matters if loading fails, which we report ourselves
        warnings.filterwarnings("ignore", message="Detected pickle protocol")
        return torch.load(path, map_location="cpu", weights_only=weights_only)


def unpickle(path: Path, kind: str, trust: bool, notes: list[str]) -> Any:
    """torch.load the file safely; allow-listed containers pass, anything else needs trust."""

    def corrupt(e: BaseException) -> InputError:
        why = " ".join(str(e).split())[:200]
        return InputError(f"{path}: truncated or corrupt checkpoint ({type(e).__name__}: {why})")

    unsafe = describe_unsafe_globals(path)  # bounds the pickle before torch reads it
    first: BaseException | None = None
    if not unsafe:
        try:
            return torch_load(path, weights_only=True)
        except pickle.UnpicklingError as e:
            first = e
        except Exception as e:  # RuntimeError/EOFError/... from a damaged file
            raise corrupt(e) from None
    table = container_globals()
    blocking = [g for g in unsafe if g not in table]
    if unsafe and not blocking:
        # numpy dtype classes are checked by type, never named: allow them with numpy.dtype.
        numpy_used = any(g.startswith("numpy.") for g in unsafe)
        extra = [g for g in table if g.startswith("numpy.dtypes.")] if numpy_used else []
        extra += [NDARRAY_TYPE] if numpy_used else []
        allowed: list[Any] = [(table[g], g) for g in [*unsafe, *extra]]
        try:
            with torch.serialization.safe_globals(allowed):
                obj = torch_load(path, weights_only=True)
            notes.append(f"allow-listed container globals: {', '.join(unsafe)}")
            return obj
        except pickle.UnpicklingError as e:
            first = e
        except Exception as e:
            raise corrupt(e) from None
    if trust:
        notes.append("loaded with --trust-checkpoint (full pickle: the file's code ran)")
        try:
            return torch_load(path, weights_only=False)
        except Exception as e:
            raise InputError(
                f"{path}: cannot load even with --trust-checkpoint ({type(e).__name__}: "
                f"{' '.join(str(e).split())[:200]})"
            ) from None
    if blocking:
        raise InputError(
            f"{path}: refusing to unpickle: loading it would import {', '.join(blocking)}; "
            "pass --trust-checkpoint if you trust it"
        )
    reason = " ".join(str(first).split())
    m = re.search(r"WeightsUnpickler error: (.*?)(?: Please use|$)", reason)
    raise InputError(
        f"{path}: refusing to unpickle: it cannot be loaded safely "
        f"({(m.group(1) if m else reason)[:200]}); pass --trust-checkpoint if you trust it"
    )
