"""Root causes that override a collapse's remedies: a dead network, an untrained offset head.

``dead-network`` (error) reads ``analyses.activations``. It holds at a level when detection
failed there (best F1 at any threshold below ``f1_min``, or no F1 at all) and the network
shows one of the signs of a training that blew up:

- at least ``dead_feeding_share_min`` of the channels feeding the heads output a constant
  over the whole dataset (dead units: after a ReLU, exactly 0 for every input);
- the median BatchNorm running variance is at least ``dead_bn_var_median_min`` (about 1 in
  a network that trained; a blown-up one reaches 1e4-1e8);
- the largest |logit| at valid cells is at least ``dead_logit_abs_min`` (every score
  saturated at exactly 0 or 1).

No label or loss remedy revives dead units, so the findings of the same level whose
remedies are label or loss changes (``DEFERRED``) stay, as symptoms, but their remedies are
withheld and their explanation says why; the dead-network remedies are a restart (from a
checkpoint saved before the blow-up, or from scratch) with a 10x lower learning rate, a
warm-up and gradient clipping.

``offset-head-untrained`` is raised by ``rules_offsets.regression``. When it holds, the
level-change remedies of label-quantization at the level are withheld (a trained head
recovers the quantisation), and a background or calibration collapse there is not reported
when the target peaks do fire (at least ``calibration_peak_share`` of them reach the
threshold): F1 then fails because every detection sits at the same point of its cell, which
the untrained finding says (with the peak share and F1 in its evidence). A collapse whose
peaks do not fire is a fault of its own and stays, with its remedies, ranked first.
"""

from __future__ import annotations

from typing import Any

from convdiag.diagnosis.findings import Finding, Remedy
from convdiag.diagnosis.rules_common import Ctx, ev, num, pct

DEFERRED = (
    "background-collapse",
    "calibration-collapse",
    "fp-flood",
    "label-shift",
    "gradient-starvation",
    "head-imbalance",
    "regression-collapse",
    "offset-head-untrained",
)
EXPLAINED_COLLAPSES = ("background-collapse", "calibration-collapse")
LR_FACTOR = 10.0
WARMUP_SHARE = 0.1
CLIP_NORM = 1.0


def dead_network(c: Ctx) -> Finding | None:
    """dead-network for one level, or None (see the module docstring)."""
    a = c.res.get("activations")
    if not a:
        return None
    th = c.th
    best = c.m.get("best_f1")
    if best is not None and best >= th.f1_min:
        return None
    feed, med = a.get("feeding_dead_share"), a.get("bn_var_median")
    amax = a.get("cls_abs_max")
    dead_feed = feed is not None and feed >= th.dead_feeding_share_min
    blown_bn = med is not None and med >= th.dead_bn_var_median_min
    blown_out = amax is not None and amax >= th.dead_logit_abs_min
    if not (dead_feed or blown_bn or blown_out):
        return None
    signs = []
    if dead_feed:
        signs.append(
            f"{a['feeding_dead']} of the {a['feeding_channels']} channels feeding the heads "
            f"({pct(feed)}) output a constant for every image"
        )
    if blown_bn:
        signs.append(
            f"the BatchNorm running variances have median {num(med)} (max "
            f"{num(a.get('bn_var_max'))}; about 1 in a network that trained)"
        )
    if blown_out:
        signs.append(f"logits reach {num(amax)}, so every score is saturated at 0 or 1")
    # the numbers that show it first (renderers show the first few)
    shown: dict[str, Any] = {}
    if dead_feed:
        shown.update(feeding_dead_share=feed, feeding_dead=a.get("feeding_dead"),
                     feeding_channels=a.get("feeding_channels"))  # fmt: skip
    if blown_bn:
        shown.update(bn_var_median=med, bn_var_max=a.get("bn_var_max"))
    if blown_out:
        shown.update(cls_abs_max=amax)
    rest = dict(
        best_f1=best,
        f1_min=th.f1_min,
        feeding_dead_share=feed,
        feeding_dead=a.get("feeding_dead"),
        feeding_channels=a.get("feeding_channels"),
        feeding_layer=a.get("feeding_layer"),
        dead_feeding_share_min=th.dead_feeding_share_min,
        dead_share=a.get("dead_share"),
        worst_layer=a.get("worst_layer"),
        worst_dead_share=a.get("worst_dead_share"),
        bn_var_median=med,
        bn_var_max=a.get("bn_var_max"),
        dead_bn_var_median_min=th.dead_bn_var_median_min,
        cls_abs_max=amax,
        dead_logit_abs_min=th.dead_logit_abs_min,
        cls_image_range=a.get("cls_image_range"),
        images=a.get("images"),
    )
    evidence = ev(**shown, **{k: v for k, v in rest.items() if k not in shown})
    return Finding(
        "dead-network",
        c.level,
        evidence,
        f"At {c.level} the network is dead: {'; '.join(signs)}, and the best F1 at any "
        f"threshold is {num(best)}. Training blew up (a learning rate far too high) and "
        "no label or loss change revives dead units: restart from a checkpoint saved before "
        "the blow-up, or from scratch, with a lower learning rate, a warm-up and gradient "
        "clipping.",
        dead_remedies(c, evidence),
    )


def dead_remedies(c: Ctx, evidence: dict[str, Any]) -> list[Remedy]:
    """Restart with a 10x lower learning rate, warm-up, gradient clipping (advice)."""
    lr = float(c.recipe.lr)
    whose = "the recipe's" if c.reference else "the recipe's default; use your run's own"
    feed = evidence.get("feeding_dead_share")
    shown = f"{pct(feed)} of the head inputs constant" if feed is not None else "no probe"
    return [
        Remedy(
            "restart-lower-lr",
            {"lr": lr / LR_FACTOR},
            f"restart from a checkpoint saved before the blow-up or from scratch with the "
            f"learning rate {LR_FACTOR:g}x lower ({lr:g} -> {lr / LR_FACTOR:g}, {whose}); "
            f"{shown}, BatchNorm variance median {num(evidence.get('bn_var_median'))}",
            applied=False,
        ),
        Remedy(
            "lr-warmup",
            {"share": WARMUP_SHARE},
            f"raise the learning rate linearly over the first {WARMUP_SHARE:.0%} of the "
            "steps: the first updates, on a random network, are the largest",
            applied=False,
        ),
        Remedy(
            "grad-clip",
            {"max_norm": CLIP_NORM},
            f"clip the gradient norm to {CLIP_NORM:g} (torch.nn.utils.clip_grad_norm_) so "
            "one bad batch cannot throw the weights out of range",
            applied=False,
        ),
    ]


def _withhold(f: Finding, cause: str, why: str) -> None:
    f.remedies = []
    f.evidence["remedies_withheld_for"] = cause
    f.explanation = f"{f.explanation} Its remedies are withheld: {why} (see {cause})."


def root_causes(c: Ctx, findings: list[Finding], skip: tuple[str, ...] = ()) -> list[Finding]:
    """The findings of level ``c.level`` with dead-network added and the remedies that a
    root cause makes wrong withheld (see the module docstring). ``skip``: the ids not
    judged at this level (non-finite outputs); a skipped root cause withholds nothing."""
    out = list(findings)
    dead = None if "dead-network" in skip else dead_network(c)
    if dead is not None:
        why = "the network is dead at this level and no label or loss change revives it"
        for f in out:
            if f.level == c.level and f.id in DEFERRED and f.remedies:
                _withhold(f, "dead-network", why)
        return [dead, *out]
    if "offset-head-untrained" in skip or not any(
        f.id == "offset-head-untrained" and f.level == c.level for f in out
    ):
        return out
    peaks = c.m.get("peaks_above_threshold")
    fire = peaks is not None and peaks >= c.th.calibration_peak_share
    untrained = next(f for f in out if f.id == "offset-head-untrained" and f.level == c.level)
    kept: list[Finding] = []
    for f in out:
        if f.level == c.level and f.id in EXPLAINED_COLLAPSES and fire:
            untrained.evidence.update(ev(suppressed=f.id, peaks_above_threshold=peaks,
                                         f1_at_threshold=c.m.get("f1_at_threshold")))  # fmt: skip
            untrained.explanation += (
                f" {pct(peaks)} of the target peaks reach the threshold, yet F1 there is "
                f"{num(c.m.get('f1_at_threshold'))}: the detections miss their targets because "
                f"every one sits at the same point of its cell, so no {f.id} is reported."
            )
            continue
        if f.level == c.level and f.id == "label-quantization" and f.remedies:
            _withhold(f, "offset-head-untrained", "a trained offset head recovers the "
                      "quantisation, so a finer level is not needed")  # fmt: skip
        kept.append(f)
    return kept
