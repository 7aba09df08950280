"""Dead units: channels whose output never changes over the whole dataset (issue 16).

A network whose training blew up (a learning rate 10-100x too high) often ends with most
feature channels outputting exactly zero for every input, and BatchNorm running variances
far from 1. No label or loss remedy revives such units, so they are measured apart from the
score statistics.

``ActivationProbe(model)`` registers forward hooks on every convolution, normalisation and
activation module (4-D outputs [B, C, h, w]) and forward pre-hooks on the modules that open
a head, which see the features *feeding* the heads. Each hook keeps, per channel, the
running minimum and maximum over all images and cells (fixed size per layer: memory does
not grow with the dataset; ranges merge by element-wise min and max). A channel is *dead*
when its output is constant over the dataset::

    dead  <=>  hi - lo <= DEAD_RTOL * max(|lo|, |hi|)      (after a ReLU: lo = hi = 0)

Heads are found by name (a dotted part, or a prefix before "_", in HEAD_WORDS: the
outermost such module opens a head); a model with no such name falls back on its 2-D
convolutions with at most HEAD_MAX_CHANNELS outputs reading more channels than that (the
1x1 logit / offset layers). With neither, the feeding layer is the last probed layer in
the order the forward ran. Modules that take no hooks (TorchScript) are not probed.

``ActivationAnalysis`` is the pass's per-level analysis: the probe's summary (shared by
every level of the pass) plus whether the level's outputs vary across images at all: per
grid position, the minimum and maximum over images of the logit (and of each offset
channel) at valid cells; ``cls_image_range`` is the largest (max - min) over positions seen
by at least two images (0: every image gets the same output map).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from convdiag.analyses.base import AnalysisContext, AnalysisStep

PROBED = (
    nn.Conv2d,
    nn.BatchNorm2d,
    nn.SyncBatchNorm,
    nn.GroupNorm,
    nn.InstanceNorm2d,
    nn.ReLU,
    nn.ReLU6,
    nn.SiLU,
    nn.LeakyReLU,
    nn.GELU,
    nn.ELU,
    nn.PReLU,
    nn.Hardswish,
    nn.Mish,
)
HEAD_WORDS = ("head", "cls", "reg", "offset", "heatmap", "hm")
HEAD_MAX_CHANNELS = 4
DEAD_RTOL = 1e-6  # float32 rounding of a constant computed at different positions
MAX_LAYERS_REPORTED = 50
INPUT_SUFFIX = ":input"


def _is_head(name: str) -> bool:
    low = name.lower()
    return any(w in low.split(".") or f"{w}_" in low for w in HEAD_WORDS)


def _head_entries(model: nn.Module) -> list[str]:
    """Names of the modules that open a head (see the module docstring)."""
    named = [(n, m) for n, m in model.named_modules() if n]
    heads = [n for n, _ in named if _is_head(n)]
    outer = [n for n in heads if not any(n.startswith(h + ".") for h in heads if h != n)]
    if outer:
        return outer
    return [
        n
        for n, m in named
        if isinstance(m, nn.Conv2d) and m.out_channels <= HEAD_MAX_CHANNELS < m.in_channels
    ]


def _ranges(x: Tensor) -> tuple[np.ndarray, np.ndarray] | None:
    """Per-channel (min, max) of a [B, C, h, w] tensor as float64 arrays; NaN counts as 0."""
    if not isinstance(x, Tensor) or x.dim() != 4 or not x.is_floating_point():
        return None
    with torch.no_grad():
        x = x.detach()
        lo, hi = x.amin(dim=(0, 2, 3)), x.amax(dim=(0, 2, 3))
        if not bool(torch.isfinite(lo).all() and torch.isfinite(hi).all()):
            x = torch.nan_to_num(x, nan=0.0)
            lo, hi = x.amin(dim=(0, 2, 3)), x.amax(dim=(0, 2, 3))
        return lo.double().cpu().numpy(), hi.double().cpu().numpy()


def dead_count(lo: np.ndarray, hi: np.ndarray) -> int:
    """Channels whose range is constant: hi - lo <= DEAD_RTOL * max(|lo|, |hi|)."""
    scale = np.maximum(np.abs(lo), np.abs(hi))
    with np.errstate(invalid="ignore"):
        return int(np.sum((hi - lo) <= DEAD_RTOL * scale))


class ActivationProbe:
    """Per-channel output range of every probed layer of ``model``, over every forward."""

    name = "activations"

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.lo: dict[str, np.ndarray] = {}
        self.hi: dict[str, np.ndarray] = {}
        self.order: list[str] = []  # registration order
        self.ran: list[str] = []  # the order the forward ran them (first call)
        self.heads: list[str] = []
        self._handles: list[Any] = []
        entries = set(_head_entries(model))
        for name, mod in model.named_modules():
            if not name:
                continue
            try:
                if isinstance(mod, PROBED):
                    self._handles.append(mod.register_forward_hook(self._hook(name)))
                    self.order.append(name)
                if name in entries:
                    key = name + INPUT_SUFFIX
                    self._handles.append(mod.register_forward_pre_hook(self._pre_hook(key)))
                    self.heads.append(key)
            except (RuntimeError, AttributeError):  # TorchScript modules take no hooks
                continue

    def _record(self, name: str, x: Any) -> None:
        r = _ranges(x)
        if r is None:
            return
        lo, hi = r
        if name in self.lo and self.lo[name].shape == lo.shape:
            np.minimum(self.lo[name], lo, out=self.lo[name])
            np.maximum(self.hi[name], hi, out=self.hi[name])
        else:
            if name not in self.lo:
                self.ran.append(name)
            self.lo[name], self.hi[name] = lo, hi

    def _hook(self, name: str) -> Any:
        def hook(_mod: nn.Module, _inp: Any, out: Any) -> None:
            self._record(name, out)

        return hook

    def _pre_hook(self, name: str) -> Any:
        def hook(_mod: nn.Module, inp: Any) -> None:
            if isinstance(inp, tuple) and inp:
                self._record(name, inp[0])

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
        """Add another process's ranges (element-wise min and max; merging twice is a no-op)."""
        for key, v in state.items():
            kind, _, name = key.partition("/")
            store, op = (self.lo, np.minimum) if kind == "lo" else (self.hi, np.maximum)
            store[name] = op(store[name], v) if name in store else np.array(v, copy=True)
            if name not in self.ran:
                self.ran.append(name)

    def _bn_stats(self) -> dict[str, Any]:
        """Running-variance spread of the BatchNorm layers: min, median, max, max / median."""
        variances = [
            m.running_var.detach().double().cpu().numpy()
            for m in self.model.modules()
            if isinstance(m, nn.BatchNorm2d | nn.SyncBatchNorm) and m.running_var is not None
        ]
        if not variances:
            return {"bn_layers": 0, "bn_var_max": None, "bn_var_median": None,
                    "bn_var_min": None, "bn_var_ratio": None}  # fmt: skip
        v = np.concatenate(variances)
        v = v[np.isfinite(v)]
        med = float(np.median(v)) if v.size else math.inf
        vmax = float(v.max()) if v.size else math.inf
        return {
            "bn_layers": len(variances),
            "bn_var_max": vmax,
            "bn_var_median": med,
            "bn_var_min": float(v.min()) if v.size else math.inf,
            "bn_var_ratio": vmax / med if med > 0 and math.isfinite(med) else None,
        }

    def compute(self) -> dict[str, Any]:
        """Dead-channel shares: per layer, over all layers, and at the features feeding the
        heads (pooled over the head inputs; see the module docstring).

        dead_share = dead channels / channels over the probed layers (head inputs apart);
        feeding_dead_share = the same over the head inputs, else at the last layer that ran.
        """
        layers: dict[str, dict[str, Any]] = {}
        dead_total = chans_total = 0
        heads = [h for h in self.heads if h in self.lo]
        for name in [*self.order, *heads]:
            if name not in self.lo:
                continue
            dead = dead_count(self.lo[name], self.hi[name])
            n = int(self.lo[name].size)
            layers[name] = {"channels": n, "dead": dead, "dead_share": dead / n if n else 0.0}
            if name not in heads:
                dead_total, chans_total = dead_total + dead, chans_total + n
        feeding: str | None
        if heads:
            feeding = ", ".join(heads)
            fc = sum(layers[h]["channels"] for h in heads)
            fd = sum(layers[h]["dead"] for h in heads)
        else:
            body = [n for n in self.ran if n in layers and not _is_head(n)]
            last = body[-1] if body else None
            feeding = last
            fc = layers[last]["channels"] if last else 0
            fd = layers[last]["dead"] if last else 0
        body_layers = [n for n in layers if n not in heads]
        worst = max(body_layers, key=lambda n: layers[n]["dead_share"], default=None)
        if len(layers) > MAX_LAYERS_REPORTED:
            keep = sorted(layers, key=lambda n: -layers[n]["dead_share"])[:MAX_LAYERS_REPORTED]
            layers = {n: layers[n] for n in layers if n in keep or n in heads}
        return {
            "layers_probed": len(body_layers),
            "channels": chans_total,
            "dead_channels": dead_total,
            "dead_share": dead_total / chans_total if chans_total else None,
            "feeding_layer": feeding,
            "feeding_channels": fc,
            "feeding_dead": fd,
            "feeding_dead_share": fd / fc if fc else None,
            "worst_layer": worst,
            "worst_dead_share": layers[worst]["dead_share"] if worst else None,
            **self._bn_stats(),
            "layers": layers,
        }


class _Ranges:
    """Per grid position min / max over images of a [B, C, h, w] output at valid cells."""

    def __init__(self, channels: int, grid: tuple[int, int]) -> None:
        self.lo = np.full((channels, *grid), np.inf)
        self.hi = np.full((channels, *grid), -np.inf)
        self.cnt = np.zeros(grid)

    def _grow(self, h: int, w: int) -> None:
        _c, gh, gw = self.lo.shape
        if h <= gh and w <= gw:
            return
        nh, nw = max(h, gh), max(w, gw)
        pad = ((0, 0), (0, nh - gh), (0, nw - gw))
        self.lo = np.pad(self.lo, pad, constant_values=np.inf)
        self.hi = np.pad(self.hi, pad, constant_values=-np.inf)
        self.cnt = np.pad(self.cnt, pad[1:])

    def add(self, x: Tensor, valid: Tensor) -> None:
        """x [B, C, h, w] float64 (finite), valid [B, 1, h, w] bool."""
        h, w = int(x.shape[-2]), int(x.shape[-1])
        self._grow(h, w)
        v = valid.expand_as(x)
        inf = torch.tensor(math.inf, dtype=x.dtype)
        lo = torch.where(v, x, inf).amin(0).numpy()
        hi = torch.where(v, x, -inf).amax(0).numpy()
        np.minimum(self.lo[:, :h, :w], lo, out=self.lo[:, :h, :w])
        np.maximum(self.hi[:, :h, :w], hi, out=self.hi[:, :h, :w])
        self.cnt[:h, :w] += valid[:, 0].sum(0).double().numpy()

    def state(self, prefix: str) -> dict[str, np.ndarray]:
        return {f"{prefix}lo": self.lo.copy(), f"{prefix}hi": self.hi.copy(),
                f"{prefix}cnt": self.cnt.copy()}  # fmt: skip

    def merge(self, state: dict[str, np.ndarray], prefix: str) -> None:
        lo, hi, cnt = state[f"{prefix}lo"], state[f"{prefix}hi"], state[f"{prefix}cnt"]
        self._grow(int(lo.shape[1]), int(lo.shape[2]))
        h, w = int(lo.shape[1]), int(lo.shape[2])
        np.minimum(self.lo[:, :h, :w], lo, out=self.lo[:, :h, :w])
        np.maximum(self.hi[:, :h, :w], hi, out=self.hi[:, :h, :w])
        self.cnt[:h, :w] += cnt

    def image_range(self) -> float | None:
        """max over positions seen by >= 2 images and channels of (max - min); None if none."""
        seen = self.cnt >= 2
        if not seen.any():
            return None
        return float((self.hi - self.lo)[:, seen].max())

    def abs_max(self) -> float | None:
        seen = self.cnt >= 1
        if not seen.any():
            return None
        return float(np.maximum(np.abs(self.lo[:, seen]), np.abs(self.hi[:, seen])).max())


class ActivationAnalysis:
    """Dead units (the shared probe) and image-independent outputs of one level."""

    name = "activations"

    def __init__(self, ctx: AnalysisContext, probe: ActivationProbe | None = None) -> None:
        self.probe = probe
        self.cls = _Ranges(1, ctx.max_grid)
        self.reg = _Ranges(2, ctx.max_grid)
        self.images = 0.0

    def update(self, step: AnalysisStep) -> None:
        """Add one batch's output ranges (the probe's hooks saw its forward already)."""
        self.images += len(step.sizes)
        self.cls.add(step.logits.double(), step.valid)
        if step.reg is not None:
            self.reg.add(step.reg.double(), step.valid)

    def state(self) -> dict[str, np.ndarray]:
        """Output ranges, image count and the probe's ranges (``probe/...``)."""
        out = {**self.cls.state("cls_"), **self.reg.state("reg_"),
               "images": np.array(self.images)}  # fmt: skip
        if self.probe is not None:
            out.update({f"probe/{k}": v for k, v in self.probe.state().items()})
        return out

    def merge(self, state: dict[str, np.ndarray]) -> None:
        """Add another process's state (ranges by min / max, counts by addition)."""
        self.cls.merge(state, "cls_")
        self.reg.merge(state, "reg_")
        self.images += float(state["images"])
        if self.probe is not None:
            self.probe.merge({k[6:]: v for k, v in state.items() if k.startswith("probe/")})

    def arrays(self) -> dict[str, Any]:
        """No plot-only arrays."""
        return {}

    def compute(self) -> dict[str, Any]:
        """The probe's summary (``ActivationProbe.compute``; None values without a probe)
        plus images, cls_image_range, cls_abs_max, cls_image_range_rel = cls_image_range /
        max(1, cls_abs_max) and reg_image_range (see the module docstring)."""
        res: dict[str, Any] = (
            self.probe.compute()
            if self.probe is not None
            else {"layers_probed": 0, "dead_share": None, "feeding_layer": None,
                  "feeding_dead_share": None, "bn_var_max": None, "bn_var_median": None}
        )  # fmt: skip
        rng, amax = self.cls.image_range(), self.cls.abs_max()
        res.update(
            {
                "images": int(self.images),
                "cls_image_range": rng,
                "cls_abs_max": amax,
                "cls_image_range_rel": None if rng is None else rng / max(1.0, amax or 0.0),
                "reg_image_range": self.reg.image_range(),
            }
        )
        return res
