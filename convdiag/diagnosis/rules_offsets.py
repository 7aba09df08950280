"""Model rules on localisation: an untrained offset head, regression collapse, label
quantisation and collision.

offset-head-untrained and regression-collapse read the same offsets at target cells, when
offsets matter there (the cell-centre RMS error above ``offset_needed_radius_share`` x
radius) and there are ``min_targets`` target cells. Untrained: the predicted offsets are
(nearly) constant, std(p) / std(t) below ``offset_untrained_std_ratio`` on both axes --
the head got no learning signal (offset loss weight 0, a detached branch, a dead head), and
a finer level would not help. Otherwise regression-collapse: std ratio below
``offset_std_ratio_min`` and R^2 below ``offset_r2_min`` (offsets shrunk toward the cell
centre).
"""

from __future__ import annotations

import math

from convdiag.diagnosis.findings import Finding, Remedy
from convdiag.diagnosis.rules_common import (
    Ctx,
    advice,
    ev,
    finer_level,
    level_change,
    num,
)
from convdiag.targets.geometry import stride_of


def regression(c: Ctx) -> list[Finding]:
    off = c.res["offsets"]
    th = c.th
    if not off.get("available") or off.get("target_cells", 0) < th.min_targets:
        return []
    sr, r2 = off.get("offset_std_ratio"), off.get("offset_r2")
    rm = off["rmse_cells"]["centre_predictor"]
    stride = stride_of(c.level)
    centre_rms_px = stride * math.sqrt(sum((rm[a] or 0.0) ** 2 for a in "xy"))
    needed = centre_rms_px > th.offset_needed_radius_share * c.radius
    if sr is None or r2 is None or not needed:
        return []
    ratios = [v for v in (off.get("std_ratio") or {}).values() if v is not None]
    if ratios and max(ratios) < th.offset_untrained_std_ratio:
        return [untrained(c, max(ratios), r2, centre_rms_px)]
    if not (sr < th.offset_std_ratio_min and r2 < th.offset_r2_min):
        return []
    loc = off["loc_error_px"]
    finer = finer_level(c.level, c.stats, c.radius, th)
    rem: list[Remedy] = []
    if stride_of(c.level) > 4:
        note = "" if c.reference else " (reference detector only)"
        rem.append(
            Remedy(
                "fused-head",
                {},
                "P4 finds, P2 places: coarse-to-fine with a fine offset (seed)" + note,
            )
        )
    rem += level_change(
        c, finer, f"{finer} keeps the label quantisation under the {c.radius:g} px radius"
    )
    rem += [
        advice(
            "position-sensitive-offset",
            f"offset std ratio {sr:.2f}: a head that sees where in the cell the target sits (seed)",
        ),
        advice(
            "deformable-conv",
            "deformable convolution samples the target's own pixels inside a large cell (seed)",
        ),
        advice(
            "spatial-attention",
            f"spatial attention on {c.level} narrows the large "
            "receptive field to the target (seed)",
        ),
        advice("coarse-to-fine", "find on P4, refine on P2 in a local window (seed)"),
    ]
    return [
        Finding(
            "regression-collapse",
            c.level,
            ev(
                offset_std_ratio=sr,
                offset_std_ratio_min=th.offset_std_ratio_min,
                offset_r2=r2,
                offset_r2_min=th.offset_r2_min,
                loc_error_px=loc["model_mean"],
                centre_loc_error_px=loc["centre_mean"],
                centre_rms_px=centre_rms_px,
                offset_needed_px=th.offset_needed_radius_share * c.radius,
                reg_loss=c.m["reg_loss"],
                target_cells=off["target_cells"],
            ),
            f"At {c.level} the offset head barely varies with the target (std ratio {sr:.2f}, "
            f"R^2 {r2:.2f}): it predicts about the mean, {num(loc['model_mean'])} px from "
            f"the targets against {num(loc['centre_mean'])} px for the bare cell centre. "
            f"A {stride}-px cell is too coarse for the head to place a point inside it, so "
            "the regression loss looks small while localisation is useless.",
            rem,
        )
    ]


def untrained(c: Ctx, ratio: float, r2: float, centre_rms_px: float) -> Finding:
    """offset-head-untrained: the offsets at target cells do not vary (see the module
    docstring); its one remedy is to check the offset loss, never a level change."""
    off, th = c.res["offsets"], c.th
    ps, ts = off["pred_std"], off["target_std"]
    w = float(c.recipe.reg_weight)
    grad = c.m.get("reg_grad_norm")
    loc = off["loc_error_px"]
    return Finding(
        "offset-head-untrained",
        c.level,
        ev(
            offset_std_ratio_max=ratio,
            offset_untrained_std_ratio=th.offset_untrained_std_ratio,
            offset_r2=r2,
            reg_weight=w,
            pred_std_x=ps.get("x"),
            target_std_x=ts.get("x"),
            pred_std_y=ps.get("y"),
            target_std_y=ts.get("y"),
            reg_grad_norm=grad,
            loc_error_px=loc["model_mean"],
            centre_loc_error_px=loc["centre_mean"],
            centre_rms_px=centre_rms_px,
            target_cells=off["target_cells"],
        ),
        f"At {c.level} the offset head outputs the same offset at every target cell: "
        f"predicted std {num(ps.get('x'))} / {num(ps.get('y'))} cells (x / y) against "
        f"{num(ts.get('x'))} / {num(ts.get('y'))} for the true offsets (at most "
        f"{ratio:.1%} of it), R^2 {r2:.2f}. A head that learned anything varies with the "
        "target; this one got no learning signal (the offset loss off or weighted 0, a "
        "detached branch, a dead head), so a finer level would not help.",
        [
            Remedy(
                "check-offset-loss",
                {"reg_weight": w},
                "check that the offset loss is computed, reaches the offset head and is "
                f"weighted: the recipe's offset-loss weight (reg_weight) is {w:g}, the "
                f"offset-head gradient norm {num(grad)}; predicted offset std at most "
                f"{ratio:.1%} of the true offsets'",
                applied=False,
            )
        ],
    )


def labels(c: Ctx) -> list[Finding]:
    out: list[Finding] = []
    v, th = c.lstats, c.th
    q = v["quantization_px"]
    off = c.res["offsets"]
    p95 = q.get("p95")
    model_p90 = (off.get("loc_error_px") or {}).get("model_p90") if off.get("available") else None
    bar = th.quantization_radius_share * c.radius
    if p95 is not None and p95 > bar and (model_p90 is None or model_p90 > c.radius):
        finer = finer_level(c.level, c.stats, c.radius, th)
        rem = []
        if stride_of(c.level) > 4:
            note = "" if c.reference else " (reference detector only)"
            rem.append(Remedy("fused-head", {}, "P4 finds, P2 places: the cell no longer "
                              "limits localisation (seed)" + note))  # fmt: skip
        rem += level_change(c, finer, f"{finer} keeps the quantisation p95 under "
                             f"{c.radius:g} px")  # fmt: skip
        rem.append(advice("position-sensitive-offset", "an offset head that sees position"))
        how = (
            "there is no offset head"
            if model_p90 is None
            else f"the offset head does not recover it (p90 error {model_p90:.2f} px)"
        )
        out.append(
            Finding(
                "label-quantization",
                c.level,
                ev(
                    quantization_p95_px=p95,
                    quantization_mean_px=q.get("mean"),
                    radius_px=c.radius,
                    quantization_p95_max_px=bar,
                    model_loc_p90_px=model_p90,
                    share_over_radius=q.get("share_over_radius"),
                    stride=v["stride"],
                ),
                f"At {c.level} a target is up to {p95:.2f} px (p95) from its cell centre, "
                f"beyond the {c.radius:g} px match radius, and {how}. Targets decoded at the "
                "cell centre miss the match even when the right cell fires.",
                rem,
            )
        )
    share = v.get("collision_share") or 0.0
    if share > th.collision_share_max:
        finer = finer_level(c.level, c.stats, c.radius, th)
        out.append(
            Finding(
                "label-collision",
                c.level,
                ev(
                    collisions=v["collisions"],
                    targets=v["targets"],
                    collision_share=share,
                    collision_share_max=th.collision_share_max,
                    recall_at_threshold=c.res["detections"]["recall_at_threshold"],
                ),
                f"{v['collisions']} of {v['targets']} targets ({share:.1%}) share their "
                f"{c.level} cell with another target. One cell holds one label and one "
                "offset, so at most one of them can be detected.",
                level_change(c, finer, f"{finer} separates the targets"),
            )
        )
    return out
