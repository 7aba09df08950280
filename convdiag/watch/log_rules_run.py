"""Log rules about the run itself, before any symptom is judged: whether validation ran,
whether a single-class YOLO run's cls loss means anything, and whether the log is long
enough to judge.

- validation-off (warning): the run's validation never scored. Either every validation
  loss (a ``val/*loss*`` column) is exactly 0.0 at every point (a real validation pass
  never scores exactly 0), or every detection metric and validation loss is exactly 0 at
  every point but the last, where one is not (YOLOv5 ``--noval``: validation runs only
  after the final epoch). The metrics are then not evidence: the rules that follow do not
  see them (all of them, or all but the last point).
- single-class-cls-loss (info): a cls loss exactly 0 at every point beside non-zero box or
  objectness losses is YOLOv5's single-class design, not a plateau: the classification
  role falls back to the objectness loss.
- too-short (info): the detection metric (else the cls loss) has fewer than ``min_points``
  values, the stretch every over-time rule needs; never "healthy".
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from convdiag.diagnosis.findings import Finding
from convdiag.diagnosis.thresholds import Thresholds
from convdiag.watch.log_rules_common import at, finite
from convdiag.watch.log_rules_common import ev as evid
from convdiag.watch.mapping import FRACTION_KEYS, MappedLog, norm
from convdiag.watch.table import Series

# Detection metrics, in the order the collapse rule prefers them.
METRIC_KEYS = ("f1", "recall", "map", "iou", "niou", "precision")


@dataclass
class RunCheck:
    """What the run checks found and the mapped log the symptom rules should judge."""

    mapped: MappedLog
    findings: list[Finding] = field(default_factory=list)


def _val_losses(m: MappedLog) -> dict[str, Series]:
    """The log's validation-loss columns (``val/box_loss``, ``val_loss``, ...)."""
    out = {}
    for name, s in m.raw.columns.items():
        n = norm(name)
        if n.startswith(("val/", "val_", "val.", "valid", "eval/")) and "loss" in n:
            out[name] = s
    return out


def _drop_metrics(m: MappedLog, keep_last: bool) -> MappedLog:
    """A copy of ``m`` without the metric series (or with only their last point)."""
    out = MappedLog(m.raw, dict(m.series), dict(m.columns))
    for key in (*FRACTION_KEYS, "fp"):
        s = out.series.get(key)
        if s is None:
            continue
        if keep_last and len(s):
            out.series[key] = Series(s.name, s.x[-1:], s.values[-1:])
        else:
            del out.series[key]
            del out.columns[key]
    return out


def validation_off(m: MappedLog, th: Thresholds) -> RunCheck:
    """validation-off (see the module docstring)."""
    val = _val_losses(m)
    metrics = {k: m.series[k] for k in FRACTION_KEYS if k in m.series}
    axis = m.raw.x_name
    vals = [finite(s)[1] for s in val.values()]
    if vals and all(len(v) >= 2 and np.all(v == 0.0) for v in vals):
        n = max(len(v) for v in vals)
        f = Finding(
            "validation-off",
            None,
            evid(
                validation_losses=", ".join(val),
                points=n,
                metrics_ignored=", ".join(m.columns[k] for k in metrics) or None,
                axis=axis,
            ),
            f"Every validation loss ({', '.join(val)}) is exactly 0.0 at all {n} points: "
            "validation never ran (a real validation pass never scores exactly 0), so the "
            "logged metrics are not evidence and no collapse is claimed from them.",
        )
        return RunCheck(_drop_metrics(m, keep_last=False), [f])
    series = list(metrics.values()) + list(val.values())
    tails = [finite(s) for s in series]
    if not metrics or any(len(v) < th.min_points for _, v in tails):
        return RunCheck(m)
    zero_before = all(np.all(v[:-1] == 0.0) for _, v in tails)
    real_last = any(v[-1] != 0.0 for _, v in tails)
    if not (zero_before and real_last):
        return RunCheck(m)
    last_x = float(tails[0][0][-1])
    # the logged columns (not F1 derived from them)
    cols = [m.columns[k] for k in metrics if m.columns[k] in m.raw.columns] + list(val)
    f = Finding(
        "validation-off",
        None,
        evid(
            columns=", ".join(cols),
            zero_points=len(tails[0][1]) - 1,
            validated_at=last_x,
            axis=axis,
        ),
        f"{', '.join(cols)} are exactly 0 at every point but the last ({at(axis, last_x)}): "
        "validation ran only at the end (YOLOv5 --noval, or a validation interval longer "
        "than the run). The zeros before it are not measurements; only the last point is "
        "judged.",
    )
    return RunCheck(_drop_metrics(m, keep_last=True), [f])


def _other_losses(m: MappedLog) -> dict[str, float]:
    """Last finite value of every training loss column that is not the cls loss."""
    cls_col = m.columns.get("cls_loss")
    out = {}
    for name, s in m.raw.columns.items():
        n = norm(name)
        if name == cls_col or "loss" not in n or n.startswith(("val", "eval")):
            continue
        if "box" in n or "obj" in n or "dfl" in n:
            _, v = finite(s)
            if len(v):
                out[name] = float(v[-1])
    return out


def single_class(m: MappedLog) -> RunCheck:
    """single-class-cls-loss (see the module docstring)."""
    s = m.series.get("cls_loss")
    if s is None:
        return RunCheck(m)
    _, v = finite(s)
    others = _other_losses(m)
    if len(v) < 2 or not np.all(v == 0.0) or not any(x != 0.0 for x in others.values()):
        return RunCheck(m)
    out = MappedLog(m.raw, dict(m.series), dict(m.columns))
    col = m.columns["cls_loss"]
    if "obj_loss" in m.series:
        out.series["cls_loss"] = m.series["obj_loss"]
        out.columns["cls_loss"] = m.columns["obj_loss"]
        role = f"the classification role falls back to the objectness loss {m.columns['obj_loss']}"
    else:
        del out.series["cls_loss"]
        del out.columns["cls_loss"]
        role = "no objectness loss is logged, so no loss plays the classification role"
    f = Finding(
        "single-class-cls-loss",
        None,
        evid(column=col, points=len(v), **{k: v for k, v in others.items()}),
        f"{col} is exactly 0 at all {len(v)} points while "
        + ", ".join(f"{k} ends at {x:.4g}" for k, x in others.items())
        + ": a single-class YOLO run has no class to tell apart, so its cls loss is 0 by "
        f"design, not a plateau; {role}.",
    )
    return RunCheck(out, [f])


def too_short(m: MappedLog, th: Thresholds) -> Finding | None:
    """too-short (see the module docstring), or None when the log is long enough."""
    metric = next((k for k in METRIC_KEYS if k in m.series), None)
    key = metric or ("cls_loss" if "cls_loss" in m.series else None)
    if key is None:
        key = next((k for k in ("loss", "reg_loss") if k in m.series), None)
    if key is None:
        return None
    x, v = finite(m.series[key])
    if len(v) >= th.min_points:
        return None
    what = "evaluation point" if metric else "value"
    last = (
        ", ".join(f"{m.columns[k]} {finite(m.series[k])[1][-1]:.3g}" for k in METRIC_KEYS
                  if k in m.series and len(finite(m.series[k])[1]))
        or (f"{m.columns[key]} {v[-1]:.4g}" if len(v) else "no finite value")
    )  # fmt: skip
    return Finding(
        "too-short",
        None,
        evid(
            series=m.columns[key],
            points=len(v),
            min_points=th.min_points,
            last_at=float(x[-1]) if len(x) else None,
            axis=m.raw.x_name,
        ),
        f"Too short to judge: {m.columns[key]} has {len(v)} {what}{'s' if len(v) != 1 else ''} "
        f"(last: {last}); the rules over time need at least {th.min_points}. Log more "
        "evaluations (a shorter validation interval) or run longer; `convdiag analyze` judges "
        "the checkpoint itself.",
    )
