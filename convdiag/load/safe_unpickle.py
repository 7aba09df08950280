"""What a pickled checkpoint would import, and the container classes convdiag lets through.

``torch.load(weights_only=True)`` builds only tensors, storages and plain containers. Real
training checkpoints also hold harmless containers it refuses: numpy arrays and scalars and
``pathlib`` paths in Lightning hyper-parameters, OmegaConf configs (Hydra + Lightning),
mmengine's ``HistoryBuffer`` in ``message_hub``, ``argparse.Namespace``, ``defaultdict``.
``container_globals()`` maps exactly those names to objects that are safe to call while
unpickling: numpy's own array/scalar rebuilders, ``argparse.Namespace``, the builtin types,
and for foreign classes, inert stubs defined here (their module is never imported, so no
code of theirs runs). Any other name is refused by torch's unpickler as before.
``to_plain`` turns the loaded stubs into dicts and lists for reports.
"""

from __future__ import annotations

import _compat_pickle
import argparse
import pickle
import pickletools
import typing
import zipfile
from pathlib import PurePosixPath, PureWindowsPath
from typing import IO, Any

import numpy as np
import torch

_STRING_OPS = {
    "SHORT_BINUNICODE",
    "BINUNICODE",
    "BINUNICODE8",
    "UNICODE",
    "SHORT_BINSTRING",
    "BINSTRING",
    "STRING",
}
_PUT_OPS = {"PUT", "BINPUT", "LONG_BINPUT"}
_MARK_CLOSERS = {
    "APPENDS", "SETITEMS", "ADDITEMS", "TUPLE", "LIST", "DICT", "FROZENSET", "OBJ", "INST",
    "POP_MARK",
}  # fmt: skip

# Bounds on what a pickle may make the unpickler do. A real checkpoint's data.pkl holds a
# few opcodes per tensor (a 10,000-tensor optimizer state is ~1e6 opcodes) and nests marks
# only as deep as its containers; a bomb of MARK/BUILD opcodes costs ~50 bytes of memory
# per byte of file in torch's pure-Python unpickler.
MAX_PICKLE_BYTES = 512 * 2**20
MAX_OPCODES = 20_000_000
MAX_MARK_DEPTH = 10_000
# numpy arrays rebuilt from checkpoint metadata (not tensors): at most this many bytes each.
MAX_ARRAY_BYTES = 256 * 2**20
# to_plain: containers nested deeper, or more values than this, are summarised.
MAX_PLAIN_DEPTH = 50
MAX_PLAIN_ITEMS = 200_000


class PickleLimitError(ValueError):
    """A pickle that exceeds a bound (size, opcodes, nesting): refused before loading."""


_GET_OPS = {"GET", "BINGET", "LONG_BINGET"}


def _qualname(module: str, name: str) -> str:
    """``module.name`` with Python 2 names mapped as the unpickler maps them."""
    if (module, name) in _compat_pickle.NAME_MAPPING:
        module, name = _compat_pickle.NAME_MAPPING[(module, name)]
    elif module in _compat_pickle.IMPORT_MAPPING:
        module = _compat_pickle.IMPORT_MAPPING[module]
    return f"{module}.{name}"


def globals_in_pickles(stream: IO[bytes], max_pickles: int, size: int) -> set[str]:
    """Every global (``module.name``) the first ``max_pickles`` pickles of ``stream`` name.

    Reads opcodes only (``pickletools.genops``), never builds an object. ``STACK_GLOBAL``
    names come from the strings pushed just before it; one that cannot be resolved is
    reported as ``<dynamic global>``. Corrupt data -> ValueError; more than ``MAX_OPCODES``
    opcodes or marks nested deeper than ``MAX_MARK_DEPTH`` -> PickleLimitError.
    """
    found: set[str] = set()
    count = 0
    for _ in range(max_pickles):
        if stream.tell() >= size:
            break
        recent: list[Any] = []
        memo: dict[int, Any] = {}
        depth = 0
        try:
            for op, arg, _pos in pickletools.genops(stream):
                count += 1
                if count > MAX_OPCODES:
                    raise PickleLimitError(f"more than {MAX_OPCODES:,} pickle opcodes")
                if op.name == "MARK":
                    depth += 1
                    if depth > MAX_MARK_DEPTH:
                        raise PickleLimitError(f"marks nested deeper than {MAX_MARK_DEPTH:,}")
                elif op.name in _MARK_CLOSERS:
                    depth = max(0, depth - 1)
                elif op.name == "GLOBAL":
                    module, _, name = str(arg).partition(" ")
                    found.add(_qualname(module, name))
                elif op.name == "STACK_GLOBAL":
                    pair = recent[-2:]
                    ok = len(pair) == 2 and all(isinstance(p, str) for p in pair)
                    found.add(_qualname(pair[0], pair[1]) if ok else "<dynamic global>")
                elif op.name in _STRING_OPS:
                    recent.append(arg.decode("latin-1") if isinstance(arg, bytes) else arg)
                elif op.name in _GET_OPS:
                    recent.append(memo.get(int(str(arg))))
                elif op.name in _PUT_OPS:
                    memo[int(str(arg))] = recent[-1] if recent else None
                elif op.name == "MEMOIZE":
                    memo[len(memo)] = recent[-1] if recent else None
        except PickleLimitError:
            raise
        except Exception as e:  # genops raises ValueError and others on garbage
            raise ValueError(f"corrupt pickle data ({type(e).__name__}: {e})") from None
    return found


def torch_pickle_globals(path: str, is_zip: bool) -> set[str]:
    """Globals named by a ``torch.save`` file: ``data.pkl`` of a zip, or a legacy pickle stream.

    A legacy file is four pickles (magic number, protocol, system info, the object) before
    its raw storages; a plain ``pickle.dump`` file is one.
    """
    if is_zip:
        with zipfile.ZipFile(path) as zf:
            names = [n for n in zf.namelist() if n.endswith("data.pkl") and n.count("/") <= 1]
            if not names:
                raise ValueError("no data.pkl in the archive")
            if zf.getinfo(names[0]).file_size > MAX_PICKLE_BYTES:
                raise PickleLimitError(f"data.pkl is larger than {MAX_PICKLE_BYTES >> 20} MiB")
            data = zf.read(names[0])
        import io

        return globals_in_pickles(io.BytesIO(data), 1, len(data))
    with open(path, "rb") as f:
        f.seek(0, 2)
        size = f.tell()
        f.seek(0)
        return globals_in_pickles(f, 4, size)


def torch_allowed_globals() -> set[str]:
    """Names ``torch.load(weights_only=True)`` accepts without help (torch's own allow-list)."""
    names: set[str] = set()
    try:
        from torch import _weights_only_unpickler as wou

        names |= set(wou._get_allowed_globals())
        names |= set(wou._get_user_allowed_globals())
    except Exception:  # private API moved: fall back to the obvious ones
        names |= {"collections.OrderedDict", "torch._utils._rebuild_tensor_v2"}
    return names


class Stub:
    """An inert stand-in for a foreign container class: it only stores what it is given."""

    stub_of: typing.ClassVar[str] = ""

    def __new__(cls, *args: Any, **kwargs: Any) -> Stub:
        inst = object.__new__(cls)
        inst.__dict__["_stub_args"] = args
        return inst

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.__dict__.update(kwargs)

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) == 2 and isinstance(state[1], dict | None):
            state, slots = state
            self.__dict__.update(slots or {})
        if isinstance(state, dict):
            self.__dict__.update(state)
        elif state is not None:
            self.__dict__["_stub_state"] = state

    def __repr__(self) -> str:
        return f"<stub of {self.stub_of}>"


class _AsDict:
    """A dict subclass (Lightning's ``AttributeDict``) rebuilt as a plain dict."""

    def __new__(cls, *args: Any, **kwargs: Any) -> dict[Any, Any]:  # type: ignore[misc]
        return dict(*args, **kwargs)


def _defaultdict(*args: Any) -> dict[Any, Any]:
    """``collections.defaultdict(factory)`` rebuilt as a plain dict (the factory is dropped)."""
    return {}


def _posix_path(*parts: str) -> str:
    """A pickled ``pathlib`` POSIX path, as its string."""
    return str(PurePosixPath(*parts))


def _windows_path(*parts: str) -> str:
    """A pickled ``pathlib`` Windows path, as its string."""
    return str(PureWindowsPath(*parts))


def _restricted_getattr(obj: Any, name: str) -> str:
    """``getattr`` only on stub classes (mmengine pickles ``HistoryBuffer.min`` this way)."""
    if isinstance(obj, type) and issubclass(obj, Stub):
        return f"{obj.stub_of}.{name}"
    raise pickle.UnpicklingError(f"getattr({obj!r}, {name!r}) is not allowed")


# Foreign container classes that become stubs: their data is kept, their code never runs.
STUB_CLASSES = (
    "mmengine.logging.history_buffer.HistoryBuffer",
    "omegaconf.dictconfig.DictConfig",
    "omegaconf.listconfig.ListConfig",
    "omegaconf.base.ContainerMetadata",
    "omegaconf.base.Metadata",
    "omegaconf.nodes.AnyNode",
    "omegaconf.nodes.StringNode",
    "omegaconf.nodes.IntegerNode",
    "omegaconf.nodes.FloatNode",
    "omegaconf.nodes.BooleanNode",
    "omegaconf.nodes.BytesNode",
    "omegaconf.nodes.PathNode",
)
ATTRIBUTE_DICTS = (
    "lightning.fabric.utilities.data.AttributeDict",
    "lightning_fabric.utilities.data.AttributeDict",
    "lightning.pytorch.utilities.parsing.AttributeDict",
    "pytorch_lightning.utilities.parsing.AttributeDict",
)
_PATHS = ("PosixPath", "PurePosixPath", "WindowsPath", "PureWindowsPath")
_stubs: dict[str, type[Stub]] = {}


def _stub(name: str) -> type[Stub]:
    if name not in _stubs:
        _stubs[name] = type(name.rsplit(".", 1)[-1], (Stub,), {"stub_of": name})
    return _stubs[name]


def _check_array(shape: Any, dtype: Any) -> None:
    """Refuse an array of more than ``MAX_ARRAY_BYTES`` before numpy allocates it."""
    dims = shape if isinstance(shape, tuple | list) else (shape,)
    if not all(isinstance(d, int) and d >= 0 for d in dims):
        raise pickle.UnpicklingError(f"numpy array shape {shape!r} is not a tuple of sizes")
    n = 1
    for d in dims:
        n *= d
    if n * max(1, np.dtype(dtype).itemsize) > MAX_ARRAY_BYTES:
        raise pickle.UnpicklingError(
            f"numpy array of shape {tuple(dims)} exceeds {MAX_ARRAY_BYTES >> 20} MiB"
        )


def _capped_reconstruct(cls: Any, shape: Any, dtype: Any) -> np.ndarray:
    """numpy's ``_reconstruct`` (an empty array that BUILD then fills), size-checked."""
    _check_array(shape, dtype)
    return np.ndarray(shape, dtype)


def _capped_ndarray(shape: Any, dtype: Any = float, *args: Any) -> np.ndarray:
    """``numpy.ndarray(shape, dtype)`` called by a pickle, size-checked; no buffer argument."""
    if args:
        raise pickle.UnpicklingError("numpy.ndarray with a buffer is not allowed")
    _check_array(shape, dtype)
    return np.ndarray(shape, dtype)


# The unpickler checks the type of an object before BUILD restores its state: ndarray must
# be allow-listed as a type, under a name no file can ask for.
NDARRAY_TYPE = "convdiag.safe_unpickle.ndarray"


def numpy_dtype_classes() -> list[type]:
    """numpy's dtype classes (``numpy.dtypes.Float64DType``, ...): unpickling a dtype builds one.

    They never appear by name in a pickle, but the unpickler checks the type of the object
    ``numpy.dtype(...)`` returns before restoring its state, so they must be allow-listed too.
    """
    return sorted({type(np.dtype(c)) for c in np.typecodes["All"]}, key=lambda t: t.__name__)


def container_globals() -> dict[str, Any]:
    """The allow-list: global name -> the object the unpickler may use for it.

    Nothing here imports or runs the checkpoint's own code: numpy's rebuild functions
    build arrays and scalars from bytes, builtin types and ``argparse.Namespace`` only hold
    data, the rest are local stand-ins.
    """
    scalar = np.float64(0).__reduce__()[0]
    table: dict[str, Any] = {
        "numpy.ndarray": _capped_ndarray,
        NDARRAY_TYPE: np.ndarray,
        "numpy.dtype": np.dtype,
        "argparse.Namespace": argparse.Namespace,
        "collections.defaultdict": _defaultdict,
        "builtins.getattr": _restricted_getattr,
        "typing.Any": typing.Any,
    }
    for mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
        table[f"{mod}._reconstruct"] = _capped_reconstruct
        table[f"{mod}.scalar"] = scalar
    for dt_cls in numpy_dtype_classes():
        table[f"numpy.dtypes.{dt_cls.__name__}"] = dt_cls
    for t in (list, dict, tuple, set, frozenset, int, float, str, bool, bytes, complex):
        table[f"builtins.{t.__name__}"] = t
    for mod in ("pathlib", "pathlib._local"):
        for cls in _PATHS:
            table[f"{mod}.{cls}"] = _windows_path if "Windows" in cls else _posix_path
    for name in ATTRIBUTE_DICTS:
        table[name] = _AsDict
    for name in STUB_CLASSES:
        table[name] = _stub(name)
    return table


def to_plain(obj: Any, _depth: int = 0, _budget: list[int] | None = None) -> Any:
    """Loaded checkpoint data -> plain dicts, lists and scalars (tensors kept).

    numpy arrays -> lists, numpy scalars -> Python numbers, OmegaConf stubs -> their
    content, other stubs -> a dict of their stored fields. Bounded: containers nested deeper
    than ``MAX_PLAIN_DEPTH`` and whatever comes after the first ``MAX_PLAIN_ITEMS`` values
    (arrays count their elements) become a short "<... omitted>" string, never recursed into.
    """
    budget = [MAX_PLAIN_ITEMS] if _budget is None else _budget
    budget[0] -= 1
    if budget[0] < 0:
        return f"<{type(obj).__name__} omitted: more than {MAX_PLAIN_ITEMS:,} values>"
    if _depth > MAX_PLAIN_DEPTH:
        return f"<{type(obj).__name__} omitted: nested deeper than {MAX_PLAIN_DEPTH}>"

    def sub(v: Any) -> Any:
        return to_plain(v, _depth + 1, budget)

    if isinstance(obj, np.generic):  # before float: np.float64 is a float subclass
        return obj.item()
    if isinstance(obj, torch.Tensor | str | int | float | bool | bytes) or obj is None:
        return obj
    if isinstance(obj, np.ndarray):
        budget[0] -= obj.size
        if budget[0] < 0:
            return f"<ndarray omitted: shape {obj.shape}, dtype {obj.dtype}>"
        return obj.tolist()
    if isinstance(obj, dict):
        return {k: sub(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(sub(v) for v in obj)
    if isinstance(obj, set | frozenset):
        return [sub(v) for v in obj]
    if isinstance(obj, argparse.Namespace):
        return {k: sub(v) for k, v in vars(obj).items()}
    if isinstance(obj, Stub):
        state = obj.__dict__
        if obj.stub_of.startswith("omegaconf.") and "_content" in state:
            return sub(state["_content"])
        if obj.stub_of.startswith("omegaconf.nodes.") and "_val" in state:
            return sub(state["_val"])
        skip = {"_stub_args", "_metadata", "_parent", "_flags_cache"}
        return {k.lstrip("_"): sub(v) for k, v in state.items() if k not in skip}
    if isinstance(obj, type):
        return f"{obj.__module__}.{obj.__qualname__}"
    return f"<{type(obj).__name__}>"
