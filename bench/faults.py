"""Seeded fault benchmark: how often convdiag's verdict is right, including "nothing is wrong".

Each run trains a detector briefly with a recipe meant to produce one fault (or a healthy
recipe), measures what actually happened with a plain evaluation that never looks at the
rules (the run's *truth*), analyzes it with convdiag (``remedies.analyze.analyze_dataset``,
the pass and rules of ``convdiag analyze``) and compares the top finding with the truth.

Fault types (recipe -> the truth it is meant to produce; the truth decides):
    background-collapse    hard labels, BCE, zero bias at P2
    calibration-collapse   hard labels, BCE, zero bias, a low learning rate
    fp-flood               hard labels, BCE, pos_weight 3000
    regression-collapse    hard labels, BCE at P4 (label quantisation counts too)
    label-shift-cell       a healthy model, analyzed with labels one cell off (+s, +s px)
    label-shift-half       ... with 1-based pixel indices read as continuous (+0.5 px)
    label-shift-swap       ... with x and y swapped
    dead-network           a learning rate of 3 (dead head / dead units)
    non-finite-outputs     a healthy model with one NaN weight
    gradient-starvation    hard labels, BCE, OHEM 3:1
    offset-head-untrained  soft labels, focal loss at P3, offset loss weight 0 (P4 leaves the
                           small images a 4x6 grid, too coarse to classify in 300 steps)
    healthy-soft-focal     soft 3x3 labels, focal loss at P2
    healthy-hard-centred   hard labels, BCE, prior bias, target-centred crops (p 0.5)
across seeds, two synthetic variants (SNR, clutter, targets per image) and two model
families: the reference detector and a user-style model (its own output dict, read through
an adapter, ``--model faults:user_net --adapter faults:user_adapter``).

Truth (plain evaluation on the validation images, decode + one-to-one matching at r = 3 px
against the labels the model was meant to learn and against the labels analyzed), first
match wins: non-finite outputs; dead (max score < 1e-4 or score std < 1e-6, or best F1 <
0.1 with half of all ReLU channels constant over the set, by forward hooks); label shift
(learned: best F1 >= 0.5 on the true labels, and the analyzed labels lose >= 0.2 F1 or
their matched pairs sit >= 0.35 px off on average, 0.25 px more than against the true
ones); offset head untrained (cell-level F1, matched within r + 0.71 stride of the cell
centres, >= 0.3, offset std at target cells < 5% of the true offsets'); fp-flood (> 5 FP
per image and precision < 0.3 at 0.5); regression collapse (best F1 < 0.5 while
cell-level F1 >= 0.5 and the offset std ratio < 0.5); calibration collapse (best F1 over
thresholds 0.001-0.95 >= 0.5, F1 at 0.5 under half of it); background collapse (best F1
< 0.1); healthy (F1 at 0.5 >= 0.5); otherwise "unclear" (partly learned; left out of the
rates, and counted).
A run meant to fail that learned is healthy. Gradient starvation has no signature in a
plain evaluation apart from a collapse, so its runs are scored as whatever they measured.

Printed: per truth type and overall, detection rate (any warning or error on a faulty run),
root-cause accuracy (the right finding id ranked first), false-alarm rate (any warning or
error on a healthy run), each with a Wilson 95% interval, and the confusion table (truth x
top finding). Run: ``OMP_NUM_THREADS=1 .venv/bin/python bench/faults.py --quick``
(``--workers 2`` on two free cores; ``--json PATH`` keeps every run, ``--report PATH``
prints its tables again). Measured on 2 idle cores: ``--quick`` 156 runs in 3.2 min, the
full run 260 runs in 14.3 min (README has both tables).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import json
import math
import multiprocessing as mp
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parent))  # ``faults:user_net`` for workers

from convdiag.load.batching import iterate_batches
from convdiag.load.options import ModelOptions
from convdiag.load.recipe import Recipe
from convdiag.load.sample import PointDataset, Record
from convdiag.load.synth import SynthConfig, render_synthetic
from convdiag.remedies.analyze import analyze_dataset
from convdiag.targets.decode import DetectionMetrics, decode
from convdiag.targets.geometry import stride_of
from convdiag.training.workflow import train_new_model

RADIUS = 3.0
THRESHOLDS = np.array([0.001, 0.002, 0.005, 0.01, 0.02, 0.05, *np.arange(0.1, 0.951, 0.05)])
VARIANTS = {
    "A": {"snr": 8.0, "clutter": 0.3, "targets": (1, 4)},
    "B": {"snr": 5.0, "clutter": 0.8, "targets": (2, 6)},
}
SOFT_FOCAL = {"labels": "soft", "loss": "focal"}
# name -> (recipe changes, base run to reuse instead of training, post-processing)
FAULTS: dict[str, tuple[dict[str, Any], str | None, str | None]] = {
    "healthy-soft-focal": (SOFT_FOCAL, None, None),
    "healthy-hard-centred": ({"oversample": 0.5, "bias_init": "prior"}, None, None),
    "background-collapse": ({"bias_init": "zero"}, None, None),
    "calibration-collapse": ({"bias_init": "zero", "lr": 5e-4}, None, None),
    "fp-flood": ({"pos_weight": 3000.0}, None, None),
    "regression-collapse": ({"head": "P4"}, None, None),
    "label-shift-cell": (SOFT_FOCAL, "healthy-soft-focal", "shift-cell"),
    "label-shift-half": (SOFT_FOCAL, "healthy-soft-focal", "shift-half"),
    "label-shift-swap": (SOFT_FOCAL, "healthy-soft-focal", "swap"),
    "dead-network": ({"lr": 3.0}, None, None),
    "non-finite-outputs": (SOFT_FOCAL, "healthy-soft-focal", "nan"),
    "gradient-starvation": ({"ohem": 3.0}, None, None),
    "offset-head-untrained": ({"head": "P3", **SOFT_FOCAL, "reg_weight": 0.0}, None, None),
}
# finding ids that name each truth correctly when ranked first
ACCEPT = {
    "regression-collapse": {"regression-collapse", "label-quantization"},
}


# --------------------------------------------------------------------------- user model


class UserNet(nn.Module):
    """A user's detector: stride 4 or 16, returns {"heatmap": logits, "offset": [0, 1]}."""

    def __init__(self, stride: int = 4, width: int = 16, bias: str = "prior") -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 1
        for _ in range(int(math.log2(stride))):
            layers += [nn.Conv2d(c_in, width, 3, stride=2, padding=1), nn.BatchNorm2d(width)]
            layers += [nn.ReLU()]
            c_in = width
        for _ in range(2):
            layers += [nn.Conv2d(c_in, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU()]
            c_in = width
        self.body = nn.Sequential(*layers)
        self.heatmap = nn.Conv2d(width, 1, 1)
        self.offset = nn.Conv2d(width, 2, 1)
        with torch.no_grad():
            assert self.heatmap.bias is not None
            self.heatmap.bias.fill_(math.log(0.01 / 0.99) if bias == "prior" else 0.0)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        f = self.body(x)
        return {"heatmap": self.heatmap(f), "offset": torch.sigmoid(self.offset(f))}


def user_net(stride: int = 4, width: int = 16, bias: str = "prior") -> UserNet:
    """Factory for ``--model faults:user_net``."""
    return UserNet(stride, width, bias)


def user_adapter(raw: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
    """The user's output dict -> convdiag's (cls logits, offsets)."""
    return raw["heatmap"], raw["offset"]


# --------------------------------------------------------------------------- data


def make_dataset(variant: str, n: int, size: tuple[int, int], seed: int) -> PointDataset:
    """n synthetic images of one variant in memory (seeded)."""
    cfg = SynthConfig(n=n, size=size, seed=seed, **VARIANTS[variant])  # type: ignore[arg-type]
    rng = np.random.default_rng(seed)
    images, records = [], []
    for i in range(n):
        img, _mask, pts = render_synthetic(rng, cfg)
        images.append(img)
        records.append(Record(f"{i:04d}", Path(f"{i:04d}.png"), size, pts))
    return PointDataset(records, lambda r: images[int(r.id)], "memory", f"synth-{variant}")


def relabel(ds: PointDataset, how: str | None, stride: int) -> PointDataset:
    """The labels a faulty annotation would give: one cell off, +0.5 px, or x/y swapped."""
    if how not in ("shift-cell", "shift-half", "swap"):
        return ds

    def f(p: np.ndarray) -> np.ndarray:
        if how == "shift-cell":
            return p + float(stride)
        if how == "shift-half":
            return p + 0.5
        return np.ascontiguousarray(p[:, ::-1])

    recs = [replace(r, points=f(r.points.copy())) for r in ds.records]
    return PointDataset(recs, ds.reader, ds.source, ds.format)


# --------------------------------------------------------------------------- truth


def plain_eval(runner: Any, true_ds: PointDataset, given_ds: PointDataset) -> dict[str, Any]:
    """Detection and offset figures of the model against the true and the analyzed labels."""
    m_true = DetectionMetrics(THRESHOLDS, RADIUS)
    m_given = DetectionMetrics(THRESHOLDS, RADIUS)
    m_cell: DetectionMetrics | None = None
    scores: list[np.ndarray] = []
    nonfinite = 0
    d_true: list[np.ndarray] = []
    d_given: list[np.ndarray] = []
    p_off: list[np.ndarray] = []
    t_off: list[np.ndarray] = []
    lo: dict[int, Tensor] = {}
    hi: dict[int, Tensor] = {}

    def hook(mod: nn.Module, _inp: Any, out: Tensor) -> None:
        # per-channel range of every ReLU's output over the whole set
        k = id(mod)
        mn, mx = out.amin(dim=(0, 2, 3)), out.amax(dim=(0, 2, 3))
        lo[k] = torch.minimum(lo[k], mn) if k in lo else mn
        hi[k] = torch.maximum(hi[k], mx) if k in hi else mx

    hooks = [
        m.register_forward_hook(hook) for m in runner.model.modules() if isinstance(m, nn.ReLU)
    ]
    runner.model.eval()
    with torch.no_grad():
        for b, bg in zip(
            iterate_batches(true_ds, 8, runner.pad_to),
            iterate_batches(given_ds, 8, runner.pad_to),
            strict=True,
        ):
            out = next(iter(runner(b.images).values()))
            s = out.stride
            cls, reg = out.cls, out.reg
            for k, (hh, ww) in enumerate(b.sizes):
                h, w = math.ceil(hh / s), math.ceil(ww / s)
                c = cls[k, 0, :h, :w]
                nonfinite += int((~torch.isfinite(c)).sum())
                if reg is not None:
                    nonfinite += int((~torch.isfinite(reg[k, :, :h, :w])).sum())
                scores.append(torch.sigmoid(c).reshape(-1).double().numpy())
            preds = decode(cls, reg, s, b.sizes)
            m_true.update(preds, b.points, b.sizes)
            m_given.update(preds, bg.points, b.sizes)
            if m_cell is None:
                m_cell = DetectionMetrics(THRESHOLDS, RADIUS + 0.71 * s)
            m_cell.update(decode(cls, None, s, b.sizes), b.points, b.sizes)
            for (pts, sc), gt, gg in zip(preds, b.points, bg.points, strict=True):
                keep = pts[sc >= 0.5]
                d_true.append(_matched_offsets(keep, gt))
                d_given.append(_matched_offsets(keep, gg))
            if reg is not None:
                for k, gt in enumerate(b.points):
                    for x, y in np.asarray(gt).reshape(-1, 2):
                        j, i = int(x // s), int(y // s)
                        p_off.append(reg[k, :, i, j].double().numpy())
                        t_off.append(np.array([x / s - j, y / s - i]))
    for h in hooks:
        h.remove()
    const = [((hi[k] - lo[k]).abs() <= 1e-6 * (1 + hi[k].abs())) for k in lo]
    n_ch = sum(int(c.numel()) for c in const)
    all_s = np.concatenate(scores) if scores else np.zeros(1)
    fin = all_s[np.isfinite(all_s)]
    res: dict[str, Any] = {
        "nonfinite": nonfinite,
        "max_score": float(fin.max()) if len(fin) else 0.0,
        "score_std": float(fin.std()) if len(fin) else 0.0,
        "dead_share": sum(int(c.sum()) for c in const) / n_ch if n_ch else None,
    }
    for name, met in (("true", m_true), ("given", m_given), ("cell", m_cell)):
        assert met is not None
        c = met.compute()
        f1 = np.asarray(c["curves"]["f1"])
        res[f"{name}_best_f1"] = float(f1.max())
        res[f"{name}_f1_05"] = float(c["f1"])
        if name == "true":
            res["fp_per_image"] = float(c["fp_per_image"])
            res["precision"] = float(c["precision"])
    for name, ds in (("true", d_true), ("given", d_given)):
        d = np.concatenate(ds) if ds else np.zeros((0, 2))
        res[f"{name}_offset_px"] = float(np.hypot(*d.mean(0))) if len(d) >= 5 else None
    if p_off:
        p, t = np.array(p_off), np.array(t_off)
        tstd = t.std(0)
        res["offset_std_ratio"] = float(np.mean(p.std(0) / np.maximum(tstd, 1e-9)))
    return res


def _matched_offsets(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Vectors pred - gt of the one-to-one matches closer than RADIUS."""
    from convdiag.targets.decode import match

    g = np.asarray(gt, np.float64).reshape(-1, 2)
    pi, gi, _ = match(pred, g, RADIUS)
    return np.asarray(pred)[pi] - g[gi]


def truth_of(e: dict[str, Any], relabelled: bool) -> str:
    """The fault a plain evaluation shows (see the module docstring), or healthy/unclear."""
    if e["nonfinite"] > 0:
        return "non-finite-outputs"
    if e["max_score"] < 1e-4 or e["score_std"] < 1e-6:
        return "dead-network"
    if e["true_best_f1"] < 0.1 and (e.get("dead_share") or 0.0) >= 0.5:
        return "dead-network"
    if relabelled and e["true_best_f1"] >= 0.5:
        lost = e["given_best_f1"] <= e["true_best_f1"] - 0.2
        gt_off, gv_off = e["true_offset_px"], e["given_offset_px"]
        off = gv_off is not None and gv_off >= 0.35 and gv_off >= (gt_off or 0.0) + 0.25
        if lost or off:
            return "label-shift"
    osr = e.get("offset_std_ratio")
    if osr is not None and osr < 0.05 and e["cell_best_f1"] >= 0.3:
        return "offset-head-untrained"
    if e["fp_per_image"] > 5 and e["precision"] < 0.3:
        return "fp-flood"
    if e["true_best_f1"] < 0.5 and e["cell_best_f1"] >= 0.5 and (osr is None or osr < 0.5):
        return "regression-collapse"
    if e["true_best_f1"] >= 0.5 and e["true_f1_05"] < 0.5 * e["true_best_f1"]:
        return "calibration-collapse"
    if e["true_best_f1"] < 0.1:
        return "background-collapse"
    return "healthy" if e["true_f1_05"] >= 0.5 else "unclear"


# --------------------------------------------------------------------------- runs


@dataclass
class Job:
    """One (variant, seed, family) cell of the grid: every fault type is run in it."""

    variant: str
    seed: int
    family: str
    steps: int
    n_images: int
    size: tuple[int, int]
    faults: tuple[str, ...]


def model_opts(family: str, recipe: Recipe) -> ModelOptions | None:
    """The user-style model for ``family == "user"`` (stride from the recipe's head)."""
    if family == "reference":
        return None
    stride = stride_of(recipe.head)
    args = {"stride": str(stride), "bias": recipe.bias_init}
    return ModelOptions(model="faults:user_net", model_args=args, adapter="faults:user_adapter")


def run_job(job: Job) -> list[dict[str, Any]]:
    """Train, evaluate and analyze every fault type of one grid cell."""
    torch.set_num_threads(1)
    ds = make_dataset(job.variant, job.n_images, job.size, seed=100 + job.seed)
    n_val = max(8, job.n_images // 3)
    val = ds.subset(list(range(n_val)))
    train = ds.subset(list(range(n_val, len(ds))))
    trained: dict[str, Any] = {}
    rows = []
    for name in job.faults:
        changes, base, post = FAULTS[name]
        t0, c0 = time.perf_counter(), time.process_time()
        recipe = Recipe(**{**changes, "seed": job.seed})  # type: ignore[arg-type]
        key = base or name
        if key not in trained:
            run = train_new_model(
                recipe, train, val, job.steps, torch.device("cpu"),
                model_opts=model_opts(job.family, recipe),
            )  # fmt: skip
            trained[key] = run
        run = trained[key]
        model = run.model
        if post == "nan":
            import copy

            model = copy.deepcopy(model)
            with torch.no_grad():
                w = next(model.parameters())
                w[(0,) * w.ndim] = float("nan")
        runner = run.spec.runner(model, torch.device("cpu"))
        stride = stride_of(recipe.head)
        given = relabel(val, post, stride)
        truth_e = plain_eval(runner, val, given)
        truth = truth_of(truth_e, given is not val)
        try:
            rep, _ = analyze_dataset(runner, given, run.recipe, radius=RADIUS)
            found = [f for f in rep["findings"] if f["severity"] in ("warning", "error")]
            top = found[0]["id"] if found else "healthy"
            ids = [f["id"] for f in found]
            err = None
        except Exception as e:  # a crash is a wrong verdict, and worth seeing
            top, ids, err = "crash", [], f"{type(e).__name__}: {e}"
        rows.append(
            {
                "variant": job.variant, "seed": job.seed, "family": job.family,
                "fault": name, "truth": truth, "top": top, "findings": ids, "error": err,
                "eval": truth_e, "seconds": round(time.perf_counter() - t0, 2),
                "cpu_seconds": round(time.process_time() - c0, 2),
            }
        )  # fmt: skip
        print(
            f"  {job.variant} s{job.seed} {job.family:9s} {name:22s} truth {truth:22s} "
            f"top {top:22s} ({rows[-1]['seconds']:.1f}s) "
            + " ".join(f"{k}={v:.3g}" for k, v in truth_e.items() if isinstance(v, float)),
            flush=True,
        )
    return rows


# --------------------------------------------------------------------------- scoring


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float, float] | None:
    """Rate k/n with its Wilson score interval: (p, low, high); None when n == 0."""
    if n == 0:
        return None
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return p, max(0.0, c - h), min(1.0, c + h)


def fmt(k: int, n: int) -> str:
    w = wilson(k, n)
    if w is None:
        return "-"
    return f"{k}/{n} = {w[0]:.0%} [{w[1]:.0%}, {w[2]:.0%}]"


def score(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Detection, root-cause accuracy and false alarms per truth type and overall."""
    by: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        by[r["truth"]].append(r)
    table: dict[str, Any] = {}
    det_k = det_n = rc_k = 0
    for truth, rs in sorted(by.items()):
        if truth in ("healthy", "unclear"):
            continue
        ok = ACCEPT.get(truth, {truth})
        d = sum(r["top"] != "healthy" for r in rs)
        c = sum(r["top"] in ok for r in rs)
        table[truth] = {"runs": len(rs), "detected": d, "root_cause": c}
        det_k, det_n, rc_k = det_k + d, det_n + len(rs), rc_k + c
    h = by.get("healthy", [])
    fa = sum(r["top"] != "healthy" for r in h)
    return {
        "types": table,
        "overall": {"runs": det_n, "detected": det_k, "root_cause": rc_k},
        "healthy": {"runs": len(h), "false_alarms": fa},
        "unclear": len(by.get("unclear", [])),
    }


def print_report(rows: list[dict[str, Any]], seconds: float | None) -> None:
    s = score(rows)
    took = (
        f"in {seconds / 60:.1f} min"
        if seconds is not None
        else f"({sum(r['seconds'] for r in rows) / 60:.1f} min of runs summed)"
    )
    cpu = sum(r.get("cpu_seconds", 0.0) for r in rows)
    took += f", {cpu / 60:.1f} CPU-min"
    print(f"\n{len(rows)} runs {took}; detection = any warning/error on a "
          "faulty run, root cause = right id ranked first (Wilson 95%)\n")  # fmt: skip
    print("| truth | runs | detection | root cause |\n|---|---|---|---|")
    for t, v in s["types"].items():
        n = v["runs"]
        print(f"| {t} | {n} | {fmt(v['detected'], n)} | {fmt(v['root_cause'], n)} |")
    o = s["overall"]
    print(f"| **all faults** | {o['runs']} | {fmt(o['detected'], o['runs'])} | "
          f"{fmt(o['root_cause'], o['runs'])} |")  # fmt: skip
    h = s["healthy"]
    print(
        f"\nfalse alarms on healthy runs: {fmt(h['false_alarms'], h['runs'])}; "
        f"unclear (partly learned, left out): {s['unclear']}"
    )
    tops = sorted({r["top"] for r in rows})
    truths = sorted({r["truth"] for r in rows})
    cnt = Counter((r["truth"], r["top"]) for r in rows)
    print("\nconfusion (rows: truth, columns: top finding)\n")
    print("| truth \\ top | " + " | ".join(tops) + " |")
    print("|---" * (len(tops) + 1) + "|")
    for t in truths:
        print(f"| {t} | " + " | ".join(str(cnt[(t, c)] or "") for c in tops) + " |")
    recipe_vs = Counter((r["fault"], r["truth"]) for r in rows)
    print("\nrecipe -> truth: " + "; ".join(f"{f} -> {t} x{n}" for (f, t), n in
                                            sorted(recipe_vs.items())))  # fmt: skip
    crashes = [r for r in rows if r["error"]]
    for r in crashes[:5]:
        print(f"crash: {r['fault']} {r['family']} {r['variant']} s{r['seed']}: {r['error']}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="3 seeds, 96 images of 64x96, 300 steps")
    ap.add_argument("--seeds", type=int, default=None)
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--faults", default=None, help="comma-separated subset of fault types")
    ap.add_argument("--families", default="reference,user")
    ap.add_argument("--variants", default="A,B")
    ap.add_argument("--json", default=None, help="write every run to this file")
    ap.add_argument("--report", default=None, help="print the tables of a --json file")
    a = ap.parse_args()
    if a.report:
        saved = json.loads(Path(a.report).read_text())
        print_report(saved, None)
        return
    seeds = a.seeds or (3 if a.quick else 5)
    steps = a.steps or (300 if a.quick else 600)
    n, size = (96, (64, 96)) if a.quick else (160, (96, 128))
    faults = tuple(a.faults.split(",")) if a.faults else tuple(FAULTS)
    unknown = [f for f in faults if f not in FAULTS]
    if unknown:
        sys.exit(f"--faults: unknown {unknown[0]!r} (known: {', '.join(FAULTS)})")
    # a run that reuses a trained base needs the base in the same job
    jobs = [
        Job(v, seed, fam, steps, n, size, faults)
        for v in a.variants.split(",")
        for seed in range(seeds)
        for fam in a.families.split(",")
    ]
    t0 = time.perf_counter()
    rows: list[dict[str, Any]] = []

    def keep(part: list[dict[str, Any]]) -> None:
        rows.extend(part)
        if a.json:  # after every grid cell, so a run cut short keeps what it measured
            Path(a.json).write_text(json.dumps(rows, indent=1, default=float))

    if a.workers > 1:
        with mp.get_context("fork").Pool(a.workers) as pool:
            for part in pool.imap_unordered(run_job, jobs):
                keep(part)
    else:
        for job in jobs:
            keep(run_job(job))
    print_report(rows, time.perf_counter() - t0)


if __name__ == "__main__":
    main()
