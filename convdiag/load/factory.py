"""Model factories: build a ``torch.nn.Module`` from an import string ``pkg.module:function``.

``--model pkg.module:factory`` names a callable (a function or a class, ``module:obj.attr``
also works, as in Python entry points) that returns the model; ``--model-arg key=value``
options become its keyword arguments, converted by ``parse_model_args``. The reference
detector is ``convdiag.models:reference``. As with ``python -m``, a user's ``mynet.py`` in
the working folder is found as ``mynet:build`` (the folder is importable for that lookup
only, and never shadows an installed package). A factory named inside a checkpoint is
imported only if it is convdiag's own, unless the user vouches for it.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import os
import re
import sys
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch import nn

from convdiag.errors import InputError

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SPEC = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


def _one_line(text: object) -> str:
    """Collapse whitespace so an error message stays on one line."""
    return " ".join(str(text).split())


def parse_model_args(values: dict[str, str]) -> dict[str, Any]:
    """Convert ``--model-arg key=value`` strings to Python values.

    Per value, in order: ``true``/``false`` (any case) -> bool, ``none``/``null`` -> None,
    an int literal -> int, a float literal -> float, a string in single or double quotes ->
    that string unquoted (to force a string such as ``"3"``), anything else -> the string.
    Values that are not strings (library callers) are kept as they are. A key that is not a
    Python identifier -> InputError naming ``--model-arg``.
    """
    out: dict[str, Any] = {}
    for key, raw in values.items():
        if not _IDENTIFIER.match(str(key)):
            raise InputError(f"--model-arg {key}={raw}: {key!r} is not a Python identifier")
        out[key] = _convert(raw) if isinstance(raw, str) else raw
    return out


def _convert(text: str) -> Any:
    value = text.strip()
    low = value.lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    try:
        return int(value)
    except ValueError:
        pass
    try:
        return float(value)
    except ValueError:
        return value


def is_own(spec: str) -> bool:
    """Whether ``spec`` (``pkg.module:attr``) names one of convdiag's own callables."""
    module = str(spec).strip().partition(":")[0]
    return module == "convdiag" or module.startswith("convdiag.")


def _installed(top: str) -> bool:
    """Whether the top-level module ``top`` is importable without the current directory."""
    if top in sys.modules or top in sys.builtin_module_names:
        return True
    cwd = os.getcwd()
    path = [p for p in sys.path if p not in ("", ".", cwd)]
    return importlib.machinery.PathFinder.find_spec(top, path) is not None


def _import_module(name: str) -> types.ModuleType:
    """Import ``name``; only a module that no installed package provides comes from the cwd.

    As for ``python -m``, a user's ``mynet.py`` in the working folder is found, but the
    current directory is on ``sys.path`` only during that import (and is removed again),
    so a stray ``numpy.py`` or ``PIL.py`` there never shadows an installed package.
    """
    if _installed(name.split(".")[0]):
        return importlib.import_module(name)
    saved = list(sys.path)
    sys.path.insert(0, os.getcwd())
    try:
        return importlib.import_module(name)
    finally:
        sys.path[:] = saved


def _import_file(path: str, what: str, spec: str) -> types.ModuleType:
    """Load ``path/to/file.py`` as a module of its own (``--adapter file.py:function``)."""
    file = Path(path)
    if not file.is_file():
        raise InputError(f"{what} {spec}: no such file {path}")
    name = f"convdiag_user_{file.stem}_{abs(hash(str(file.resolve())))}"
    if name in sys.modules:
        return sys.modules[name]
    loader_spec = importlib.util.spec_from_file_location(name, file)
    if loader_spec is None or loader_spec.loader is None:
        raise InputError(f"{what} {spec}: cannot load {path} as a Python module")
    module = importlib.util.module_from_spec(loader_spec)
    sys.modules[name] = module
    try:
        loader_spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def resolve_factory(spec: str, what: str = "--model", trusted: bool = True) -> Callable[..., Any]:
    """The callable named by ``spec`` = ``pkg.module:attr[.attr...]`` (or ``file.py:attr``).

    trusted: the user named ``spec`` (a flag, a config file, ``--trust-checkpoint``). A spec
    read from a file the user did not vouch for (a checkpoint's factory or adapter) may name
    only convdiag's own callables: anything else -> InputError naming the spec, before any
    import. Import failures and missing attributes -> InputError "``{what} {spec}: ...``".
    """
    text = str(spec).strip()
    module_name, _, attr_path = text.partition(":")
    is_file = module_name.endswith(".py") and bool(attr_path)
    if not is_file and not _SPEC.match(text):
        raise InputError(f"{what} {spec}: expected pkg.module:function (e.g. mynet:build)")
    if not trusted and (is_file or not is_own(text)):
        flag = "--adapter" if "adapter" in what else "--model"
        raise InputError(
            f"{what} {spec}: refusing to import code named by the file; pass {flag} "
            f"{spec} if it is yours, or --trust-checkpoint if you trust the file"
        )
    try:
        obj: Any = _import_file(module_name, what, spec) if is_file else _import_module(module_name)
    except InputError:
        raise
    except Exception as e:  # any import-time error of the user's module
        raise InputError(
            f"{what} {spec}: cannot import {module_name} ({type(e).__name__}: {_one_line(e)})"
        ) from None
    for part in attr_path.split("."):
        if not hasattr(obj, part):
            raise InputError(f"{what} {spec}: {module_name} has no attribute {attr_path}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise InputError(f"{what} {spec}: {attr_path} is not callable")
    result: Callable[..., Any] = obj
    return result


def build_model(
    spec: str, args: dict[str, Any] | None = None, what: str = "--model", trusted: bool = True
) -> nn.Module:
    """Build a model: ``factory(**parse_model_args(args))`` for ``factory`` named by ``spec``.

    spec: ``pkg.module:function`` or ``pkg.module:Class``; args: keyword arguments, strings
    converted as ``--model-arg`` values. ``what`` names the source of the spec in error
    messages (``--model``, or a checkpoint file whose factory it is). Import failure, missing
    attribute, the factory raising, or a result that is not an ``nn.Module`` -> InputError
    (one line naming ``what``, the spec and the reason). trusted: as for ``resolve_factory``.
    """
    factory = resolve_factory(spec, what, trusted)
    kwargs = parse_model_args(dict(args or {}))
    try:
        model = factory(**kwargs)
    except InputError as e:
        raise InputError(f"{what} {spec}: {e}") from None
    except Exception as e:  # the user's factory failed: say why, in one line
        hint = " (check --model-arg)" if isinstance(e, TypeError) else ""
        raise InputError(
            f"{what} {spec}: the factory raised {type(e).__name__}: {_one_line(e)}{hint}"
        ) from None
    if not isinstance(model, nn.Module):
        raise InputError(
            f"{what} {spec}: the factory returned {type(model).__name__}, not a torch.nn.Module"
        )
    return model
