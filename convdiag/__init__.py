"""convdiag: why a heatmap detector for tiny point targets does not converge, and the fix.

The library behind every command, imported lazily so that ``import convdiag`` stays fast
(no torch until a name that needs it is used)::

    import convdiag

    convdiag.synthesize("data", convdiag.SynthConfig(n=48, size=(96, 128), snr=5))
    run = convdiag.train("data", convdiag.Recipe(labels="hard", bias_init="zero"), out="runs/p2")
    report = convdiag.analyze_checkpoint(run.checkpoint, "data")
    fixed = convdiag.retrain(run.checkpoint, "data", ["focal-loss"], steps=300)

Data: ``load_dataset``, ``load_train_val``, ``synthesize``/``SynthConfig``. Labels:
``render_heatmap``, ``render_batch``, ``parse_schedule``, ``label_statistics``. Models:
``reference``, ``load_checkpoint``, ``ModelRunner``. Analysis: ``analyze_checkpoint``,
``analyze_dataset``, ``diagnose``, ``Finding``/``Remedy``. Training: ``train`` (a dataset,
as ``convdiag train``), ``run_training`` (a built model), ``retrain`` and
``retrain_compare``, ``Recipe``/``apply_remedy``. In a user's own loop: ``Monitor``,
``MonitorCallback`` (Lightning). Logs: ``analyze_log``. Options as the commands take them:
``DatasetOptions``, ``ModelOptions``, ``RecipeOptions``.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    # data
    "load_dataset": "convdiag.load.datasets",
    "load_train_val": "convdiag.load.datasets",
    "synthesize": "convdiag.load.synth",
    "SynthConfig": "convdiag.load.synth",
    # labels
    "render_heatmap": "convdiag.targets.labels",
    "render_batch": "convdiag.targets.labels",
    "parse_schedule": "convdiag.targets.labels",
    "label_statistics": "convdiag.diagnosis.labels",
    # models
    "reference": "convdiag.models.detector",
    "load_checkpoint": "convdiag.load.checkpoint",
    "ModelRunner": "convdiag.training.evaluate",
    # analysis and diagnosis
    "analyze_checkpoint": "convdiag.report.analyze",
    "analyze_dataset": "convdiag.remedies.analyze",
    "diagnose": "convdiag.diagnosis.rules",
    "Finding": "convdiag.diagnosis.findings",
    "Remedy": "convdiag.diagnosis.findings",
    # training and retraining
    "train": "convdiag.api",
    "retrain": "convdiag.api",
    "run_training": "convdiag.training.workflow",
    "retrain_compare": "convdiag.training.workflow",
    "ModelSpec": "convdiag.training.workflow",
    "Recipe": "convdiag.load.recipe",
    "apply_remedy": "convdiag.remedies.apply",
    # a user's own training loop, and training logs
    "Monitor": "convdiag.watch.monitor",
    "MonitorCallback": "convdiag.watch.monitor_lightning",
    "ConvdiagWarning": "convdiag.watch.monitor",
    "analyze_log": "convdiag.watch",
    # options, as the commands' flags
    "DatasetOptions": "convdiag.load.options",
    "ModelOptions": "convdiag.load.options",
    "RecipeOptions": "convdiag.load.options",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'convdiag' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
