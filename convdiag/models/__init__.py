"""Models: the reference point detector, model factories, output normalisation, checkpoints.

``convdiag.models:reference`` is the factory string of the reference detector.
"""

from __future__ import annotations

from typing import Any


def reference(**kwargs: Any) -> Any:
    """Build the reference detector (see ``convdiag.models.detector.reference``)."""
    from convdiag.models.detector import reference as build

    return build(**kwargs)
