"""Dead units: channels whose output never changes over the whole dataset (issue 16).

A network whose training blew up (a learning rate 10-100x too high) often ends with most
feature channels outputting exactly zero for every input, and BatchNorm running variances
far from 1. No label or loss remedy revives such units, so they are measured apart from the
score statistics. ``ActivationProbe(model)`` registers forward hooks on every convolution,
normalisation and activation module; each hook keeps, per output channel, the running
minimum and maximum over all images and cells (fixed size per layer: memory does not grow
with the dataset). A channel is *dead* when its minimum equals its maximum (constant output;
after a ReLU that constant is 0). ``compute()`` gives, per layer and over all layers, the
share of dead channels, the layer feeding the heads (the last probed layer before any module
whose name marks a head), and the spread of BatchNorm running statistics.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

PROBED = (nn.Conv2d, nn.BatchNorm2d, nn.GroupNorm, nn.ReLU, nn.SiLU, nn.LeakyReLU, nn.GELU)
HEAD_WORDS = ("head", "cls", "reg", "offset", "heatmap", "hm")


def _is_head(name: str) -> bool:
    return any(w in name.lower().split(".") or f"{w}_" in name.lower() for w in HEAD_WORDS)


class ActivationProbe:
    """Per-channel output range of every probed layer of ``model``, over every forward."""

    name = "activations"

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.lo: dict[str, np.ndarray] = {}
        self.hi: dict[str, np.ndarray] = {}
        self.order: list[str] = []
        self._handles: list[Any] = []
        for name, mod in model.named_modules():
            if isinstance(mod, PROBED) and name:
                self.order.append(name)
                self._handles.append(mod.register_forward_hook(self._hook(name)))

    def _hook(self, name: str) -> Any:
        def hook(_mod: nn.Module, _inp: Any, out: Any) -> None:
            if not isinstance(out, Tensor) or out.dim() < 2:
                return
            with torch.no_grad():
                x = out.detach().transpose(0, 1).reshape(out.shape[1], -1).double()
                x = torch.nan_to_num(x, nan=0.0)
                lo, hi = x.amin(dim=1).cpu().numpy(), x.amax(dim=1).cpu().numpy()
            if name in self.lo and self.lo[name].shape == lo.shape:
                np.minimum(self.lo[name], lo, out=self.lo[name])
                np.maximum(self.hi[name], hi, out=self.hi[name])
            else:
                self.lo[name], self.hi[name] = lo, hi

        return hook

    def close(self) -> None:
        """Remove the hooks."""
        for h in self._handles:
            h.remove()
        self._handles = []

    def state(self) -> dict[str, np.ndarray]:
        """Accumulators as plain arrays (``lo/<layer>``, ``hi/<layer>``)."""
        out = {f"lo/{k}": v.copy() for k, v in self.lo.items()}
        out.update({f"hi/{k}": v.copy() for k, v in self.hi.items()})
        return out

    def merge(self, state: dict[str, np.ndarray]) -> None:
        """Add another process's ranges (element-wise min and max)."""
        for key, v in state.items():
            kind, _, name = key.partition("/")
            store, op = (self.lo, np.minimum) if kind == "lo" else (self.hi, np.maximum)
            store[name] = op(store[name], v) if name in store else np.array(v, copy=True)

    def _bn_stats(self) -> dict[str, Any]:
        variances = [
            m.running_var.detach().double().cpu().numpy()
            for m in self.model.modules()
            if isinstance(m, nn.BatchNorm2d) and m.running_var is not None
        ]
        if not variances:
            return {"bn_layers": 0, "bn_var_max": None, "bn_var_median": None}
        v = np.concatenate(variances)
        v = v[np.isfinite(v)]
        return {
            "bn_layers": len(variances),
            "bn_var_max": float(v.max()) if v.size else math.inf,
            "bn_var_median": float(np.median(v)) if v.size else math.inf,
        }

    def compute(self) -> dict[str, Any]:
        """Dead-channel shares: per layer, over all layers, and at the layer feeding the heads.

        dead = (max == min) per channel over the dataset; ``feeding`` is the last probed
        layer whose name does not mark a head (None when every probed layer is a head).
        """
        layers: dict[str, dict[str, Any]] = {}
        dead_total = chans_total = 0
        for name in self.order:
            if name not in self.lo:
                continue
            dead = int(np.sum(self.hi[name] == self.lo[name]))
            n = int(self.lo[name].size)
            layers[name] = {"channels": n, "dead": dead, "dead_share": dead / n if n else 0.0}
            dead_total, chans_total = dead_total + dead, chans_total + n
        feeding = next((n for n in reversed(list(layers)) if not _is_head(n)), None)
        worst = max(layers, key=lambda n: layers[n]["dead_share"], default=None)
        return {
            "layers_probed": len(layers),
            "dead_share": dead_total / chans_total if chans_total else None,
            "feeding_layer": feeding,
            "feeding_dead_share": layers[feeding]["dead_share"] if feeding else None,
            "worst_layer": worst,
            "worst_dead_share": layers[worst]["dead_share"] if worst else None,
            **self._bn_stats(),
            "layers": layers,
        }
