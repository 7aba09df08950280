"""What ``Monitor.update`` reads: target points, the cls tensor of a level in any output
form, and the parameters of each head."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from convdiag.errors import InputError


def _points(targets: Any, n: int) -> list[np.ndarray]:
    if not isinstance(targets, Sequence) or isinstance(targets, str | bytes):
        raise InputError("Monitor.update: targets must be a list of [N, 2] (x, y) arrays per image")
    if len(targets) != n:
        raise InputError(f"Monitor.update: {len(targets)} target arrays for a batch of {n}")
    out = []
    for t in targets:
        a = t.detach().cpu().numpy() if isinstance(t, torch.Tensor) else np.asarray(t)
        out.append(np.asarray(a, dtype=np.float64).reshape(-1, 2))
    return out


def _cls_tensor(raw: Any, level: str) -> tuple[torch.Tensor, int | None]:
    """The cls tensor of ``level`` in a raw output (and the stride its key says, if any)."""
    if isinstance(raw, Mapping) and "cls" in raw:
        return raw["cls"], None
    if isinstance(raw, Mapping):
        for k, v in raw.items():
            if str(k).upper() == level:
                return _cls_tensor(v, level)[0], None
        k, v = next(iter(raw.items()))
        return _cls_tensor(v, level)[0], 2 ** int(str(k)[1:])
    if isinstance(raw, tuple | list):
        return raw[0], None
    return raw, None


def find_head_parameters(model: torch.nn.Module) -> dict[str, list[torch.nn.Parameter]]:
    """{"cls": [...], "reg": [...]}: ``head_parameters()`` of the model or of its first
    submodule that has it (a LightningModule wrapping a detector), else by parameter name
    (``analyze.head_parameters``)."""
    from convdiag.analyses.run import head_parameters

    for m in model.modules():
        if callable(getattr(m, "head_parameters", None)):
            groups = head_parameters(m)
            return {k: [p for _, p in v] for k, v in groups.items()}
    groups = head_parameters(model)
    return {k: [p for _, p in v] for k, v in groups.items()}


def image_sizes(image_size: Any, n: int) -> tuple[tuple[int, int], list[tuple[int, int]]]:
    """(padded size, per-image sizes) from one (H, W) or one per image."""
    sizes = list(image_size)
    if len(sizes) == 2 and all(isinstance(v, int | np.integer) for v in sizes):
        size = (int(sizes[0]), int(sizes[1]))
        return size, [size] * n
    per = [(int(h), int(w)) for h, w in sizes]
    if len(per) != n:
        raise InputError(f"Monitor.update: {len(per)} image sizes for a batch of {n}")
    return (max(h for h, _ in per), max(w for _, w in per)), per
