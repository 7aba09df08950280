"""Model rules on the learning signal: gradient starvation, head imbalance; and the
healthy finding when no rule fired."""

from __future__ import annotations

from typing import Any

from convdiag.diagnosis.findings import Finding, Remedy
from convdiag.diagnosis.rules_common import (
    Ctx,
    defaults,
    ev,
    num,
    pct,
    signal_remedies,
)


def starvation(c: Ctx) -> Finding | None:
    cur = c.cf.get("current", {})
    share, cells90 = cur.get("target_area_grad_share"), cur.get("cells_for_90pct")
    th = c.th
    low = share is not None and share < th.grad_share_min
    diffuse = cells90 is not None and cells90 > th.grad_cells_90_max
    peaks = c.m["peaks_above_threshold"]
    # A converged model has tiny, evenly spread gradients: only unlearned targets starve.
    unlearned = peaks is None or peaks < th.calibration_peak_share
    if not (low or diffuse) or not unlearned:
        return None
    sh = cur.get("shares", {})
    rem = signal_remedies(c, ("focal-loss", "soft-labels", "loss-ramp", "pos-weight", "oversample"))
    return Finding(
        "gradient-starvation",
        c.level,
        ev(
            target_area_grad_share=share,
            grad_share_min=th.grad_share_min,
            grad_cells_90=cells90,
            grad_cells_90_max=th.grad_cells_90_max,
            target_share=sh.get("target"),
            neighbourhood_share=sh.get("neighbourhood"),
            background_share=sh.get("background"),
            hotspot_share=sh.get("hotspot"),
        ),
        f"At {c.level} targets and their neighbourhood get {pct(share)} of the "
        f"classification gradient and {pct(cells90)} of the cells are needed to hold 90% of "
        "it. The learning signal is spread over the background, so each step mostly "
        "re-teaches 'background' instead of the targets.",
        rem,
    )


def heads(c: Ctx) -> Finding | None:
    hd = c.res["heads"]
    ratio = hd.get("cls_reg_ratio")
    if ratio is None or ratio <= 0:
        return None
    mx = c.th.head_ratio_max
    if 1.0 / mx <= ratio <= mx:
        return None
    weak = "classification" if ratio < 1 else "offset"
    # An imbalance only matters while the weaker task still fails (an L1 gradient never
    # vanishes, so a converged classifier always looks weak next to it).
    f1, r2 = c.m["f1_at_threshold"], c.m["offset_r2"]
    if weak == "classification" and f1 is not None and f1 >= c.th.calibration_f1_share:
        return None
    if weak == "offset" and (r2 is None or r2 >= c.th.offset_r2_min):
        return None
    rem = []
    if weak == "classification" and not c.recipe.loss_ramp:
        rem.append(
            Remedy(
                "loss-ramp",
                defaults("loss-ramp"),
                f"raises the cls-loss weight gradually (cap 10) against a "
                f"{1 / ratio:.0f}x weaker classification gradient",
            )
        )
    return Finding(
        "head-imbalance",
        c.level,
        ev(
            cls_grad_norm=hd["cls_grad_norm"],
            reg_grad_norm=hd["reg_grad_norm"],
            cls_reg_ratio=ratio,
            head_ratio_max=mx,
        ),
        f"At {c.level} the {weak} head's parameter gradient is "
        f"{max(ratio, 1 / ratio):.0f}x smaller than the other head's. The shared features "
        f"are shaped almost only by the other task, so the {weak} branch learns slowly.",
        rem,
    )


def healthy(level: str, m: dict[str, Any]) -> Finding:
    return Finding(
        "healthy",
        level,
        ev(
            best_f1=m["best_f1"],
            f1_at_threshold=m["f1_at_threshold"],
            auc=m["auc"],
            fp_per_image=m["fp_per_image_at_threshold"],
            loss_ratio=m["loss_ratio"],
            offset_r2=m["offset_r2"],
            pos_grad_share=m["pos_grad_share"],
        ),
        f"At {level} the model detects targets (F1 {m['f1_at_threshold']:.2f}, best "
        f"{m['best_f1']:.2f}) with ranking AUC {num(m['auc'])} and "
        f"{num(m['fp_per_image_at_threshold'])} false positives per image. No rule crossed "
        "its threshold.",
    )
