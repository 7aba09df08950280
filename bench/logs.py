"""Benchmark reading a large training log (run: python bench/logs.py [--mb 200] [--jsonl]).

Writes a Lightning-style ``metrics.csv`` of about ``--mb`` megabytes (step, epoch, 8 train
losses every row, 4 validation metrics every 50th row, empty cells between), then reads it
in a fresh process with ``convdiag.watch.discover.read_log`` and reports the wall time, the
peak resident memory of that process, and the ratios to the file size (over a baseline
process that only imports convdiag and numpy) and to ``pandas.read_csv`` of the same file.
The reader streams the rows and keeps a float64 step and value per cell given.

Set OMP_WAIT_POLICY=PASSIVE when other processes share the cores.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

# One float64 step and one float64 value per cell given: ~16 bytes per value against ~10
# bytes of text, so about 1.7 bytes of memory per byte of log is the floor of this layout.
AIMS = {"extra_rss_per_file_byte": 3.0, "rss_vs_pandas": 1.0}
PROBE = (
    "import resource, sys, time\n"
    "import numpy\n"
    "from convdiag.watch.discover import read_log\n"
    "t = time.perf_counter()\n"
    "if len(sys.argv) > 2:\n"
    "    import pandas\n"
    "    n = int(pandas.read_csv(sys.argv[1]).count().sum())\n"
    "else:\n"
    "    raw = read_log(sys.argv[1]) if len(sys.argv) > 1 else None\n"
    "    n = sum(len(s) for s in raw.columns.values()) if raw else 0\n"
    "print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, n)\n"
)


def write_csv(path: Path, megabytes: float, seed: int = 0) -> int:
    """Write the log; returns its size in bytes."""
    rng = np.random.default_rng(seed)
    train = [f"train/loss_{k}" for k in range(8)]
    val = ["val/f1", "val/precision", "val/recall", "val/map"]
    target = int(megabytes * 1e6)
    with path.open("w") as f:
        f.write(",".join(["step", "epoch", *train, *val]) + "\n")
        step = 0
        while f.tell() < target:
            block = rng.random((1000, len(train)))
            lines = []
            for row in block:
                step += 1
                cells = [str(step), str(step // 1000)] + [f"{v:.6f}" for v in row]
                cells += [f"{v:.4f}" for v in rng.random(4)] if step % 50 == 0 else [""] * 4
                lines.append(",".join(cells))
            f.write("\n".join(lines) + "\n")
    return path.stat().st_size


def write_jsonl(path: Path, megabytes: float, seed: int = 0) -> int:
    """Write an mmengine-style ``scalars.json`` of about ``megabytes``: a train line (lr,
    8 losses, iter, step) per iteration and a validation line every 50th; returns bytes."""
    import json

    rng = np.random.default_rng(seed)
    target = int(megabytes * 1e6)
    with path.open("w") as f:
        step = 0
        while f.tell() < target:
            lines = []
            for row in rng.random((1000, 8)):
                step += 1
                d = {"lr": 0.01, **{f"loss_{k}": round(float(v), 6) for k, v in enumerate(row)}}
                lines.append(json.dumps({**d, "iter": step, "step": step}))
                if step % 50 == 0:
                    lines.append(json.dumps({"coco/bbox_mAP": round(float(row[0]), 4),
                                             "step": step}))  # fmt: skip
            f.write("\n".join(lines) + "\n")
    return path.stat().st_size


def _probe(args: list[str]) -> tuple[float, int, int]:
    out = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True,
                         check=True).stdout.split()  # fmt: skip
    return float(out[0]), int(out[1]) * 1024, int(out[2])


def main(argv: list[str] | None = None) -> dict[str, float]:
    """Measure and print; returns the ratios (name -> value)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=float, default=200.0)
    ap.add_argument("--jsonl", action="store_true", help="an mmengine scalars.json instead")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / ("scalars.json" if args.jsonl else "metrics.csv")
        t0 = time.perf_counter()
        size = (write_jsonl if args.jsonl else write_csv)(path, args.mb)
        print(f"wrote {size / 1e6:.0f} MB in {time.perf_counter() - t0:.1f} s")
        _, base_rss, _ = _probe([])
        seconds, rss, values = _probe([str(path)])
        if args.jsonl:  # pandas.read_json(lines=True) is the comparison there
            pd_seconds, pd_rss = float("nan"), rss
        else:
            pd_seconds, pd_rss, _ = _probe([str(path), "pandas"])
    extra = rss - base_rss
    print(f"read_log        : {seconds:6.1f} s, {values:,} values, {size / seconds / 1e6:.0f} MB/s")
    print(f"peak RSS        : {rss / 2**20:6.0f} MiB (imports alone {base_rss / 2**20:.0f} MiB)")
    print(f"extra / file    : {extra / size:6.2f} bytes of memory per byte of log")
    if not args.jsonl:
        print(f"pandas.read_csv : {pd_seconds:6.1f} s, peak RSS {pd_rss / 2**20:.0f} MiB")
    return {
        "extra_rss_per_file_byte": extra / size,
        "rss_vs_pandas": rss / pd_rss,
        "seconds_per_100mb": seconds * 1e8 / size,
    }


if __name__ == "__main__":
    main()
