"""The reference point detector: a small CNN with a P2, P3, P4 or fused (P4 + P2) head.

Backbone (BatchNorm + ReLU after every 3x3 conv, stride-2 convs to go down one level)::

    image [B,C,H,W] -> space-to-depth 4x4 [B,16C,H/4,W/4] -> c2 (w ch, stride 4)
                    -> c3 (2w ch, stride 8) -> c4 (2w ch, stride 16)

The space-to-depth stem (``pixel_unshuffle``) sees each 4x4 pixel block whole, so the first
conv has a 12x12 pixel receptive field at no full-resolution cost: a PSF of sigma ~1 px is
well inside it, and a training step of 8 images at 240x320 takes ~0.06 s on 2 CPU cores.
The model is kept in channels-last memory format, which oneDNN runs ~1.4x faster on CPU.
A light top-down path (nearest upsampling + 1x1 lateral, FPN style) brings the context of
the coarse levels back to the head's level, so a P2 head sees a 100+ pixel receptive field
and can tell a dim PSF blob from clutter. Each head has a classification branch
(conv3x3-LeakyReLU-conv1x1 -> 1 logit) and an offset branch (the same -> 2, sigmoid,
offsets in cell units in [0, 1)).

``fused`` is the seed's coarse-to-fine answer to the multi-scale dilemma: P4 finds the target
(its own cls/reg outputs), P2 places it. The P2 logit is the upsampled P4 logit plus a P2
correction computed from P2 detail and the upsampled P4 features::

    cls_P2 = up4(cls_P4) + delta(concat(p2, up4(p4)))

Outputs follow DESIGN.md "Model outputs": ``{"P2": {"cls": [B,1,H/4,W/4], "reg": [B,2,...]}}``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from convdiag.errors import InputError

HEADS = ("P2", "P3", "P4", "fused")
# How much larger a P4 cell is than a P2 cell: the fused head's P4 prior is this times P2's.
_P4_PER_P2 = 16
_MAX_COARSE_PRIOR = 0.5


def prior_logit(prior: float) -> float:
    """The logit log(p / (1 - p)) of a probability p in (0, 1)."""
    return math.log(prior / (1.0 - prior))


def _conv_bn(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class _Branch(nn.Module):
    """conv3x3-LeakyReLU(0.1)-conv1x1: [B, cin, h, w] -> [B, cout, h, w].

    Leaky, not plain ReLU: with a zero classification bias the first steps push every logit
    down, the hidden units that could raise a target cell's logit die, and the logit there is
    stuck at the bias (~0, p < 0.5) for good -- a ceiling that would be the model's fault, not
    the recipe's. The 0.1 slope keeps a gradient path open.
    """

    def __init__(self, cin: int, cout: int, hidden: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, hidden, 3, padding=1)
        self.out = nn.Conv2d(hidden, cout, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.out(F.leaky_relu(self.conv(x), 0.1))


def _bias(conv: nn.Conv2d) -> nn.Parameter:
    assert isinstance(conv.bias, nn.Parameter)
    return conv.bias


class _Head(nn.Module):
    """Classification logits [B,1,h,w] and sigmoid offsets [B,2,h,w] from features [B,c,h,w]."""

    def __init__(self, cin: int, hidden: int, bias: float) -> None:
        super().__init__()
        self.cls = _Branch(cin, 1, hidden)
        self.reg = _Branch(cin, 2, hidden)
        # Small last layers: the initial logit is close to its bias everywhere.
        with torch.no_grad():
            for branch in (self.cls, self.reg):
                branch.out.weight.normal_(std=0.01)
            _bias(self.reg.out).zero_()
            _bias(self.cls.out).fill_(bias)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        # Plain contiguous outputs: callers may .view() them.
        return {"cls": self.cls(x).contiguous(), "reg": torch.sigmoid(self.reg(x)).contiguous()}


def _up(x: Tensor, like: Tensor) -> Tensor:
    """Nearest upsampling of x to the spatial size of ``like`` (any size: grids are ceil(H/s))."""
    return F.interpolate(x, size=like.shape[-2:], mode="nearest")


class ReferenceDetector(nn.Module):
    """The reference detector; build it with ``reference(...)``.

    forward(images [B, C, H, W], any H and W; usually multiples of 32) -> {level: {"cls", "reg"}}.
    ``config`` holds the constructor arguments (checkpoints are self-describing).
    """

    def __init__(
        self,
        head: str = "P2",
        width: int = 16,
        in_channels: int = 1,
        prior: float = 0.01,
        bias_init: str = "prior",
    ) -> None:
        super().__init__()
        head = _check_head(head)
        if int(width) < 2 or int(width) % 2:
            raise InputError(f"reference detector width {width!r}: use an even integer >= 2")
        if int(in_channels) < 1:
            raise InputError(f"reference detector in_channels {in_channels!r}: must be >= 1")
        if not 0.0 < float(prior) < 1.0:
            raise InputError(f"reference detector prior {prior!r}: must be in (0, 1)")
        if bias_init not in ("prior", "zero"):
            raise InputError(f"--bias-init {bias_init!r}: use prior or zero")
        w, prior = int(width), float(prior)
        self.config: dict[str, Any] = {
            "head": head,
            "width": w,
            "in_channels": int(in_channels),
            "prior": prior,
            "bias_init": bias_init,
        }
        self.head = head
        self.stem = nn.Sequential(_conv_bn(16 * int(in_channels), w), _conv_bn(w, w))
        self.down3 = nn.Sequential(_conv_bn(w, 2 * w, 2), _conv_bn(2 * w, 2 * w))
        self.down4 = nn.Sequential(_conv_bn(2 * w, 2 * w, 2), _conv_bn(2 * w, 2 * w))
        # Top-down laterals: 1x1 convs mapping the coarser features to the finer width.
        self.lat3: nn.Module | None = None
        self.lat2: nn.Module | None = None
        if head in ("P2", "P3"):
            self.lat3 = nn.Conv2d(2 * w, 2 * w, 1)
        if head == "P2":
            self.lat2 = nn.Conv2d(2 * w, w, 1)

        bias = prior_logit(prior) if bias_init == "prior" else 0.0
        self.heads = nn.ModuleDict()
        if head == "fused":
            coarse_prior = min(_MAX_COARSE_PRIOR, prior * _P4_PER_P2)
            coarse_bias = prior_logit(coarse_prior) if bias_init == "prior" else 0.0
            self.heads["P4"] = _Head(2 * w, w, coarse_bias)
            self.fuse = _conv_bn(w + 2 * w, w)
            # P2 correction on top of the upsampled P4 logit: the sum starts at ``bias``.
            self.heads["P2"] = _Head(w, w, bias - coarse_bias)
        else:
            cin = w if head == "P2" else 2 * w
            self.heads[head] = _Head(cin, w, bias)
        self.to(memory_format=torch.channels_last)  # type: ignore[call-overload]

    def forward(self, images: Tensor) -> dict[str, dict[str, Tensor]]:
        """images [B, C, H, W] float32 in [0, 1] -> {level: {"cls": logits, "reg": offsets}}.

        Level shapes: cls [B, 1, h, w], reg [B, 2, h, w] with (h, w) = (ceil(H/s), ceil(W/s))
        (H/s x W/s for the usual multiples of 32) and reg in (0, 1).
        """
        if images.ndim != 4 or images.shape[1] != self.config["in_channels"]:
            raise InputError(
                f"reference detector input {tuple(images.shape)}: expected [B, "
                f"{self.config['in_channels']}, H, W]"
            )
        h, w = images.shape[-2:]
        x = F.pad(images, (0, -w % 4, 0, -h % 4))  # grids are ceil(H/s) x ceil(W/s)
        x = F.pixel_unshuffle(x, 4).contiguous(memory_format=torch.channels_last)
        c2 = self.stem(x)
        c3 = self.down3(c2)
        c4 = self.down4(c3)
        if self.head == "P4":
            return {"P4": self.heads["P4"](c4)}
        if self.head == "fused":
            coarse = self.heads["P4"](c4)
            p2 = self.fuse(torch.cat([c2, _up(c4, c2)], dim=1))
            fine = self.heads["P2"](p2)
            fine["cls"] = (fine["cls"] + _up(coarse["cls"], c2)).contiguous()
            return {"P4": coarse, "P2": fine}
        assert self.lat3 is not None
        p3 = c3 + _up(self.lat3(c4), c3)
        if self.head == "P3":
            return {"P3": self.heads["P3"](p3)}
        assert self.lat2 is not None
        p2 = c2 + _up(self.lat2(p3), c2)
        return {"P2": self.heads["P2"](p2)}

    def head_parameters(self) -> dict[str, list[nn.Parameter]]:
        """Parameters of the classification and offset branches of every head.

        {"cls": [...], "reg": [...]}: for per-head gradient norms. The shared backbone and
        the fused head's fusion conv belong to neither.
        """
        out: dict[str, list[nn.Parameter]] = {"cls": [], "reg": []}
        for h in self.heads.values():
            assert isinstance(h, _Head)
            out["cls"].extend(h.cls.parameters())
            out["reg"].extend(h.reg.parameters())
        return out

    def head_parameter_names(self) -> dict[str, list[str]]:
        """Names (as in ``named_parameters``) of the parameters of ``head_parameters``."""
        return {
            kind: [n for n, _ in self.named_parameters() if f".{kind}." in n and "heads." in n]
            for kind in ("cls", "reg")
        }

    def cls_bias_parameters(self) -> list[nn.Parameter]:
        """The classification bias of each head (the one ``bias_init`` sets), coarse first."""
        heads = [self.heads[k] for k in sorted(self.heads, reverse=True)]
        return [_bias(h.cls.out) for h in heads if isinstance(h, _Head)]

    def cls_bias_names(self) -> list[str]:
        """Names of ``cls_bias_parameters``, same order."""
        return [f"heads.{k}.cls.out.bias" for k in sorted(self.heads, reverse=True)]


def _check_head(head: str) -> str:
    text = str(head).strip()
    if text.lower() == "fused":
        return "fused"
    name = text.upper()
    if name.isdigit():  # a stride, e.g. 4
        name = {"4": "P2", "8": "P3", "16": "P4"}.get(name, name)
    if name not in HEADS:
        raise InputError(f"--head {head!r}: use P2, P3, P4 or fused")
    return name


def reference(
    head: str = "P2",
    width: int = 16,
    in_channels: int = 1,
    prior: float = 0.01,
    bias_init: str = "prior",
) -> ReferenceDetector:
    """Build the reference detector (see the module docstring for the architecture).

    head: P2, P3, P4 or fused. width: channels at P2 (coarser levels have 2*width).
    prior: the label prior p; with ``bias_init="prior"`` the classification bias starts at
    log(p / (1 - p)) (the fused head's P4 bias at the prior of a 16x larger cell,
    min(0.5, 16 p), and its P2 logit, upsampled P4 plus correction, at log(p / (1 - p)));
    ``"zero"`` starts every classification bias at 0, as an untuned head does.
    width 16 gives about 43k parameters at P2 (46k P3, 45k P4, 57k fused).
    """
    return ReferenceDetector(head, width, in_channels, prior, bias_init)
