"""A model with the way to call it: adapter, output kind, padding and device."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from convdiag.errors import InputError
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
        """Forward images [B, C, Hp, Wp] -> normalised outputs per level (logits).

        A model whose forward fails on the batch (an unrelated module, a shape it does not
        take) is an InputError naming the batch shape and the model's own last line."""
        try:
            raw = self.model(images.to(self.device))
        except (RuntimeError, ValueError, TypeError, IndexError) as e:
            text = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
            if isinstance(e, torch.cuda.OutOfMemoryError) or "out of memory" in str(e):
                raise
            why = (text[-1] if text else type(e).__name__)[:300]
            raise InputError(
                f"the model fails on an image batch of shape {list(images.shape)}: {why} "
                "(is it a detector that takes [B, 1, H, W] images?)"
            ) from None
        return normalize_outputs(
            raw, (images.shape[-2], images.shape[-1]), self.outputs, self.adapter
        )
