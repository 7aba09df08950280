"""The demo story: synthesise, train the failing P2 recipe, explain, retrain with the remedy.

The defaults reproduce the seed's phenomenon on 2 CPU cores in a few minutes: hard one-cell
labels with BCE and a zero-initialised head collapse to background at P2, while soft labels
with focal loss, continued from the same checkpoint for the same steps and seed, converge.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from convdiag.load.recipe import Recipe
from convdiag.report.console import md_table, progress, table
from convdiag.report.retrain_report import render_markdown as retrain_markdown
from convdiag.report.retrain_report import render_table as retrain_table
from convdiag.report.retrain_report import write_retrain

DEFAULT_REMEDIES: list[tuple[str, dict[str, Any]]] = [
    ("soft-labels", {"kernel": 5, "sigma": 1.2}),
    ("focal-loss", {}),
]


@dataclass
class DemoConfig:
    """Synthetic set (n images of size (H, W)), training and retraining steps, seed, remedies,
    and the device (``--device`` text: auto, cpu, cuda or cuda:N)."""

    n: int = 560
    size: tuple[int, int] = (240, 320)
    steps: int = 600
    retrain_steps: int = 300
    seed: int = 0
    remedies: list[tuple[str, dict[str, Any]]] | None = None
    snr: float = 6.0
    clutter: float = 0.3
    lr: float = 1e-3
    device: str = "cpu"


def baseline_recipe(seed: int, lr: float = 1e-3) -> Recipe:
    """The failing recipe: P2, hard one-cell labels, BCE, zero bias, crops anywhere."""
    return Recipe(head="P2", labels="hard", loss="bce", bias_init="zero", seed=seed, lr=lr)


def run_demo(cfg: DemoConfig, out: Path, console: Console, quiet: bool = False) -> dict[str, Any]:
    """Run the story, writing everything under ``out``; returns the report dict.

    Report: {"dataset", "labels" (P2 statistics), "analysis" (findings, when available),
    "before", "baseline", "remedy", "recipes", "history", ...} - the before/baseline/remedy
    shape of ``retrain``'s report.json.
    """

    from convdiag.diagnosis.labels import label_statistics
    from convdiag.load.datasets import load_train_val
    from convdiag.load.files import write_json
    from convdiag.load.synth import SynthConfig, synthesize
    from convdiag.report.curves import curve_arrays, draw_curves
    from convdiag.report.html import write_html
    from convdiag.report.saved_arrays import load_arrays, save_arrays
    from convdiag.training.distributed import resolve_device
    from convdiag.training.workflow import retrain_compare, train_new_model

    say = (lambda *a: None) if quiet else console.print
    data = out / "data"
    synthesize(
        data, SynthConfig(n=cfg.n, size=cfg.size, seed=cfg.seed, snr=cfg.snr, clutter=cfg.clutter)
    )
    train_ds, val_ds = load_train_val(data, None, seed=cfg.seed)
    say(
        f"[bold]1. Data[/]: {len(train_ds)} training and {len(val_ds)} validation images of "
        f"{cfg.size[0]}x{cfg.size[1]}, {train_ds.num_targets} training targets -> {data}"
    )

    stats = label_statistics([(r.size, r.points) for r in train_ds.records], ["P2", "P3", "P4"])
    p2 = stats["levels"]["P2"]
    say(f"[bold]2. Labels at P2[/]: {p2['positive_cells']:,} positive cells of {p2['cells']:,} "
        f"(1:{p2['neg_per_pos']:.0f}); a constant predictor already scores BCE "
        f"{p2['constant_loss']['bce']:.5f}")  # fmt: skip

    recipe = baseline_recipe(cfg.seed, cfg.lr)
    device = resolve_device(cfg.device)
    with progress(f"3. training {recipe.describe()}", cfg.steps, quiet) as advance:
        run = train_new_model(recipe, train_ds, val_ds, cfg.steps, device, out=out,
                              ckpt_name="failing.pt", run_name="failing",
                              on_step=lambda s, i: advance(1))  # fmt: skip
    spec, model, base = run.spec, run.model, run.result
    f = base.final
    say(f"[bold]3. Failing recipe[/] ({recipe.describe()}, {cfg.steps} steps): F1@0.5 "
        f"{f['f1_at_0.5']:.3f}, FP/image {f['fp_per_image']:.2f}, cls loss {f['cls_loss']:.5f} vs "
        f"constant predictor {f['constant_loss']:.5f}")  # fmt: skip
    save_arrays(out, {"curves": curve_arrays({"failing": base.history})})
    draw_curves(load_arrays(out)["curves"], out / "failing_curves.png")

    analysis = analyze_failure(out / "failing.pt", data, out, quiet, cfg.device)
    if analysis and analysis.get("findings"):
        top = analysis["findings"][0]
        say(f"[bold]4. Diagnosis[/]: {top['id']} ({top['severity']}) - {top['explanation']}")

    remedies = cfg.remedies or DEFAULT_REMEDIES
    names = " + ".join(r for r, _ in remedies)
    with progress(f"5. retraining with {names} (and the unchanged recipe)",
                  2 * cfg.retrain_steps, quiet) as advance:  # fmt: skip
        report = retrain_compare(
            spec, model, recipe, remedies, train_ds, val_ds, cfg.retrain_steps, cfg.seed, True,
            out / "retrain", device, on_step=lambda name, s, i: advance(1),
        )  # fmt: skip
    write_retrain(report, out / "retrain")
    report["dataset"] = {"path": str(data), "train_images": len(train_ds),
                         "val_images": len(val_ds), "size": list(cfg.size)}  # fmt: skip
    report["labels"] = stats
    report["analysis"] = analysis
    report["failing_training"] = {
        "steps": cfg.steps,
        **{k: v for k, v in f.items() if k != "curves"},
    }
    report["kind"] = "demo"
    report["plots"] = ["failing_curves.png"]
    write_json(out / "report.json", report)
    write_html(out, report)
    return report


def analyze_failure(
    ckpt: Path, data: Path, out: Path, quiet: bool, device: str = "cpu"
) -> dict[str, Any] | None:
    """The analysis of the failing checkpoint, when ``convdiag.analyses.run`` is available."""
    try:
        from convdiag.report.analyze import analyze_checkpoint
    except ImportError:
        return None
    result: dict[str, Any] = analyze_checkpoint(
        ckpt, data, out=out / "analysis", quiet=quiet, device=device
    )
    return result


def render_table(console: Console, report: dict[str, Any]) -> None:
    """Final screen: the before/baseline/remedy table and one line of verdict."""
    retrain_table(console, report)
    rem, base = report["remedy"], report.get("baseline") or {}
    console.print(
        f"\n[bold]F1 @ 0.5: {base.get('f1_at_0.5', 0):.2f} with the unchanged recipe -> "
        f"{rem.get('f1_at_0.5', 0):.2f} with the remedy[/] after the same steps and seed."
    )
    if report.get("analysis") and report["analysis"].get("findings"):
        rows = [(f["id"], f["severity"], f["level"]) for f in report["analysis"]["findings"]]
        console.print(
            table("findings on the failing checkpoint", ["id", "severity", "level"], rows)
        )


def render_markdown(report: dict[str, Any]) -> str:
    """The demo report as Markdown."""
    text = "# convdiag demo\n\n" + retrain_markdown(report)
    if report.get("analysis") and report["analysis"].get("findings"):
        rows = [(f["id"], f["severity"], f["level"]) for f in report["analysis"]["findings"]]
        text += "\n## Findings on the failing checkpoint\n\n" + md_table(
            ["id", "severity", "level"], rows
        )
    return text
