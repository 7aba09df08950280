"""The training recipe: how a checkpoint was (or is to be) trained, and remedies applied to it.

A Recipe is plain data stored in every convdiag checkpoint (DESIGN.md "Checkpoints"), so
``analyze`` and ``retrain`` need no other flag. Remedies (DESIGN.md "Remedies") are applied
with ``apply_remedy(recipe, "soft-labels", {"kernel": 5})``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from convdiag.errors import InputError
from convdiag.load.levels import level_name


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
        if int(self.kernel) < 1:
            raise InputError(f"--kernel {self.kernel}: must be at least 1")
        if float(self.sigma) <= 0:
            raise InputError(f"--sigma {self.sigma}: must be positive")
        if not 0 <= float(self.trunc) < 1:
            raise InputError(f"--trunc {self.trunc}: must be in [0, 1)")
        if self.crop is not None:
            self.crop = (int(self.crop[0]), int(self.crop[1]))

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
