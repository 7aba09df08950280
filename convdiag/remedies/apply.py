"""Remedies applied to a recipe: ``--remedy ID[:key=value,...]`` parsed and applied."""

from __future__ import annotations

from typing import Any

from convdiag.diagnosis.remedy_catalogue import ADVICE_IDS, REMEDY_DEFAULTS, REMEDY_IDS
from convdiag.errors import InputError
from convdiag.load.recipe import Recipe
from convdiag.targets.geometry import level_name


def parse_remedy(text: str) -> tuple[str, dict[str, Any]]:
    """Parse ``ID[:key=value,...]`` into (id, params); numbers become int or float."""
    rid, _, rest = text.partition(":")
    rid = rid.strip()
    if rid in ADVICE_IDS:
        raise InputError(f"--remedy {rid}: advice, not a recipe change: retrain does not apply it")
    if rid not in REMEDY_IDS:
        raise InputError(f"--remedy {rid!r}: unknown remedy; use one of {', '.join(REMEDY_IDS)}")
    params: dict[str, Any] = {}
    for item in filter(None, (p.strip() for p in rest.split(","))):
        if "=" not in item:
            raise InputError(f"--remedy {text!r}: {item!r} is not key=value")
        k, v = (s.strip() for s in item.split("=", 1))
        if k not in REMEDY_DEFAULTS[rid]:
            known = ", ".join(REMEDY_DEFAULTS[rid]) or "none"
            raise InputError(f"--remedy {rid}: unknown parameter {k!r} (known: {known})")
        params[k] = _number(v)
    return rid, params


def _number(v: str) -> Any:
    try:
        return int(v)
    except ValueError:
        pass
    try:
        return float(v)
    except ValueError:
        return v


def apply_remedy(recipe: Recipe, rid: str, params: dict[str, Any] | None = None) -> Recipe:
    """A copy of ``recipe`` with remedy ``rid`` applied (parameters default per REMEDY_DEFAULTS).

    The schedule remedy takes a schedule string such as "dynamic" or
    "0.3:5:1.2,0.7:4:1.0,1.0:3:0.8" as its ``schedule`` parameter.
    """
    if rid not in REMEDY_DEFAULTS:
        raise InputError(f"unknown remedy {rid!r}")
    p = {**REMEDY_DEFAULTS[rid], **(params or {})}
    try:  # the Recipe checks every value (type, finite, range) and names it
        return _apply(recipe, rid, p)
    except InputError as e:
        raise InputError(f"--remedy {rid}: {e}") from None
    except (TypeError, ValueError, OverflowError, KeyError):
        shown = ",".join(f"{k}={v!r}"[:40] for k, v in (params or {}).items())
        raise InputError(f"--remedy {rid}: parameters {shown} are not valid numbers") from None


def _apply(recipe: Recipe, rid: str, p: dict[str, Any]) -> Recipe:
    r = Recipe.from_dict(recipe.to_dict())
    if rid == "soft-labels":
        r.labels, r.kernel, r.sigma, r.trunc = (
            "soft",
            p["kernel"],  # checked (a whole number in range) by the Recipe
            float(p["sigma"]),
            float(p["trunc"]),
        )
        r.schedule = None
    elif rid == "sigma-schedule":
        r.labels, r.schedule = "soft", str(p["schedule"])
    elif rid == "focal-loss":
        r.loss, r.focal_alpha, r.focal_beta = "focal", float(p["alpha"]), float(p["beta"])
        r.pos_weight, r.ohem = None, None
    elif rid == "pos-weight":
        r.pos_weight = float(p["w"])
    elif rid == "ohem":
        r.ohem = float(p["ratio"])
    elif rid == "loss-ramp":
        r.loss_ramp = {k: float(p[k]) for k in ("start", "end", "ramp", "cap")}
    elif rid == "oversample":
        r.oversample = float(p["p"])
    elif rid == "copy-paste":
        r.copy_paste = p["n"]  # checked by the Recipe
    elif rid == "level-change":
        r.head = level_name(p["level"])
    elif rid == "fused-head":
        r.head = "fused"
    Recipe.__post_init__(r)
    r.remedies = [*recipe.remedies, rid]
    return r
