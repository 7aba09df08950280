"""A model with the way to call it: adapter, output kind, padding and device."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from convdiag.load.outputs import LevelOutput, normalize_outputs


@dataclass
class ModelRunner:
    """A model with the way to call it: adapter, output kind (logits/probs), padding, device."""

    model: nn.Module
    adapter: Callable[[Any], Any] | None = None
    outputs: str = "logits"
    pad_to: int = 32
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    def __call__(self, images: torch.Tensor) -> dict[str, LevelOutput]:
        """Forward images [B, C, Hp, Wp] -> normalised outputs per level (logits)."""
        raw = self.model(images.to(self.device))
        return normalize_outputs(
            raw, (images.shape[-2], images.shape[-1]), self.outputs, self.adapter
        )
