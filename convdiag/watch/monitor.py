"""``Monitor``: cheap convergence statistics inside a user's own training loop.

    monitor = Monitor(level="P2", every=100)
    for images, points in loader:
        out = model(images)
        loss = criterion(out, points)
        opt.zero_grad()
        loss.backward()
        monitor.update(out, points, loss, model=model, image_size=images.shape[-2:])
        opt.step()

Call ``update`` after ``backward`` and before the next ``zero_grad`` (before or after
``opt.step()``) so the per-head gradient norms see this step's gradients; without
``model`` they are skipped. Every ``every``-th call (the 1st, the every+1-th, ...) measures
on the batch; the other calls only count (cost ~0). A measurement (one sample):

- mean score (sigmoid) over valid cells against the label prior (given, else pooled over
  the sampled batches' labels);
- target peak scores: the 3x3 maximum of the score around each target cell; median and
  share at or above ``threshold``;
- cls loss of the batch (``loss``: bce with ``pos_weight``, or CenterNet focal) over the
  best constant predictor's loss on the same labels (``label_stats.constant_loss``);
- positive gradient share: sum of |dL/dlogit| at target cells over all valid cells, by
  autograd on a detached copy of the logits;
- offset std ratio std(pred)/std(target) and R^2 = 1 - SSE/SST at target cells (pooled
  over both axes), when the output has a reg head;
- per-head gradient norms: L2 norm of ``p.grad`` over the model's classification and
  offset head parameters (``model.head_parameters()``, else by parameter names).

Symptoms (finding ids of DESIGN.md), each when it holds at ``patience`` samples in a row
(non-finite values at once): background-collapse (fewer than half the target peaks reach
the threshold and the cls loss is within ``margin`` of the constant predictor's),
gradient-starvation (positive gradient share < 0.2 while the targets are unlearned),
regression-collapse (std ratio < 0.5 and R^2 < 0.25 where offsets matter),
head-imbalance (head gradient ratio outside [1/100, 100] while the weaker task fails),
non-finite-outputs. Each warns once (``ConvdiagWarning``) with its numbers and top remedy;
``report()`` returns the findings.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from convdiag.diagnosis.catalogue import title
from convdiag.diagnosis.findings import Finding
from convdiag.diagnosis.thresholds import Thresholds
from convdiag.errors import InputError
from convdiag.watch.monitor_inputs import (
    _cls_tensor,
    _points,
    find_head_parameters,
    image_sizes,
)
from convdiag.watch.monitor_rules import fmt_value, sample_finding, sample_symptoms


class ConvdiagWarning(UserWarning):
    """A convergence symptom seen by ``Monitor`` (filter with ``warnings`` as usual)."""


class Monitor:
    """Cheap convergence statistics every ``every`` steps of a training loop (module doc).

    level: the output level watched (P2, ...). prior: the label prior (default: pooled from
    the sampled batches). warn: emit ``ConvdiagWarning``s. loss / pos_weight: the cls loss
    the run uses (bce or focal) for the constant-predictor comparison and the gradient
    share. kernel / sigma / trunc: soft labels (kernel None = hard). threshold: score
    threshold of a detected peak. radius: match radius (px). outputs: "logits" or "probs".
    tensorboard: a TensorBoard run folder to write every sample and the findings into.
    """

    def __init__(
        self,
        level: str = "P2",
        every: int = 100,
        prior: float | None = None,
        warn: bool = True,
        *,
        loss: str = "bce",
        pos_weight: float | None = None,
        kernel: int | None = None,
        sigma: float | None = None,
        trunc: float = 0.1,
        threshold: float = 0.5,
        radius: float = 3.0,
        outputs: str = "logits",
        thresholds: Thresholds | None = None,
        tensorboard: str | os.PathLike[str] | None = None,
    ) -> None:
        from convdiag.targets.geometry import level_name, stride_of

        self.level = level_name(level)
        self.stride = stride_of(self.level)
        if int(every) < 1:
            raise InputError(f"Monitor: every={every!r} must be >= 1")
        if prior is not None and not 0 < prior < 1:
            raise InputError(f"Monitor: prior={prior!r} must be in (0, 1)")
        if loss not in ("bce", "focal"):
            raise InputError(f"Monitor: loss={loss!r}: use bce or focal")
        self.every = int(every)
        self.prior = prior
        self.warn = warn
        self.loss = loss
        self.pos_weight = pos_weight
        self.kernel, self.sigma, self.trunc = kernel, sigma, trunc
        self.threshold = threshold
        self.radius = radius
        self.outputs = outputs
        self.th = thresholds or Thresholds()
        self.step = 0
        self.history: list[dict[str, Any]] = []
        self._label_sum = 0.0
        self._cells = 0.0
        self._runs: dict[str, int] = {}  # symptom -> step its current run started
        self._count: dict[str, int] = {}  # symptom -> samples in its current run
        self._findings: dict[str, Finding] = {}
        self._resolved: dict[str, int] = {}
        self._warned: set[str] = set()
        self._heads: dict[str, list[torch.nn.Parameter]] | None = None
        self._heads_of: int | None = None
        self._tb: Any = None  # tensorboard: a run folder for every sample (report.tensorboard)
        if tensorboard is not None:
            from convdiag.report.tensorboard import MonitorWriter

            self._tb = MonitorWriter(tensorboard)

    # ------------------------------------------------------------------- public

    def due(self) -> bool:
        """Whether the next ``update`` call measures (lets a caller skip preparing inputs)."""
        return self.step % self.every == 0

    def skip(self) -> None:
        """Count a step without measuring (what ``update`` does when not ``due``)."""
        self.step += 1

    def update(
        self,
        outputs: Any,
        targets: Sequence[Any],
        loss: Any = None,
        model: torch.nn.Module | None = None,
        image_size: Sequence[int] | Sequence[Sequence[int]] | None = None,
        step: int | None = None,
    ) -> dict[str, Any] | None:
        """Count one training step; every ``every`` steps measure and check the symptoms.

        outputs: the model's output in any DESIGN.md form; targets: per image an [N, 2]
        array (x, y) of target points in pixels; loss: the step's loss (checked for NaN);
        model: for the per-head gradient norms (call after ``backward``); image_size: (H,
        W) of the padded batch, or one (H, W) per image (own grids; padding ignored);
        default the output grid times the stride. step: the training step recorded (default
        the number of ``update`` calls so far, 1-based). Returns the sample's statistics,
        or None on steps that only count.
        """
        due = self.due()
        self.step += 1
        if not due:
            return None
        stats = self._measure(outputs, targets, loss, model, image_size)
        if step is not None:
            stats["step"] = int(step)
        self.history.append(stats)
        self._check(stats)
        if self._tb is not None:
            self._tb.write(self.level, stats, [f.to_dict() for f in self.report()])
        return stats

    def report(self) -> list[Finding]:
        """Findings of every symptom seen: active ones at their severity, resolved ones as
        info noting the step they cleared at (order: severity, then first seen)."""
        from convdiag.diagnosis.rules import sort_findings

        out = []
        for sid, f in self._findings.items():
            if sid in self._resolved:
                g = Finding(
                    f.id,
                    f.level,
                    {**f.evidence, "resolved_at": self._resolved[sid]},
                    f.explanation + f" Resolved by step {self._resolved[sid]}.",
                    f.remedies,
                    severity="info",
                )
                out.append(g)
            else:
                out.append(f)
        return sort_findings(out)

    # ------------------------------------------------------------------- measuring

    def _measure(
        self,
        outputs: Any,
        targets: Sequence[Any],
        loss: Any,
        model: torch.nn.Module | None,
        image_size: Any,
    ) -> dict[str, Any]:
        from convdiag.load.outputs import normalize_outputs
        from convdiag.targets.labels import render_batch

        cls0, key_stride = _cls_tensor(outputs, self.level)
        if not isinstance(cls0, torch.Tensor):
            raise InputError("Monitor.update: outputs hold no cls tensor")
        s = key_stride or self.stride
        h, w = int(cls0.shape[-2]), int(cls0.shape[-1])
        if image_size is None:
            size, per = (h * s, w * s), [(h * s, w * s)] * int(cls0.shape[0])
        else:
            size, per = image_sizes(image_size, int(cls0.shape[0]))
        levels = normalize_outputs(outputs, size, self.outputs)
        if self.level not in levels:
            raise InputError(
                f"Monitor(level={self.level}): the model outputs {', '.join(levels)} only"
            )
        lo = levels[self.level]
        logits = lo.cls.detach().float()
        b, _, gh, gw = logits.shape
        pts = _points(targets, b)
        lab = render_batch(pts, per, (gh, gw), self.level, self.kernel, self.sigma, self.trunc,
                           device=logits.device)  # fmt: skip
        valid, heat = lab.valid, lab.heatmap
        target = (heat == 1) & valid
        st: dict[str, Any] = {"step": self.step, "targets": int(target.sum())}
        bad_cls = int((~torch.isfinite(logits) & valid).sum())
        reg = lo.reg.detach().float() if lo.reg is not None else None
        bad_reg = int((~torch.isfinite(reg) & valid).sum()) if reg is not None else 0
        loss_v = float(loss.detach()) if isinstance(loss, torch.Tensor) else loss
        st.update(nonfinite_cls=bad_cls, nonfinite_reg=bad_reg, loss=loss_v)
        nonfinite = bad_cls + bad_reg > 0 or (loss_v is not None and not math.isfinite(loss_v))
        self._label_sum += float(heat[valid].sum())
        self._cells += float(valid.sum())
        prior = self.prior if self.prior is not None else self._label_sum / max(self._cells, 1.0)
        st["prior"] = prior
        safe = torch.where(torch.isfinite(logits), logits, torch.zeros_like(logits))
        score = torch.sigmoid(safe)
        st["mean_score"] = float(score[valid].mean()) if valid.any() else None
        st["mean_score_over_prior"] = (
            st["mean_score"] / prior if prior > 0 and st["mean_score"] is not None else None
        )
        st.update(self._peaks(score, target))
        st.update(self._cls_loss(safe, heat, valid, target))
        st.update(self._offsets(reg, lab, valid))
        st.update(self._head_grads(model))
        if st.get("grad_nonfinite"):
            nonfinite = True
        st["nonfinite"] = nonfinite
        return st

    def _peaks(self, score: torch.Tensor, target: torch.Tensor) -> dict[str, Any]:
        if not target.any():
            return {"peak_score_p50": None, "peaks_above_threshold": None}
        pooled = F.max_pool2d(score, 3, stride=1, padding=1)
        peaks = pooled[target]
        return {
            "peak_score_p50": float(peaks.median()),
            "peaks_above_threshold": float((peaks >= self.threshold).float().mean()),
        }

    def _cls_loss(
        self, logits: torch.Tensor, heat: torch.Tensor, valid: torch.Tensor, target: torch.Tensor
    ) -> dict[str, Any]:
        from convdiag.analyses.label_stats import constant_loss
        from convdiag.targets.losses import bce_loss, centernet_focal_loss

        z = logits.detach().clone().requires_grad_(True)
        with torch.enable_grad():
            if self.loss == "bce":
                total = bce_loss(z, heat, valid, self.pos_weight, reduction="sum")
                norm = float(valid.sum())
            else:
                total = centernet_focal_loss(z, heat, valid, reduction="sum",
                                             pos_weight=self.pos_weight)  # fmt: skip
                norm = max(1.0, float(target.sum()))
            (g,) = torch.autograd.grad(total, z)
        ga = g.abs()
        all_g = float(ga[valid].sum())
        cls = float(total.detach()) / max(norm, 1.0)
        y = heat[valid]
        const = constant_loss(
            self.loss,
            float(valid.sum()),
            float(target.sum()),
            float(y.sum()),
            float(((1 - y).clamp(min=0) ** 4)[y < 1].sum()),
            pos_weight=self.pos_weight,
        )
        return {
            "cls_loss": cls,
            "constant_loss": const,
            "loss_ratio": cls / const if const > 0 else None,
            "pos_grad_share": float(ga[target].sum()) / all_g if all_g > 0 else None,
        }

    def _offsets(self, reg: torch.Tensor | None, lab: Any, valid: torch.Tensor) -> dict[str, Any]:
        none = {"offset_targets": 0, "offset_std_ratio": None, "offset_r2": None,
                "centre_rms_px": None}  # fmt: skip
        if reg is None:
            return none
        b, i, j = torch.nonzero(lab.offset_mask[:, 0] & valid[:, 0], as_tuple=True)
        n = int(b.numel())
        if n < 2:
            return {**none, "offset_targets": n}
        p = reg[b, :, i, j].double()
        t = lab.offset[b, :, i, j].double()
        if not torch.isfinite(p).all():
            return {**none, "offset_targets": n}
        st, sp = t.std(0), p.std(0)
        sst = float(((t - t.mean(0)) ** 2).sum())
        ratio = float((sp / st).mean()) if bool((st > 0).all()) else None
        centre = float(torch.sqrt(((t - 0.5) ** 2).mean(0).sum())) * self.stride
        return {
            "offset_targets": n,
            "offset_std_ratio": ratio,
            "offset_r2": 1.0 - float(((p - t) ** 2).sum()) / sst if sst > 0 else None,
            "centre_rms_px": centre,
        }

    def _head_grads(self, model: torch.nn.Module | None) -> dict[str, Any]:
        none: dict[str, Any] = {"cls_grad_norm": None, "reg_grad_norm": None,
                                "cls_reg_ratio": None, "grad_nonfinite": False}  # fmt: skip
        if model is None:
            return none
        if self._heads is None or self._heads_of != id(model):
            self._heads = find_head_parameters(model)
            self._heads_of = id(model)
        out = dict(none)
        for kind in ("cls", "reg"):
            grads = [p.grad.detach() for p in self._heads.get(kind, []) if p.grad is not None]
            if not grads:
                continue
            sq = torch.stack([g.float().pow(2).sum() for g in grads]).sum()
            v = float(sq.sqrt())
            out[f"{kind}_grad_norm"] = v
            if not math.isfinite(v):
                out["grad_nonfinite"] = True
        c, r = out["cls_grad_norm"], out["reg_grad_norm"]
        if c is not None and r and math.isfinite(c) and math.isfinite(r):
            out["cls_reg_ratio"] = c / r
        return out

    # ------------------------------------------------------------------- symptoms

    def _symptoms(self, st: dict[str, Any]) -> dict[str, bool]:
        return sample_symptoms(st, self.th, self.radius)

    def _check(self, st: dict[str, Any]) -> None:
        for sid, on in self._symptoms(st).items():
            if not on:
                self._count.pop(sid, None)
                self._runs.pop(sid, None)
                if sid in self._findings and sid not in self._resolved:
                    self._resolved[sid] = st["step"]
                continue
            self._runs.setdefault(sid, st["step"])
            self._count[sid] = self._count.get(sid, 0) + 1
            need = 1 if sid == "non-finite-outputs" else self.th.patience
            if self._count[sid] < need:
                continue
            self._resolved.pop(sid, None)
            f = self._finding(sid, st, self._runs[sid], self._count[sid])
            self._findings[sid] = f
            if self.warn and sid not in self._warned:
                self._warned.add(sid)
                warnings.warn(self._message(f), ConvdiagWarning, stacklevel=3)

    def _message(self, f: Finding) -> str:
        from convdiag.report.analyze_report import remedy_text

        top = next((r for r in f.remedies if r.applied), None)
        ev = f.evidence
        keys = [
            k
            for k in ev
            if k not in ("started_at", "samples", "step", "evidence_source", "evidence_available")
            and ev[k] is not None
        ]
        nums = ", ".join(f"{k} {fmt_value(ev[k])}" for k in keys[:5])
        tail = f" Try: --remedy {remedy_text(top.to_dict())}." if top else ""
        return (
            f"convdiag: {title(f.id)} at {self.level} since step {ev['started_at']} "
            f"({ev['samples']} checks): {nums}.{tail}"
        )

    def _finding(self, sid: str, st: dict[str, Any], start: int, n: int) -> Finding:
        return sample_finding(self, sid, st, start, n)


__all__ = ["ConvdiagWarning", "Monitor"]
