"""A report written into the user's TensorBoard run (``--tensorboard LOGDIR``).

With torch's own ``SummaryWriter`` (the ``tensorboard`` package is an optional extra), at the
step the checkpoint was trained to, so the values line up with the user's own curves:

- scalars ``convdiag/<level>/<metric>`` for every number in ``report["metrics"]`` (per
  level, or top-level), and ``convdiag/findings/<severity>`` (how many findings of each);
- text ``convdiag/findings``: the verdict and one line per finding with its evidence;
- images ``convdiag/<level>/<plot>`` from the report's PNG plots (gradient map, score
  histogram, label overlay, ...), read from the report's folder;
- scalars ``convdiag/race/<arm>/f1`` for a raced report's rungs, at their steps.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from convdiag.errors import InputError
from convdiag.report.html import plot_entries


def _writer(logdir: str | os.PathLike[str]) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise InputError(
            "--tensorboard needs the tensorboard package: pip install 'convdiag[tensorboard]'"
        ) from None
    try:
        return SummaryWriter(log_dir=str(logdir))
    except OSError as e:
        raise InputError(f"--tensorboard {logdir}: cannot write ({e.strerror or e})") from None


def _numbers(d: dict[str, Any]) -> dict[str, float]:
    return {
        k: float(v)
        for k, v in d.items()
        if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(float(v))
    }


def write_tensorboard(
    report: dict[str, Any], logdir: str | os.PathLike[str], step: int, base: Path | None = None
) -> list[str]:
    """Write ``report`` (plain data of any kind) into the TensorBoard run ``logdir`` at
    ``step``; ``base``: the folder its plot files are in. Returns the tags written."""
    from PIL import Image

    w = _writer(logdir)
    tags: list[str] = []
    try:
        metrics = report.get("metrics") or {}
        for key, value in metrics.items():
            if isinstance(value, dict):
                for name, v in _numbers(value).items():
                    tags.append(f"convdiag/{key}/{name}")
                    w.add_scalar(tags[-1], v, step)
        for name, v in _numbers(metrics).items():
            tags.append(f"convdiag/{name}")
            w.add_scalar(tags[-1], v, step)
        findings = [f for f in report.get("findings") or [] if isinstance(f, dict)]
        for sev in ("error", "warning", "info"):
            tags.append(f"convdiag/findings/{sev}")
            w.add_scalar(tags[-1], sum(f.get("severity") == sev for f in findings), step)
        lines = [f"**{report.get('verdict', '-')}**", ""]
        for f in findings:
            ev = ", ".join(f"{k} {v}" for k, v in list((f.get("evidence") or {}).items())[:8])
            lines.append(f"- {f.get('severity')} {f.get('id')} {f.get('level') or ''}: {ev}")
        tags.append("convdiag/findings")
        w.add_text(tags[-1], "\n".join(lines), step)
        for lv, name, file in plot_entries(report):
            p = (base or Path(".")) / file
            if not p.is_file():
                continue
            with Image.open(p) as im:
                arr = np.asarray(im.convert("RGB"))
            tags.append(f"convdiag/{lv}/{name}" if lv else f"convdiag/{name}")
            w.add_image(tags[-1], arr, step, dataformats="HWC")
        for arm in (report.get("race") or {}).get("arms") or []:
            for rung in arm.get("rungs") or []:
                if isinstance(rung.get("f1"), int | float) and isinstance(rung.get("step"), int):
                    tags.append(f"convdiag/race/{arm.get('name')}/f1")
                    w.add_scalar(tags[-1], float(rung["f1"]), int(rung["step"]))
    finally:
        w.close()
    return sorted(set(tags))
