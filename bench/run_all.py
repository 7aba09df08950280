"""Run every benchmark in bench/ and print one table of their ratios.

Protocol: each bench script ``bench/<name>.py`` has ``main(argv=None) -> dict[str, float]``
that measures, prints its own details and returns its ratios (name -> value); an optional
module constant ``AIMS`` maps a ratio name to its target (at most this). Each script is
imported from its file and its ``main`` called with no arguments (its defaults), one after
another in this process; a script that fails is reported in the table and the others run.

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python bench/run_all.py [--only labels,train] [--markdown]

Exit code 1 when a ratio misses its aim or a script fails.
"""

from __future__ import annotations

import argparse
import importlib.util
import inspect
import os
import platform
import sys
import time
import traceback
from pathlib import Path
from types import ModuleType
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

BENCH_DIR = Path(__file__).resolve().parent
BENCHES = ("labels", "analyze", "train", "monitor", "decode", "logs")


def load(name: str) -> ModuleType:
    """Import ``bench/<name>.py`` as module ``bench_<name>``."""
    path = BENCH_DIR / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"bench_{name}", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def run_one(name: str) -> dict[str, Any]:
    """Run one bench script: {"bench", "ratios", "aims", "seconds", "error"}."""
    import torch

    threads = torch.get_num_threads()  # a script may change it; the next starts afresh
    t0 = time.perf_counter()
    try:
        module = load(name)
        fn = module.main
        ratios = fn([]) if inspect.signature(fn).parameters else fn()
        if not isinstance(ratios, dict):
            raise TypeError(f"bench/{name}.py main() returned {type(ratios).__name__}, not a dict")
        aims = dict(getattr(module, "AIMS", {}))
        error = None
    except Exception as e:  # one failing bench must not stop the others
        traceback.print_exc()
        ratios, aims, error = {}, {}, f"{type(e).__name__}: {e}"
    finally:
        torch.set_num_threads(threads)
    return {
        "bench": name,
        "ratios": {k: float(v) for k, v in ratios.items()},
        "aims": aims,
        "seconds": time.perf_counter() - t0,
        "error": error,
    }


def machine() -> str:
    """One line describing where the numbers come from."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{cpu}, {os.cpu_count()} logical cores, {torch.get_num_threads()} torch threads "
        f"by default, Python {platform.python_version()}, "
        f"torch {torch.__version__}, {platform.system()} {platform.release()}"
    )


def rows(results: list[dict[str, Any]]) -> list[list[str]]:
    """Table rows: bench, ratio, value, aim, verdict, seconds of the whole script."""
    out = []
    for r in results:
        if r["error"]:
            out.append([r["bench"], "-", "-", "-", f"failed: {r['error']}", f"{r['seconds']:.0f}"])
            continue
        for k, v in r["ratios"].items():
            aim = r["aims"].get(k)
            verdict = "" if aim is None else ("ok" if v <= aim else "MISSED")
            out.append([r["bench"], k, f"{v:.3f}", "" if aim is None else f"<= {aim:g}",
                        verdict, f"{r['seconds']:.0f}"])  # fmt: skip
    return out


def render(table: list[list[str]], markdown: bool) -> str:
    """The table as aligned text, or as Markdown."""
    head = ["bench", "ratio", "value", "aim", "", "script s"]
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
        return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in table])
    widths = [max(len(str(x)) for x in col) for col in zip(head, *table, strict=False)]
    fmt = "  ".join(f"{{:{w}}}" for w in widths)
    return "\n".join([fmt.format(*head), fmt.format(*("-" * w for w in widths))]
                     + [fmt.format(*r) for r in table])  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    """Run the benchmarks and print the table; 1 when a ratio misses its aim or one fails."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default=None, help="comma-separated bench names")
    ap.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    args = ap.parse_args(argv)
    names = [n.strip() for n in args.only.split(",")] if args.only else list(BENCHES)
    unknown = [n for n in names if not (BENCH_DIR / f"{n}.py").is_file() or n == "run_all"]
    if unknown:
        ap.error(f"no bench script {', '.join(unknown)} in {BENCH_DIR}")
    where = machine()
    results = []
    for n in names:
        print(f"== bench/{n}.py", flush=True)
        results.append(run_one(n))
    table = rows(results)
    print()
    print(f"machine: {where}")
    print(render(table, args.markdown))
    bad = any(r["error"] for r in results) or any(row[4] == "MISSED" for row in table)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
