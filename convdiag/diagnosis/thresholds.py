"""The one set of diagnosis thresholds, read from ``[tool.convdiag.thresholds]``.

Every surface (analyze, labels, logs, check, Monitor) judges with the same ``Thresholds``:
the model rules use the first block, the log rules (evidence over time) the second, the
live Monitor the third. A threshold shared by several surfaces is one field.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from convdiag.errors import InputError
from convdiag.load.config import register_threshold_names


@dataclass
class Thresholds:
    """Diagnosis thresholds; every field can be set in ``[tool.convdiag.thresholds]``.

    Model rules (analyze, check; the shared ones also in logs and Monitor):

    - f1_min: F1 at the threshold below this = detection failed.
    - auc_min: target-vs-background AUC at or above this (and some threshold reaching
      F1 >= f1_min) = ranking present.
    - calibration_f1_share, calibration_peak_share: with ranking present, F1 at the threshold
      below this share of the best F1 at any threshold while fewer than this share of the
      targets' peaks reach the threshold = calibration-collapse (also when not failed); the
      peak share also gates gradient-starvation (only targets not learned yet starve) and is
      Monitor's "targets unlearned" bar.
    - fp_per_image_max, precision_max_flood: more FP per image (and, unless detection
      failed, precision below this) = fp-flood.
    - grad_share_min, grad_cells_90_max: target-area share of the cls gradient mass below
      the first, or share of cells carrying 90% of it above the second = gradient-starvation.
    - offset_std_ratio_min, offset_r2_min: both below = regression-collapse, when offsets
      matter (cell-centre RMS error above offset_needed_radius_share x radius).
    - offset_untrained_std_ratio: predicted / true offset std at target cells below this
      on both axes = offset-head-untrained instead (the head got no learning signal).
    - dead_feeding_share_min, dead_bn_var_median_min, dead_logit_abs_min: with detection
      failed, this share of the channels feeding the heads constant over the dataset, or
      a median BatchNorm running variance or a largest |logit| at or above these =
      dead-network.
    - quantization_radius_share: label quantisation p95 above this x radius, with the
      model's p90 offset error above the radius = label-quantization.
    - collision_share_max: label-collision. head_ratio_max: |grad cls| / |grad reg| outside
      [1/x, x] = head-imbalance. nonfinite_max: share of non-finite outputs tolerated.
    - min_targets: fewer target cells than this = offset statistics not judged.
    - loss_margin: a cls loss within this relative margin of the constant predictor's is
      "at the constant" (logs without a detection metric; Monitor).
    - label_shift_*: label-shift when the mean vector from each target to its nearest
      peak (within a few cells) is consistent: one-sample test p below label_shift_p_max
      over the targets and below label_shift_image_p_max over the per-image means,
      at least label_shift_side_share of the displacements on one side of the dominant
      axis, a peak found for label_shift_found_share of the targets; an error when the
      mean exceeds the match radius, a warning from label_shift_min_px. Swapped x/y:
      peaks within the radius of label_shift_swap_share of the swapped positions and
      label_shift_swap_gain times more than at the labels' own. A displacement whose
      slope on the label's position in its cell is below -label_shift_slope_max (share
      of the stride) is a constant offset head's, not a label shift.

    Label rules (``convdiag labels``, risk before any training): quantisation p95 above
    label_quantization_share x radius; more than neg_per_pos_max negatives per positive =
    extreme-imbalance (also the bar of a level to move to).

    Log rules (``convdiag logs``): min_points values at the end of the run make a stretch;
    loss_fall_min, reg_margin, reg_flat_max, fp_fall_min, precision_rise_min,
    plateau_points, plateau_decimals and smooth as in ``watch.symptoms``.

    Monitor: patience samples in a row make a symptom.
    """

    f1_min: float = 0.1
    auc_min: float = 0.9
    calibration_f1_share: float = 0.5
    calibration_peak_share: float = 0.5
    fp_per_image_max: float = 5.0
    precision_max_flood: float = 0.3
    grad_share_min: float = 0.2
    grad_cells_90_max: float = 0.5
    offset_std_ratio_min: float = 0.5
    offset_r2_min: float = 0.25
    offset_needed_radius_share: float = 0.6
    offset_untrained_std_ratio: float = 0.05
    dead_feeding_share_min: float = 0.5
    dead_bn_var_median_min: float = 1e3
    dead_logit_abs_min: float = 1e3
    quantization_radius_share: float = 1.0
    collision_share_max: float = 0.01
    head_ratio_max: float = 100.0
    nonfinite_max: float = 0.0
    min_targets: float = 10.0
    loss_margin: float = 0.3
    label_shift_p_max: float = 1e-3
    label_shift_image_p_max: float = 0.05
    label_shift_side_share: float = 0.75
    label_shift_found_share: float = 0.5
    label_shift_min_px: float = 0.4
    label_shift_swap_share: float = 0.5
    label_shift_swap_gain: float = 2.0
    label_shift_slope_max: float = 0.5
    # labels (risk before training)
    label_quantization_share: float = 0.9
    neg_per_pos_max: float = 1000.0
    # logs
    min_points: int = 3
    loss_fall_min: float = 0.1
    reg_margin: float = 0.15
    reg_flat_max: float = 0.1
    fp_fall_min: float = 0.3
    precision_rise_min: float = 0.1
    plateau_points: int = 5
    plateau_decimals: int = 6
    smooth: int = 5
    # Monitor
    patience: int = 3

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """The field names (the keys a config file may set)."""
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def from_config(cls, overrides: dict[str, float] | None) -> Thresholds:
        """Defaults updated by ``overrides`` (unknown names: InputError); integer fields
        (counts) are rounded to int."""
        t = cls()
        kinds = {f.name: f.type for f in dataclasses.fields(cls)}
        for k, v in (overrides or {}).items():
            if k not in kinds:
                raise InputError(f"unknown threshold {k!r} (known: {', '.join(cls.names())})")
            setattr(t, k, round(float(v)) if kinds[k] in (int, "int") else float(v))
        return t

    def replace(self, **changes: Any) -> Thresholds:
        """A copy with ``changes`` applied."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, float]:
        """Plain data."""
        return dataclasses.asdict(self)


register_threshold_names(Thresholds.names())
