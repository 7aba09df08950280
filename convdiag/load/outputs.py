"""Normalise whatever a model returns into per-level logits (DESIGN.md "Model outputs").

Accepted forms, for images [B, C, H, W]:

- ``{"P2": {"cls": [B,1,h,w], "reg": [B,2,h,w]}, "P4": {...}}`` (keys P0..P9, any case,
  checked against the stride; each value may also be a tuple or a bare cls tensor)
- ``{"cls": ..., "reg": ...}`` (``reg`` optional)
- ``(cls, reg)``, ``(cls,)`` or ``cls``

cls may also be [B, h, w]. The level of an output is found from its stride s = H / h (a power
of two, the same as W / w; a grid of ceil(H/s) x ceil(W/s) is accepted too). Anything else
goes through a user adapter ``pkg.module:function`` called as ``adapter(raw_output)``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from convdiag.errors import InputError
from convdiag.load.factory import resolve_factory
from convdiag.load.levels import MAX_LEVEL

FORMS = "{'P2': {'cls', 'reg'}}, {'cls', 'reg'}, (cls, reg) or a cls tensor"
# Probabilities are clamped to [EPS, 1 - EPS] before the logit: |logit| <= 13.8, never inf.
PROB_EPS = 1e-6


@dataclass
class LevelOutput:
    """One level of a model's output: cls logits [B,1,h,w], reg [B,2,h,w] or None, stride."""

    cls: Tensor
    reg: Tensor | None
    stride: int


def resolve_callable(
    spec: str, what: str = "--adapter", trusted: bool = True
) -> Callable[..., Any]:
    """Import ``pkg.module:attr.sub`` (or ``path/to/file.py:attr``) and return the callable.

    The one import rule of ``convdiag.load.factory.resolve_factory``: a spec the user did
    not name (``trusted=False``) may only be convdiag's own. Failures -> InputError.
    """
    return resolve_factory(spec, what, trusted)


def normalize_outputs(
    raw: Any,
    input_size: tuple[int, int],
    outputs: str = "logits",
    adapter: Callable[[Any], Any] | None = None,
    batch_size: int | None = None,
) -> dict[str, LevelOutput]:
    """Per-level logits of a model's raw output, keyed "P2", "P3", ... fine to coarse.

    input_size: (H, W) of the (padded) image batch given to the model. outputs: "logits",
    or "probs" (cls holds probabilities; returned as logit(clamp(p, 1e-6, 1 - 1e-6))).
    adapter: applied to ``raw`` first. batch_size: if given, every tensor must have it.
    Wrong forms, channel counts, shapes or strides raise InputError. NaN and Inf pass through.
    """
    if outputs not in ("logits", "probs"):
        raise InputError(f"--outputs {outputs!r}: use logits or probs")
    if adapter is not None:
        name = getattr(adapter, "__name__", repr(adapter))
        try:
            raw = adapter(raw)
        except InputError:
            raise
        except Exception as e:  # the user's adapter failed on the model's output
            raise InputError(f"--adapter {name} failed: {type(e).__name__}: {e}") from None
    hint = "" if adapter is not None else "; pass --adapter pkg.module:function"
    levels: list[tuple[Any, Any]] = []
    if isinstance(raw, Mapping) and "cls" in raw:
        levels = [(None, raw)]
    elif isinstance(raw, Mapping):
        if not raw:
            raise InputError(f"model output is an empty dict; expected {FORMS}{hint}")
        if not all(isinstance(k, str) and re.fullmatch(r"[Pp]\d", k) for k in raw):
            raise InputError(
                f"model output is a dict with keys {sorted(map(str, raw))}; expected {FORMS}{hint}"
            )
        levels = list(raw.items())
    else:
        levels = [(None, raw)]
    result: dict[str, LevelOutput] = {}
    for key, value in levels:
        cls, reg = _split(value, key, hint)
        out = _level(cls, reg, input_size, outputs, key, batch_size)
        name = f"P{out.stride.bit_length() - 1}"
        if name in result:
            raise InputError(f"model output has two outputs at stride {out.stride} ({name})")
        result[name] = out
    sizes = {o.cls.shape[0] for o in result.values()}
    if len(sizes) > 1:
        raise InputError(f"model outputs disagree on the batch size: {sorted(sizes)}")
    return dict(sorted(result.items(), key=lambda kv: kv[1].stride))


def _where(key: Any) -> str:
    return "model output" if key is None else f"model output {key!r}"


def _split(value: Any, key: Any, hint: str) -> tuple[Any, Any]:
    """(cls, reg) of one level's value: a dict with cls/reg, a tuple/list, or a tensor."""
    if isinstance(value, Tensor):
        return value, None
    if isinstance(value, Mapping):
        if "cls" not in value:
            raise InputError(
                f"{_where(key)} is a dict with keys {sorted(map(str, value))}; "
                f"expected {FORMS}{hint}"
            )
        return value["cls"], value.get("reg")
    if isinstance(value, tuple | list) and len(value) in (1, 2):
        return value[0], (value[1] if len(value) == 2 else None)
    kind = f"a {type(value).__name__}" + (
        f" of length {len(value)}" if isinstance(value, tuple | list) else ""
    )
    raise InputError(f"{_where(key)} is {kind}; expected {FORMS}{hint}")


def _stride(h: int, w: int, size: tuple[int, int], where: str) -> int:
    """The power-of-two stride s with (h, w) == (H/s, W/s) or (ceil(H/s), ceil(W/s))."""
    hh, ww = size
    for k in range(MAX_LEVEL + 1):
        s = 2**k
        if (h, w) == (math.ceil(hh / s), math.ceil(ww / s)):
            return s
    raise InputError(
        f"{where} of size {h}x{w} for input {hh}x{ww}: stride {hh / h:g}x{ww / w:g} "
        "is not a power of two (or differs between height and width)"
    )


def _level(
    cls: Any,
    reg: Any,
    size: tuple[int, int],
    outputs: str,
    key: Any,
    batch_size: int | None,
) -> LevelOutput:
    where = _where(key)
    if not isinstance(cls, Tensor):
        raise InputError(f"{where}: cls is a {type(cls).__name__}, expected a tensor")
    if cls.ndim == 3:
        cls = cls.unsqueeze(1)
    if cls.ndim != 4 or cls.shape[1] != 1:
        raise InputError(f"{where}: cls has shape {tuple(cls.shape)}, expected [B, 1, h, w]")
    b, _, h, w = cls.shape
    if batch_size is not None and b != batch_size:
        raise InputError(f"{where}: cls has batch size {b} for a batch of {batch_size} images")
    stride = _stride(h, w, size, f"{where} cls")
    if key is not None and 2 ** int(str(key)[1:]) != stride:
        raise InputError(
            f"{where}: key says {key} but its size {h}x{w} for input "
            f"{size[0]}x{size[1]} means stride {stride}"
        )
    if not cls.is_floating_point() or cls.dtype in (torch.float16, torch.bfloat16):
        cls = cls.float()  # half precision would saturate the logit of clamped probabilities
    if outputs == "probs":
        p = cls.clamp(PROB_EPS, 1 - PROB_EPS)
        cls = torch.log(p) - torch.log1p(-p)
    if reg is not None:
        if not isinstance(reg, Tensor):
            raise InputError(f"{where}: reg is a {type(reg).__name__}, expected a tensor")
        if reg.ndim != 4 or reg.shape[1] != 2 or reg.shape[0] != b or reg.shape[2:] != (h, w):
            raise InputError(
                f"{where}: reg has shape {tuple(reg.shape)}, expected [{b}, 2, {h}, {w}]"
            )
        if not reg.is_floating_point() or reg.dtype in (torch.float16, torch.bfloat16):
            reg = reg.float()
    return LevelOutput(cls=cls, reg=reg, stride=stride)
