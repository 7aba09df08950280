"""Quickstart: diagnose a P2 point detector that does not converge, then prove the fix.

The story of convdiag in well under a minute on a laptop CPU, on a synthetic set of dim point
targets written to a temporary folder:

1. label statistics at P2 (stride 4): how rare positive cells are;
2. train the reference P2 detector briefly with the failing recipe (hard one-cell labels,
   BCE, a zero-initialised classification bias);
3. analyze the checkpoint: findings with their evidence, ranked remedies;
4. retrain with the top remedy, side by side with the unchanged recipe (same weights,
   steps and seed), and print the before/after.

    python examples/quickstart.py [--steps 60] [--retrain-steps 200] [--seed 1] [--out DIR]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import convdiag


def main() -> None:
    """Run the four steps and print one short paragraph per step."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=60, help="training steps of the failing run")
    ap.add_argument("--retrain-steps", type=int, default=200, help="steps of each retraining")
    ap.add_argument("--seed", type=int, default=1, help="seed of the runs (weights, batches)")
    ap.add_argument("--out", type=Path, default=None, help="keep everything here (default: temp)")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp)
        data = out / "data"
        convdiag.synthesize(
            data, convdiag.SynthConfig(n=48, size=(96, 128), snr=8.0, clutter=0.3, seed=1)
        )
        train_ds, _ = convdiag.load_train_val(data)

        # 1. How rare is a positive cell at P2?
        stats = convdiag.label_statistics([(r.size, r.points) for r in train_ds.records], ["P2"])
        p2 = stats["levels"]["P2"]
        print(f"labels at P2: {p2['positive_cells']} positive cells of {p2['cells']} "
              f"(1:{p2['neg_per_pos']:.0f}); a constant predictor scores BCE "
              f"{p2['constant_loss']['bce']:.4f}")  # fmt: skip

        # 2. The failing recipe: hard labels, BCE, zero bias.
        failing = convdiag.Recipe(
            head="P2", labels="hard", loss="bce", bias_init="zero", seed=args.seed
        )
        run = convdiag.train(data, failing, steps=args.steps, out=out / "failing", width=8)
        end = run.final  # the last validation
        print(f"trained {failing.describe()} for {args.steps} steps: F1@0.5 "
              f"{end['f1_at_0.5']:.2f}, cls loss {end['cls_loss']:.4f} "
              f"(constant predictor {end['constant_loss']:.4f})")  # fmt: skip

        # 3. What happened, measured on the model.
        ckpt = out / "failing" / "checkpoint.pt"  # self-describing: model, weights, recipe
        report = convdiag.analyze_checkpoint(ckpt, data, quiet=True)
        print(f"verdict: {report['verdict']}")
        # Findings come sorted (errors first); take the first with a remedy retrain applies.
        fixable = [(f, r) for f in report["findings"] for r in f["remedies"] if r["applied"]]
        if not fixable:
            print("nothing to fix: no finding with a remedy")
            return
        top, remedy = fixable[0]
        print(f"top finding: {top['id']} ({top['severity']}) - {top['explanation']}")
        print(f"top remedy: {remedy['id']} {remedy['params']} - {remedy['why']}")

        # 4. Prove it: continue with the remedy and with the unchanged recipe.
        fixed = convdiag.retrain(ckpt, data, [remedy], steps=args.retrain_steps, seed=args.seed)
        print(f"{'':14}{'before':>8}{'unchanged':>11}{'remedy':>8}")
        for key in ("f1_at_0.5", "best_f1", "precision", "recall", "fp_per_image"):
            b, u, r = (fixed[k][key] for k in ("before", "baseline", "remedy"))
            print(f"{key:14}{b:8.2f}{u:11.2f}{r:8.2f}")
        print(f"best F1 after {args.retrain_steps} more steps: unchanged recipe "
              f"{fixed['baseline']['best_f1']:.2f}, with {remedy['id']} "
              f"{fixed['remedy']['best_f1']:.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
