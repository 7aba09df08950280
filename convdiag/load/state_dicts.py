"""Matching a checkpoint's state dict to a model: unwrapping, prefixes, head, shapes."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from convdiag.errors import InputError

# Keys under which checkpoints nest their weights, in order of preference.
WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "net", "ema", "state_dict_ema")
# Key prefixes added by wrappers: DDP/DataParallel, a LightningModule attribute, torch.compile.
PREFIXES = ("module.", "model.", "_orig_mod.")
_HEAD_WORDS = {"cls", "heatmap", "hm", "classifier", "classification", "class", "logits"}


def is_state_dict(obj: Any) -> bool:
    """A dict of str -> tensors (at least one tensor, no nested dicts)."""
    if not isinstance(obj, dict) or not obj:
        return False
    if not all(isinstance(k, str) for k in obj):
        return False
    values = list(obj.values())
    return any(isinstance(v, torch.Tensor) for v in values) and not any(
        isinstance(v, dict) for v in values
    )


def find_weights(obj: Any, depth: int = 0) -> tuple[dict[str, Any] | nn.Module | None, str]:
    """The state dict (or a pickled module) inside ``obj`` and the key path to it."""
    if isinstance(obj, nn.Module):
        return obj, ""
    if is_state_dict(obj):
        return obj, ""
    if not isinstance(obj, dict) or depth > 4:
        return None, ""
    for key in WRAPPER_KEYS:
        if key in obj:
            found, sub = find_weights(obj[key], depth + 1)
            if found is not None:
                return found, f"{key}.{sub}" if sub else key
    return None, ""


def kind_of(obj: dict[str, Any]) -> str:
    """lightning, mmengine or state_dict, from the top-level keys."""
    keys = set(obj)
    if "pytorch-lightning_version" in keys or keys & {
        "optimizer_states",
        "loops",
        "hyper_parameters",
    }:
        return "lightning"
    if "message_hub" in keys or ("meta" in keys and "state_dict" in keys):
        return "mmengine"
    return "state_dict"


def _chains(keys: set[str] | list[str], depth: int) -> set[str]:
    """Leading dotted chains of up to ``depth`` components: "a.b.c.w" -> {"a.", "a.b.", ...}."""
    out: set[str] = set()
    for k in keys:
        parts = k.split(".")[:-1]
        for i in range(1, min(depth, len(parts)) + 1):
            out.add(".".join(parts[:i]) + ".")
    return out


def match_prefixes(keys: list[str], model_keys: list[str]) -> tuple[dict[str, str], list[str]]:
    """Rename checkpoint keys to match the model: strip (or add) wrapper prefixes.

    A prefix is a leading chain of dotted components: DDP ``module.``, Lightning
    ``model.``, torch.compile ``_orig_mod.``, a wrapper's attribute (``net.``) or several
    (``module._orig_mod.``). Greedy: repeatedly apply the one change among "strip P from the
    keys that start with P" (P a chain of up to 4 components of the checkpoint keys) and
    "add Q to every key" (Q a chain of up to 2 components of the model keys) that most
    increases the number of keys found in the model (ties: ``PREFIXES`` first, then the
    shorter), while some change increases it. Returns ({old: new}, changes made).
    """
    target = set(model_keys)
    current = {k: k for k in keys}
    changes: list[str] = []

    def rank(p: str) -> tuple[int, int, str]:
        return (0 if p in PREFIXES else 1, len(p), p)

    while len(changes) < 8:
        score = sum(v in target for v in current.values())
        options: list[tuple[int, tuple[int, int, str], dict[str, str], str]] = []
        for p in _chains(list(current.values()), 4):
            cand = {k: v[len(p) :] if v.startswith(p) else v for k, v in current.items()}
            options.append(
                (sum(v in target for v in cand.values()), rank(p), cand, f"stripped {p!r}")
            )
        for q in _chains(target, 2):
            cand = {k: q + v for k, v in current.items()}
            options.append((sum(v in target for v in cand.values()), rank(q), cand, f"added {q!r}"))
        better = [o for o in options if o[0] > score]
        if not better:
            break
        best = min(better, key=lambda o: (-o[0], o[1]))
        current = best[2]
        changes.append(best[3])
    return current, changes


def head_keys(model: nn.Module) -> set[str]:
    """State-dict keys of the model's classification head.

    The reference detector says (``head_parameter_names()["cls"]``); otherwise keys with a
    dotted component whose ``_``-separated words include cls/heatmap/hm/classifier/logits
    (``heads.P2.cls.out.weight``, ``hm_head.0.bias``); if no key has one, the parameters of
    the last convolution.
    """
    keys = list(model.state_dict())
    names = getattr(model, "head_parameter_names", None)
    if callable(names):
        try:
            cls = set(names().get("cls", []))
            if cls:
                return cls
        except Exception:
            pass
    found = set()
    for k in keys:
        parts = k.split(".")[:-1]
        words = {w for part in parts for w in re.split(r"[_\d]+", part.lower()) if w}
        if words & _HEAD_WORDS:
            found.add(k)
    if found:
        return found
    convs = [n for n, m in model.named_modules() if isinstance(m, nn.modules.conv._ConvNd)]
    if not convs:
        return set()
    last = convs[-1]
    return {k for k in keys if k.rsplit(".", 1)[0] == last}


def load_weights(
    model: nn.Module, state: dict[str, Any], path: Path, source: str, notes: list[str]
) -> tuple[list[str], list[str]]:
    """Load ``state`` into ``model`` (after prefix matching); (missing, unexpected) keys.

    No common key, a shape mismatch, or a missing classification head -> InputError.
    """
    tensors = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
    own = model.state_dict()
    rename, changes = match_prefixes(list(tensors), list(own))
    if changes:
        notes.append(f"key prefixes: {', '.join(changes)}")
    renamed = {rename[k]: v for k, v in tensors.items()}
    common = [k for k in own if k in renamed]
    if not common:
        ours = ", ".join(list(own)[:3])
        theirs = ", ".join(list(tensors)[:3])
        raise InputError(
            f"{path}: no weight of the model ({source}) is in the checkpoint: it has "
            f"{theirs or 'no tensors'}; the model expects {ours}"
        )
    for k in common:
        if renamed[k].is_meta:
            raise InputError(
                f"{path}: {k} is a meta-device tensor (a shape without data): save the "
                "checkpoint after its weights are materialised"
            )
        if tuple(renamed[k].shape) != tuple(own[k].shape):
            raise InputError(
                f"{path}: checkpoint does not fit the model ({source}): {k} has shape "
                f"{list(renamed[k].shape)} in the checkpoint, {list(own[k].shape)} in the model"
            )
    missing = [k for k in own if k not in renamed]
    unexpected = [k for k in renamed if k not in own]
    head = head_keys(model)
    lost = [k for k in missing if k in head]
    if lost:
        raise InputError(
            f"{path}: the checkpoint has no classification head for the model ({source}): "
            f"missing {', '.join(lost[:4])}{' ...' if len(lost) > 4 else ''}"
        )
    model.load_state_dict({k: renamed[k] for k in common}, strict=False)
    return missing, unexpected
