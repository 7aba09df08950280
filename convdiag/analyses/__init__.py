"""Streaming analyses of one level; ``build_analyses`` gives the registry's instances.

Each module holds one analysis (``update(step)`` / ``compute()`` / ``state()`` /
``merge(state)``; see ``analyses.base``). The order of ``ANALYSES`` is the report's order.
"""

from __future__ import annotations

from convdiag.analyses.activations import ActivationAnalysis, ActivationProbe
from convdiag.analyses.base import Analysis, AnalysisContext, AnalysisStep, Candidate
from convdiag.analyses.detections import DetectionAnalysis
from convdiag.analyses.displacement import DisplacementAnalysis
from convdiag.analyses.gradients import GradientAnalysis
from convdiag.analyses.heads import HeadGradientAnalysis
from convdiag.analyses.loss import LossAnalysis
from convdiag.analyses.offsets import OffsetAnalysis
from convdiag.analyses.outputs import OutputAnalysis
from convdiag.analyses.scores import ScoreAnalysis

ANALYSES = (
    "outputs",
    "scores",
    "loss",
    "gradients",
    "heads",
    "offsets",
    "detections",
    "displacement",
    "activations",
)

__all__ = [
    "ANALYSES",
    "Analysis",
    "AnalysisContext",
    "AnalysisStep",
    "Candidate",
    "build_analyses",
]


def build_analyses(
    ctx: AnalysisContext,
    head_params: dict[str, int] | None = None,
    probe: ActivationProbe | None = None,
) -> dict[str, Analysis]:
    """One fresh instance of every analysis for the level of ``ctx``, keyed by name.

    probe: the pass's forward hooks on the model (one for every level; None: the
    activations analysis measures the outputs only)."""
    made: dict[str, Analysis] = {
        "outputs": OutputAnalysis(),
        "scores": ScoreAnalysis(ctx.threshold),
        "loss": LossAnalysis(ctx.recipe),
        "gradients": GradientAnalysis(ctx),
        "heads": HeadGradientAnalysis(ctx.recipe, head_params),
        "offsets": OffsetAnalysis(ctx.stride),
        "detections": DetectionAnalysis(ctx.radius, ctx.threshold),
        "displacement": DisplacementAnalysis(ctx.stride, ctx.radius),
        "activations": ActivationAnalysis(ctx, probe),
    }
    return {k: made[k] for k in ANALYSES}
