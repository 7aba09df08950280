"""Training curves: loss, F1 and false positives per image against step, one line per run."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from convdiag.report.saved_arrays import save_png

COLOURS = {"baseline": "#c0392b", "remedy": "#1f77b4", "train": "#1f77b4"}


def _series(rows: Sequence[Mapping[str, Any]], key: str) -> tuple[list[float], list[float]]:
    xs, ys = [], []
    for r in rows:
        v = r.get(key)
        if v is None or v == "":
            continue
        v = float(v)
        if math.isfinite(v):
            xs.append(float(r["step"]))
            ys.append(v)
    return xs, ys


def _ratio(rows: Sequence[Mapping[str, Any]]) -> tuple[list[float], list[float]]:
    xs, ys = [], []
    for r in rows:
        try:
            v = float(r["cls_loss"]) / float(r["constant_loss"])
        except (KeyError, TypeError, ValueError, ZeroDivisionError):
            continue
        if math.isfinite(v) and v > 0:
            xs.append(float(r["step"]))
            ys.append(v)
    return xs, ys


CURVE_KEYS = ("ratio", "f1_at_0.5", "best_f1", "fp_per_image")


def curve_arrays(runs: Mapping[str, Sequence[Mapping[str, Any]]]) -> dict[str, Any]:
    """The curves of ``runs`` ({run: history rows}) as arrays: {"runs": names [R] (their
    order), "<i>": {key: float64 [n, 2] (step, value)}} for the CURVE_KEYS ("ratio": cls loss
    over the constant-predictor loss); non-finite values are left out."""
    out: dict[str, Any] = {"runs": np.asarray([str(n) for n in runs], dtype=str)}
    for i, rows in enumerate(runs.values()):
        out[str(i)] = {
            key: np.asarray(
                list(zip(*(_ratio(rows) if key == "ratio" else _series(rows, key)), strict=True)),
                dtype=np.float64,
            ).reshape(-1, 2)
            for key in CURVE_KEYS
        }
    return out


def plot_curves(
    runs: Mapping[str, Sequence[Mapping[str, Any]]], path: str | os.PathLike[str]
) -> None:
    """``draw_curves`` of the history rows ``runs`` ({run: rows})."""
    draw_curves(curve_arrays(runs), path)


def draw_curves(arrays: dict[str, Any], path: str | os.PathLike[str]) -> None:
    """Three panels against step: validation cls loss over the constant-predictor loss (1 =
    no better than predicting the label prior everywhere), F1 at threshold 0.5 and best F1,
    and FP per image (log scale). arrays: ``curve_arrays`` (as read back from report.npz)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def xy(run: dict[str, Any], key: str) -> tuple[Any, Any]:
        a = np.asarray(run.get(key, np.zeros((0, 2))), dtype=np.float64).reshape(-1, 2)
        return a[:, 0], a[:, 1]

    names = [str(n) for n in np.atleast_1d(arrays.get("runs", np.zeros(0, dtype=str)))]
    runs = {n: arrays.get(str(i), {}) for i, n in enumerate(names)}
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for name, run in runs.items():
        c = COLOURS.get(name)
        x, y = xy(run, "ratio")
        axes[0].plot(x, y, marker="o", ms=3, color=c, label=name)
        x, y = xy(run, "f1_at_0.5")
        axes[1].plot(x, y, marker="o", ms=3, color=c, label=f"{name} F1 @ 0.5")
        x, y = xy(run, "best_f1")
        axes[1].plot(x, y, ls=":", color=c, label=f"{name} best F1")
        x, y = xy(run, "fp_per_image")
        axes[2].plot(x, y, marker="o", ms=3, color=c, label=name)
    axes[0].axhline(1.0, ls="--", color="grey", lw=1, label="constant predictor")
    axes[0].set_title("val cls loss / constant-predictor loss")
    axes[0].set_yscale("log")
    axes[1].set_title("F1 (validation)")
    axes[1].set_ylim(-0.02, 1.02)
    axes[2].set_title("false positives per image @ 0.5")
    axes[2].set_yscale("symlog", linthresh=0.1)
    axes[2].set_ylim(bottom=0)
    for ax in axes:
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    save_png(fig, path)
