"""Model factories: build a ``torch.nn.Module`` from an import string ``pkg.module:function``.

``--model pkg.module:factory`` names a callable (a function or a class, ``module:obj.attr``
also works, as in Python entry points) that returns the model; ``--model-arg key=value``
options become its keyword arguments, converted by ``parse_model_args``. The reference
detector is ``convdiag.models:reference``. As with ``python -m``, the current directory is
importable, so a user's ``mynet.py`` in the working folder is found as ``mynet:build``.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
import types
from collections.abc import Callable
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


def _ensure_cwd_on_path() -> None:
    """Put the current directory first on sys.path, as ``python -m`` does, if it is absent."""
    cwd = os.getcwd()
    if "" not in sys.path and cwd not in sys.path:
        sys.path.insert(0, cwd)


def resolve_factory(spec: str, what: str = "--model") -> Callable[..., Any]:
    """The callable named by ``spec`` = ``pkg.module:attr[.attr...]``.

    Import failures and missing attributes -> InputError "``{what} {spec}: ...``" (one line).
    """
    text = str(spec).strip()
    if not _SPEC.match(text):
        raise InputError(f"{what} {spec}: expected pkg.module:function (e.g. mynet:build)")
    module_name, attr_path = text.split(":", 1)
    _ensure_cwd_on_path()
    try:
        obj: Any = importlib.import_module(module_name)
    except Exception as e:  # any import-time error of the user's module
        raise InputError(
            f"{what} {spec}: cannot import {module_name} ({type(e).__name__}: {_one_line(e)})"
        ) from None
    for part in attr_path.split("."):
        if not hasattr(obj, part):
            raise InputError(f"{what} {spec}: {module_name} has no attribute {attr_path}")
        obj = getattr(obj, part)
    last = attr_path.rsplit(".", 1)[-1]
    if isinstance(obj, types.ModuleType) and callable(getattr(obj, last, None)):
        # Importing submodule convdiag.models.reference rebinds the package attribute
        # ``reference`` (the factory) to the module: take the module's same-named callable.
        obj = getattr(obj, last)
    if not callable(obj):
        raise InputError(f"{what} {spec}: {attr_path} is not callable")
    result: Callable[..., Any] = obj
    return result


def build_model(spec: str, args: dict[str, Any] | None = None, what: str = "--model") -> nn.Module:
    """Build a model: ``factory(**parse_model_args(args))`` for ``factory`` named by ``spec``.

    spec: ``pkg.module:function`` or ``pkg.module:Class``; args: keyword arguments, strings
    converted as ``--model-arg`` values. ``what`` names the source of the spec in error
    messages (``--model``, or a checkpoint file whose factory it is). Import failure, missing
    attribute, the factory raising, or a result that is not an ``nn.Module`` -> InputError
    (one line naming ``what``, the spec and the reason).
    """
    factory = resolve_factory(spec, what)
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
