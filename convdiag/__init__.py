"""convdiag: why a heatmap detector for tiny point targets does not converge, and the fix.

The public API is imported lazily so that ``import convdiag`` stays fast.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "render_heatmap": "convdiag.labels",
    "render_batch": "convdiag.labels",
    "parse_schedule": "convdiag.labels",
    "label_statistics": "convdiag.label_stats",
    "load_dataset": "convdiag.data.loaders",
    "synthesize": "convdiag.data.synth",
    "Recipe": "convdiag.recipe",
    "apply_remedy": "convdiag.recipe",
    "Finding": "convdiag.findings",
    "Remedy": "convdiag.findings",
    "Monitor": "convdiag.monitor",
    "MonitorCallback": "convdiag.monitor",
    "ConvdiagWarning": "convdiag.monitor",
    "analyze_log": "convdiag.logs",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'convdiag' has no attribute {name!r}")
