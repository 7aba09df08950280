"""Checkpoints: convdiag's self-describing format, and every format users bring.

convdiag writes (``save_checkpoint``) a dict that ``torch.load(weights_only=True)`` reads::

    {"format": "convdiag-checkpoint", "version": 1,
     "model": {"factory": "convdiag.models:reference", "args": {...}},
     "state_dict": {...}, "recipe": {...}, "meta": {"step", "steps", "interrupted", ...},
     "optimizer": optimizer.state_dict() | None, "rng": {...} | None}

``load_checkpoint`` reads that, plain state dicts, Lightning and mmengine checkpoints
(nested ``state_dict``, ``model.``/``module.``/``_orig_mod.`` prefixes), TorchScript and
safetensors (parsed here, no dependency), sniffing the content, not the extension. Pickles
load with ``weights_only=True``; the harmless containers real Lightning/mmengine files hold
are allow-listed (``convdiag.load.safe_unpickle``); anything else that would import code
(a pickled whole model, a malicious ``__reduce__``) is refused, naming what it would
import, unless ``trust=True`` (``--trust-checkpoint``). Input files are only ever read.
Sniffing and unpickling are ``convdiag.load.checkpoint_read``.
"""

from __future__ import annotations

import io
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from convdiag.errors import InputError
from convdiag.load.checkpoint_read import describe_unsafe_globals, sniff, unpickle
from convdiag.load.factory import build_model, parse_model_args
from convdiag.load.safe_unpickle import (
    to_plain,
)
from convdiag.load.safetensors_io import read_safetensors
from convdiag.load.state_dicts import (  # re-exported: the loader's public helpers
    PREFIXES,
    WRAPPER_KEYS,
    find_weights,
    head_keys,
    kind_of,
    load_weights,
    match_prefixes,
)

__all__ = [
    "PREFIXES",
    "WRAPPER_KEYS",
    "LoadedCheckpoint",
    "describe_unsafe_globals",
    "head_keys",
    "load_checkpoint",
    "match_prefixes",
    "read_safetensors",
    "save_checkpoint",
]

FORMAT = "convdiag-checkpoint"
VERSION = 1


@dataclass
class LoadedCheckpoint:
    """A loaded checkpoint: the model (eval mode, CPU) and what the file says about it.

    format: convdiag, state_dict, lightning, mmengine, torchscript, safetensors or
    pickled-model. factory/factory_args: how ``model`` was built (None for a TorchScript or
    pickled model used as is). recipe: the training recipe (convdiag checkpoints only).
    missing_keys/unexpected_keys: model keys not in the file / file keys not in the model,
    after prefix stripping. notes: what the loader did (prefixes stripped, containers
    allow-listed, ...). raw: the file's top-level dict as plain data, if it is a dict.
    """

    model: nn.Module
    recipe: dict[str, Any] | None
    factory: str | None
    factory_args: dict[str, Any]
    meta: dict[str, Any]
    format: str
    missing_keys: list[str] = field(default_factory=list)
    unexpected_keys: list[str] = field(default_factory=list)
    optimizer_state: dict[str, Any] | None = None
    rng_state: dict[str, Any] | None = None
    raw: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)


# ----------------------------------------------------------------------------- saving


def _weights_only_data(obj: Any, where: str) -> Any:
    """``obj`` as data ``torch.load(weights_only=True)`` reads: tensors, primitives, containers.

    numpy scalars -> Python numbers, numpy arrays -> tensors, paths -> str, tuples kept.
    Anything else -> TypeError naming ``where`` (a programming error, not bad input).
    """
    if obj is None or isinstance(obj, bool | int | float | str | bytes):
        return obj
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(obj))
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if isinstance(obj, dict):
        return {k: _weights_only_data(v, f"{where}[{k!r}]") for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        items = [_weights_only_data(v, f"{where}[{i}]") for i, v in enumerate(obj)]
        return items if isinstance(obj, list) else tuple(items)
    raise TypeError(f"checkpoint {where}: {type(obj).__name__} cannot be stored weights-only")


def save_checkpoint(
    path: str | os.PathLike[str],
    model: nn.Module,
    factory: str,
    factory_args: dict[str, Any],
    recipe: dict[str, Any],
    meta: dict[str, Any] | None = None,
    optimizer_state: dict[str, Any] | None = None,
    rng_state: dict[str, Any] | None = None,
) -> None:
    """Write a convdiag checkpoint atomically (temp file in the same folder + rename).

    The file holds only tensors, primitives, lists, tuples and dicts, so
    ``torch.load(path, weights_only=True)`` reads it; ``load_checkpoint(path)`` rebuilds
    the model from ``factory(**factory_args)`` with no other flag. numpy arrays in
    ``meta``/``rng_state`` are stored as tensors. An unwritable path -> InputError.
    """
    from convdiag import __version__
    from convdiag.load.files import atomic_write_bytes

    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "model": {"factory": str(factory), "args": _weights_only_data(factory_args, "args")},
        "state_dict": state,
        "recipe": _weights_only_data(recipe, "recipe"),
        "meta": _weights_only_data({"convdiag_version": __version__, **(meta or {})}, "meta"),
        "optimizer": _weights_only_data(optimizer_state, "optimizer"),
        "rng": _weights_only_data(rng_state, "rng"),
    }
    buf = io.BytesIO()
    torch.save(payload, buf)
    try:
        atomic_write_bytes(path, buf.getvalue())
    except OSError as e:
        raise InputError(f"{path}: cannot write the checkpoint ({e.strerror or e})") from None


# ----------------------------------------------------------------------------- loading


def _user_args(model_args: dict[str, Any] | None) -> dict[str, Any]:
    return parse_model_args(dict(model_args or {}))


def load_checkpoint(
    path: str | os.PathLike[str],
    model: str | None = None,
    model_args: dict[str, Any] | None = None,
    trust: bool = False,
) -> LoadedCheckpoint:
    """Load any supported checkpoint and return the model (eval mode, CPU) and its metadata.

    path: the file (kind sniffed from its bytes). model/model_args: ``--model`` factory
    and ``--model-arg`` values (strings converted), needed unless the file is a convdiag
    checkpoint (its own factory; an explicit ``model`` replaces it, ``model_args`` update
    its arguments), a TorchScript module or a trusted pickled model. trust:
    ``--trust-checkpoint``, allow pickles that import code. Weights are matched after
    stripping wrapper prefixes; missing and unexpected keys are reported, a missing
    classification head, a shape mismatch, an unreadable file or a refused pickle ->
    InputError naming the file.
    """
    loaded = _load(Path(path), model, model_args, trust)
    for name, t in loaded.model.state_dict().items():
        if isinstance(t, torch.Tensor) and t.is_meta:
            raise InputError(
                f"{path}: {name} is a meta-device tensor (a shape without data): save the "
                "checkpoint after its weights are materialised"
            )
    return loaded


def _load(
    p: Path, model: str | None, model_args: dict[str, Any] | None, trust: bool
) -> LoadedCheckpoint:
    kind = sniff(p)
    notes: list[str] = []
    if kind == "safetensors":
        tensors, st_meta = read_safetensors(p)
        return _from_weights(
            p, tensors, "safetensors", model, model_args, {"safetensors": st_meta}, None, notes
        )
    if kind == "torchscript":
        return _from_torchscript(p, model, model_args, notes)
    obj = unpickle(p, kind, trust, notes)
    if isinstance(obj, dict) and obj.get("format") == FORMAT:
        return _from_convdiag(p, obj, model, model_args, notes, trust)
    if isinstance(obj, nn.Module):
        return _from_module(p, obj, model, model_args, notes, None)
    if not isinstance(obj, dict):
        raise InputError(
            f"{p}: holds a {type(obj).__name__}, not a state dict, checkpoint dict or model"
        )
    fmt = kind_of(obj)
    weights, where = find_weights(obj)
    if weights is None:
        keys = ", ".join(str(k) for k in list(obj)[:8])
        raise InputError(f"{p}: no state dict found in the checkpoint (top-level keys: {keys})")
    raw = to_plain(obj)
    if where:
        notes.append(f"weights taken from {where!r}")
    if isinstance(weights, nn.Module):
        return _from_module(p, weights, model, model_args, notes, raw)
    meta = _meta_of(fmt, obj)
    return _from_weights(p, weights, fmt, model, model_args, meta, raw, notes)


def _meta_of(fmt: str, obj: dict[str, Any]) -> dict[str, Any]:
    """What a Lightning or mmengine checkpoint says about its training, as plain data."""
    if fmt == "lightning":
        return to_plain({
            "epoch": obj.get("epoch"),
            "global_step": obj.get("global_step"),
            "lightning_version": obj.get("pytorch-lightning_version"),
            "hyper_parameters": obj.get("hyper_parameters"),
        })  # fmt: skip
    if fmt == "mmengine":
        meta = to_plain(obj.get("meta") or {})
        return meta if isinstance(meta, dict) else {"meta": meta}
    return {}


_DESCRIBE = {
    "state_dict": "a plain state dict",
    "lightning": "a Lightning checkpoint",
    "mmengine": "an mmengine checkpoint",
    "safetensors": "a safetensors file",
}


def _from_weights(
    p: Path,
    state: dict[str, Any],
    fmt: str,
    model: str | None,
    model_args: dict[str, Any] | None,
    meta: dict[str, Any],
    raw: dict[str, Any] | None,
    notes: list[str],
) -> LoadedCheckpoint:
    if not model:
        raise InputError(f"{p} is {_DESCRIBE[fmt]}: pass --model pkg.module:factory")
    args = _user_args(model_args)
    net = build_model(model, args)
    missing, unexpected = load_weights(net, state, p, model, notes)
    return LoadedCheckpoint(
        net.eval().cpu(), None, model, args, meta, fmt, missing, unexpected, raw=raw, notes=notes
    )


def _from_convdiag(
    p: Path, obj: dict[str, Any], model: str | None, model_args: dict[str, Any] | None,
    notes: list[str], trust: bool = False,
) -> LoadedCheckpoint:  # fmt: skip
    version = obj.get("version")
    if not isinstance(version, int) or version > VERSION:
        raise InputError(
            f"{p}: convdiag checkpoint version {version!r} is newer than this convdiag "
            f"reads ({VERSION}); upgrade convdiag"
        )
    spec = obj.get("model") or {}
    stored, stored_args = spec.get("factory"), dict(spec.get("args") or {})
    state = obj.get("state_dict")
    if not isinstance(state, dict):
        raise InputError(f"{p}: convdiag checkpoint without a state_dict")
    if model and model != stored:
        factory, args, what = model, _user_args(model_args), "--model"
    elif stored:
        factory, args, what = stored, {**stored_args, **_user_args(model_args)}, f"{p}: factory"
    else:
        raise InputError(f"{p}: convdiag checkpoint names no model factory: pass --model")
    if not isinstance(factory, str):
        raise InputError(f"{p}: the checkpoint's model factory is not a string")
    # The file's own factory is data an attacker may write: only convdiag's factories are
    # imported from it, unless the user named the same one (--model) or trusts the file.
    trusted = trust or factory == model
    net = build_model(factory, args, what=what, trusted=trusted)
    missing, unexpected = load_weights(net, state, p, factory, notes)
    return LoadedCheckpoint(
        model=net.eval().cpu(),
        recipe=obj.get("recipe"),
        factory=factory,
        factory_args=args,
        meta=dict(obj.get("meta") or {}),
        format="convdiag",
        missing_keys=missing,
        unexpected_keys=unexpected,
        optimizer_state=obj.get("optimizer"),
        rng_state=obj.get("rng"),
        raw=obj,
        notes=notes,
    )


def _from_module(
    p: Path, module: nn.Module, model: str | None, model_args: dict[str, Any] | None,
    notes: list[str], raw: dict[str, Any] | None, fmt: str = "pickled-model",
) -> LoadedCheckpoint:  # fmt: skip
    """A whole module (trusted pickle or TorchScript): used as is, or its weights re-homed."""
    if model:
        args = _user_args(model_args)
        net = build_model(model, args)
        missing, unexpected = load_weights(net, module.state_dict(), p, model, notes)
        return LoadedCheckpoint(
            net.eval().cpu(), None, model, args, {}, fmt, missing, unexpected, raw=raw, notes=notes
        )
    return LoadedCheckpoint(module.eval().cpu(), None, None, {}, {}, fmt, raw=raw, notes=notes)


def _from_torchscript(
    p: Path, model: str | None, model_args: dict[str, Any] | None, notes: list[str]
) -> LoadedCheckpoint:
    # torch.jit.load reads TorchScript code and constants, not Python pickles of user
    # classes: it is allowed without --trust-checkpoint (the module's forward is TorchScript).
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit is deprecated
            scripted = torch.jit.load(str(p), map_location="cpu")
    except Exception as e:
        why = " ".join(str(e).split())[:200]
        raise InputError(f"{p}: cannot load TorchScript ({type(e).__name__}: {why})") from None
    notes.append("TorchScript module loaded with torch.jit.load (runs TorchScript, not pickle)")
    return _from_module(p, scripted, model, model_args, notes, None, fmt="torchscript")
