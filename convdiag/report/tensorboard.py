"""A report written into the user's TensorBoard run (``--tensorboard LOGDIR``).

With torch's own ``SummaryWriter`` (the ``tensorboard`` package is an optional extra), at the
step the checkpoint was trained to, so the values line up with the user's own curves:

- scalars ``convdiag/<level>/<metric>`` for every number in ``report["metrics"]`` (per
  level, or top-level), and ``convdiag/findings/<severity>`` (how many findings of each);
- text ``convdiag/findings``: the verdict and one line per finding with its evidence;
- images ``convdiag/<level>/<plot>`` from the report's PNG plots (gradient map, score
  histogram, label overlay, ...), read from the report's folder;
- scalars ``convdiag/race/<arm>/f1`` (F1 at the race's threshold), ``best_f1`` and
  ``fp_per_image`` for a raced report's rungs, at ``history_start`` + their steps;
- scalars ``convdiag/<run>/<metric>`` for every row of a report's training ``history``
  (``{run: [{"step", metric: value}]}``, as retrain and train write it), at
  ``history_start`` + the row's step.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from convdiag.errors import InputError
from convdiag.report.html import plot_entries

NEEDS_PACKAGE = "--tensorboard needs the tensorboard package: pip install 'convdiag[tensorboard]'"


def _writer(logdir: str | os.PathLike[str]) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise InputError(NEEDS_PACKAGE) from None
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


def check_logdir(logdir: str | os.PathLike[str]) -> Path:
    """Create the TensorBoard run folder ``logdir`` (before any work, so a bad one fails
    first) and check the ``tensorboard`` package is there; InputError naming the flag."""
    path = Path(logdir)
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        raise InputError(NEEDS_PACKAGE) from None
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InputError(f"--tensorboard {logdir}: cannot create ({e.strerror or e})") from None
    if not path.is_dir() or not os.access(path, os.W_OK | os.X_OK):
        raise InputError(f"--tensorboard {logdir}: not a writable folder")
    return path


def write_tensorboard(
    report: dict[str, Any],
    logdir: str | os.PathLike[str],
    step: int,
    base: Path | None = None,
    history_start: int = 0,
) -> list[str]:
    """Write ``report`` (plain data of any kind) into the TensorBoard run ``logdir`` at
    ``step``; ``base``: the folder its plot files are in; ``history_start``: the step its
    training history starts from. Returns the tags written."""
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
            rungs = arm.get("rungs") or {}
            for rung in rungs.values() if isinstance(rungs, dict) else rungs:
                if not isinstance(rung, dict) or not isinstance(rung.get("step"), int | float):
                    continue
                at = history_start + int(rung["step"])
                for key, name in (("metric", "f1"), ("best_f1", "best_f1"),
                                  ("fp_per_image", "fp_per_image")):  # fmt: skip
                    x = rung.get(key)
                    if isinstance(x, int | float) and math.isfinite(float(x)):
                        tags.append(f"convdiag/race/{arm.get('name')}/{name}")
                        w.add_scalar(tags[-1], float(x), at)
        history = report.get("history")
        for run, rows in history.items() if isinstance(history, dict) else ():
            for row in rows if isinstance(rows, list) else ():
                if not isinstance(row, dict) or not isinstance(row.get("step"), int | float):
                    continue
                at = history_start + int(row["step"])
                for name, v in _numbers(row).items():
                    if name != "step":
                        tags.append(f"convdiag/{run}/{name}")
                        w.add_scalar(tags[-1], v, at)
    finally:
        w.close()
    return sorted(set(tags))


def write_analyze_tensorboard(
    report: dict[str, Any],
    arrays: dict[str, Any],
    logdir: str | os.PathLike[str],
    out: Path | None = None,
) -> list[str]:
    """An analyze report into ``logdir`` at the step its checkpoint was trained to
    (``report["checkpoint_step"]``, 0 when unknown): its plots from ``out`` when it was
    written there, else drawn (the same way, from the saved arrays) into a temporary folder,
    and per level the label overlay of the example image (``label_plots``), drawn from the
    arrays saved in report.npz."""
    import tempfile

    from convdiag.report.analyze_plots import write_plots
    from convdiag.report.label_plots import plot_overlay, with_label_overlays
    from convdiag.report.saved_arrays import load_arrays, save_arrays, saved_data

    step = int(report.get("checkpoint_step") or 0)
    data = saved_data(report)
    with tempfile.TemporaryDirectory(prefix="convdiag-tb-") as tmp:
        t = Path(tmp)
        if out is not None and data.get("plots"):
            saved, base = load_arrays(out), out
        else:
            save_arrays(t, with_label_overlays(report, arrays))
            saved, base = load_arrays(t), t
            data["plots"] = write_plots(data, saved, t)
        plots = {lv: dict(v) for lv, v in (data.get("plots") or {}).items()}
        for lv, per in saved.items():
            if isinstance(per, dict) and per.get("labels"):
                plot_overlay(per["labels"], t / f"{lv}_labels.png")
                plots.setdefault(lv, {})["labels"] = str(t / f"{lv}_labels.png")  # absolute
        data["plots"] = plots
        return write_tensorboard(data, logdir, step, base)


def write_run_tensorboard(
    report: dict[str, Any],
    logdir: str | os.PathLike[str],
    start_step: int = 0,
    base: Path | None = None,
) -> list[str]:
    """A training report (retrain, train: ``{"history": {run: rows}, ...}``) into
    ``logdir``: its curves at ``start_step`` + each row's step (the step the checkpoint was
    trained to, for a retrain, so they continue the user's run), everything else at the last
    of those steps; the plots from ``base`` (the output folder) when given."""
    from convdiag.report.saved_arrays import saved_data

    data = saved_data(report)
    steps = [
        int(r["step"])
        for rows in (data.get("history") or {}).values()
        for r in rows
        if isinstance(r, dict) and isinstance(r.get("step"), int | float)
    ]
    last = start_step + max(steps, default=0)
    if base is not None or not data.get("history"):
        return write_tensorboard(data, logdir, last, base, history_start=start_step)
    import tempfile

    from convdiag.report.curves import plot_curves

    with tempfile.TemporaryDirectory(prefix="convdiag-tb-") as tmp:
        plot_curves(data["history"], Path(tmp) / "curves.png")
        data["plots"] = ["curves.png"]
        return write_tensorboard(data, logdir, last, Path(tmp), history_start=start_step)


class MonitorWriter:
    """The ``Monitor``'s samples into a TensorBoard run (``Monitor(tensorboard=LOGDIR)``):
    scalars ``convdiag/<level>/<statistic>`` for every number of a sample, and
    ``convdiag/findings/<severity>`` counts, at the sample's training step; the text
    ``convdiag/findings`` whenever the findings change. Flushed after every sample."""

    def __init__(self, logdir: str | os.PathLike[str]) -> None:
        check_logdir(logdir)
        self.writer = _writer(logdir)
        self._last = ""

    def write(self, level: str, stats: dict[str, Any], findings: list[dict[str, Any]]) -> None:
        """Write one sample (``Monitor.update``'s statistics) and the findings so far."""
        step = int(stats.get("step") or 0)
        for name, v in _numbers(stats).items():
            if name != "step":
                self.writer.add_scalar(f"convdiag/{level}/{name}", v, step)
        for sev in ("error", "warning", "info"):
            n = sum(f.get("severity") == sev for f in findings)
            self.writer.add_scalar(f"convdiag/findings/{sev}", n, step)
        text = "\n".join(
            f"- {f.get('severity')} {f.get('id')} {f.get('level') or ''}: "
            + ", ".join(f"{k} {v}" for k, v in list((f.get("evidence") or {}).items())[:8])
            for f in findings
        )
        if text != self._last:
            self._last = text
            self.writer.add_text("convdiag/findings", text or "no findings", step)
        self.writer.flush()

    def close(self) -> None:
        """Flush and close the event file."""
        self.writer.close()
