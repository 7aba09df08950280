"""The training recipe: how a checkpoint was (or is to be) trained, and remedies applied to it.

A Recipe is plain data stored in every convdiag checkpoint (DESIGN.md "Checkpoints"), so
``analyze`` and ``retrain`` need no other flag. Remedies (DESIGN.md "Remedies") are applied
with ``apply_remedy(recipe, "soft-labels", {"kernel": 5})``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from convdiag.errors import InputError
from convdiag.load.levels import level_name

MAX_KERNEL = 63  # soft-label window, cells: wider is no longer a point target
MAX_CROP = 16384  # training crop side, px
MAX_SEED = 2**32 - 1  # as convdiag.load.options.MAX_SEED
# field -> (type, low, high, low excluded): what every recipe value must be, from wherever
# it comes (flags, --remedy parameters, a checkpoint, a config file)
_RANGES: dict[str, tuple[type, float, float, bool]] = {
    "kernel": (int, 1, MAX_KERNEL, False),
    "sigma": (float, 0.0, float(MAX_KERNEL), True),
    "trunc": (float, 0.0, 1.0, False),
    "focal_alpha": (float, 0.0, 100.0, False),
    "focal_beta": (float, 0.0, 100.0, False),
    "sf_alpha": (float, 0.0, 1.0, False),
    "sf_gamma": (float, 0.0, 100.0, False),
    "pos_weight": (float, 0.0, 1e9, True),
    "ohem": (float, 0.0, 1e9, True),
    "oversample": (float, 0.0, 1.0, False),
    "copy_paste": (int, 0, 1000, False),
    "reg_weight": (float, 0.0, 1e9, False),
    "lr": (float, 0.0, 1e3, True),
    "batch": (int, 1, 1_000_000, False),
    "steps": (int, 0, 10**12, False),
    "seed": (int, 0, MAX_SEED, False),
    "crop": (int, 1, MAX_CROP, False),  # each side
    "ramp": (float, 0.0, 1e9, False),  # each value of loss_ramp
}

_FIELDS = [k for k in _RANGES if k not in ("crop", "ramp")]


def check_value(name: str, value: Any) -> Any:
    """``value`` as the recipe field ``name`` takes it (see _RANGES); ValueError saying why
    not. The flags, --remedy parameters, checkpoints and config files all come here."""
    kind, lo, hi, open_lo = _RANGES[name]
    if value is None and name in ("pos_weight", "ohem"):
        return None
    try:
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise TypeError
        v = float(value)
        if kind is int and (not math.isfinite(v) or v != int(v)):
            raise ValueError
        out = int(v) if kind is int else v
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"not a {'whole ' if kind is int else ''}number") from None
    inside = (lo < out if open_lo else lo <= out) and (out < hi if name == "trunc" else out <= hi)
    if not (math.isfinite(v) and inside):
        upper = "< 1" if name == "trunc" else f"<= {hi:g}"
        raise ValueError(f"must be a finite number {'>' if open_lo else '>='} {lo:g} and {upper}")
    return out


def _checked(name: str, value: Any) -> Any:
    """``check_value`` with the error naming the flag: InputError '--name VALUE: why'."""
    try:
        return check_value(name, value)
    except ValueError as e:
        shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:20] + "..."
        raise InputError(f"--{name.replace('_', '-')} {shown}: {e}") from None


@dataclass
class Recipe:
    """How a detector is trained.

    head: reference-detector head (P2, P3, P4 or fused); for a user's model, the level
    its classification output is supervised at. labels: hard or soft (kernel, sigma, trunc),
    or a soft-label ``schedule`` string ("dynamic" or "END:K:SIGMA,..."). loss: bce, focal
    (CenterNet, alpha/beta) or sigmoid-focal (alpha/gamma). pos_weight: BCE weight of positive
    cells. ohem: negatives kept per positive (None = off). loss_ramp: cls-loss weight ramp
    {start, end, ramp, cap}. oversample: share of crops centred near a target. copy_paste:
    targets pasted per image. bias_init: prior or zero. reg_weight: weight of the offset L1.
    """

    head: str = "P2"
    labels: str = "hard"
    kernel: int = 3
    sigma: float = 1.0
    trunc: float = 0.1
    schedule: str | None = None
    loss: str = "bce"
    focal_alpha: float = 2.0
    focal_beta: float = 4.0
    sf_alpha: float = 0.25
    sf_gamma: float = 2.0
    pos_weight: float | None = None
    ohem: float | None = None
    loss_ramp: dict[str, float] | None = None
    oversample: float = 0.0
    copy_paste: int = 0
    bias_init: str = "prior"
    reg_weight: float = 1.0
    lr: float = 3e-3
    batch: int = 8
    crop: tuple[int, int] | None = None
    steps: int = 0
    seed: int = 0
    remedies: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.head != "fused":
            self.head = level_name(self.head)
        if self.labels not in ("hard", "soft"):
            raise InputError(f"--labels {self.labels!r}: use hard or soft")
        if self.loss not in ("bce", "focal", "sigmoid-focal"):
            raise InputError(f"--loss {self.loss!r}: use bce, focal or sigmoid-focal")
        if self.bias_init not in ("prior", "zero"):
            raise InputError(f"--bias-init {self.bias_init!r}: use prior or zero")
        for name in _FIELDS:
            setattr(self, name, _checked(name, getattr(self, name)))
        if self.loss_ramp is not None:
            if not isinstance(self.loss_ramp, dict):
                raise InputError(f"--loss-ramp {self.loss_ramp!r}: not a set of numbers")
            self.loss_ramp = {str(k): _checked("ramp", v) for k, v in self.loss_ramp.items()}
        if self.crop is not None:
            try:
                h, w = self.crop
            except (TypeError, ValueError):
                raise InputError(f"--crop {self.crop!r}: use HxW") from None
            self.crop = (_checked("crop", h), _checked("crop", w))

    @property
    def level(self) -> str:
        """The finest supervised level (fused: P2)."""
        return "P2" if self.head == "fused" else self.head

    @property
    def soft(self) -> bool:
        """True when labels are soft (fixed window or schedule)."""
        return self.labels == "soft" or self.schedule is not None

    def to_dict(self) -> dict[str, Any]:
        """Plain data (only str, int, float, bool, None, list, dict) for checkpoints and JSON."""
        d = dataclasses.asdict(self)
        d["crop"] = list(self.crop) if self.crop else None
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Recipe:
        """Inverse of ``to_dict``; unknown keys are ignored (newer checkpoints)."""
        names = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in d.items() if k in names}
        if kw.get("crop") is not None:
            kw["crop"] = tuple(kw["crop"])
        return cls(**kw)

    def describe(self) -> str:
        """One line, e.g. 'P2, soft 3x3 sigma 1.0, focal'."""
        if self.schedule:
            lab = f"soft schedule {self.schedule}"
        elif self.labels == "soft":
            lab = f"soft {self.kernel}x{self.kernel} sigma {self.sigma:g}"
        else:
            lab = "hard"
        parts = [self.head, lab, self.loss]
        if self.pos_weight:
            parts.append(f"pos_weight {self.pos_weight:g}")
        if self.ohem:
            parts.append(f"OHEM 1:{self.ohem:g}")
        if self.loss_ramp:
            parts.append("loss ramp")
        if self.oversample:
            parts.append(f"oversample {self.oversample:g}")
        if self.copy_paste:
            parts.append(f"copy-paste {self.copy_paste}")
        parts.append(f"bias {self.bias_init}")
        return ", ".join(parts)
