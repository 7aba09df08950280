"""The option groups of every command as plain data (DESIGN.md "Command surface").

Each decorator adds its options and folds their values into one keyword argument of the
command: ``dataset_options`` -> ``dataset: DatasetOptions``, ``model_options`` ->
``model_opts: ModelOptions``, ``recipe_options`` -> ``recipe_opts: RecipeOptions``,
``run_options`` -> ``run: RunOptions``. Values a user did not give stay None, so a
convdiag checkpoint's own recipe wins over defaults but not over explicit flags.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

MAX_SEED = 2**32 - 1  # what every generator takes (numpy SeedSequence, torch, random)
MAX_PAD_TO = 1024  # --pad-to: a multiple beyond any detector's stride only costs memory


@dataclass(frozen=True)
class DatasetOptions:
    """How to read a dataset: format, split, mismatch policy, point coordinates, images dir."""

    data_format: str = "auto"
    split: str | None = None
    val_split: str | None = None
    on_mismatch: str = "error"
    coords: str = "continuous"
    images: str | None = None


@dataclass(frozen=True)
class ModelOptions:
    """How to build and call a model that is not (only) described by its checkpoint."""

    model: str | None = None
    model_args: dict[str, str] = field(default_factory=dict)
    adapter: str | None = None
    outputs: str = "logits"
    pad_to: int = 32
    trust_checkpoint: bool = False


@dataclass(frozen=True)
class RecipeOptions:
    """Training-recipe flags as given (None = not given on the command line)."""

    labels: str | None = None
    kernel: int | None = None
    sigma: float | None = None
    trunc: float | None = None
    schedule: str | None = None
    loss: str | None = None
    pos_weight: float | None = None
    ohem: float | None = None
    oversample: float | None = None
    bias_init: str | None = None

    def given(self) -> dict[str, Any]:
        """The flags the user gave, as a dict."""
        return {k: v for k, v in self.__dict__.items() if v is not None}


@dataclass(frozen=True)
class RunOptions:
    """Seed, device, output format, output directory and exit-code bar."""

    seed: int = 0
    device: str = "cpu"
    format: str = "table"
    out: str | None = None
    fail_on: str | None = None
