"""Several processes on torch.distributed: process group, ranks, sharding, reductions, relaunch.

``train``, ``retrain`` and ``analyze`` run under ``torchrun --nproc_per_node N -m convdiag ...``
(gloo on CPU, NCCL on CUDA, one GPU per process: ``cuda:LOCAL_RANK``), or relaunch themselves
that way with ``--devices N``. Outside torchrun (no ``WORLD_SIZE`` above 1 in the
environment) every helper here is a no-op: rank 0 of a world of 1.

- ``session(device)``: initialises the process group for the command and tears it down
  (after a barrier, so no rank leaves while rank 0 still writes). Inside it, ranks other
  than 0 print nothing (stdout and stderr go to /dev/null): only rank 0 prints and writes.
- Analyses: each rank takes the images ``rank::world`` (``shard_indices``) and
  ``reduce_analyses`` all-gathers every analysis's ``state()`` and ``merge``s the others', so
  every rank ends with the pooled accumulators (DESIGN.md: analyses are batch-invariant, so
  the numbers equal a single process's up to float rounding).
- Training: the model is wrapped in DistributedDataParallel (gradients averaged), each
  rank draws its own share of the batch (``batch_share``) from a generator seeded with
  (seed, step, rank); only rank 0 evaluates and writes checkpoints and history.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from convdiag.errors import InputError

# Seconds a failing rank other than 0 waits before it exits (see ``session``).
FAIL_DELAY_S = 2.0


# --------------------------------------------------------------------------- rank and world


def env_world_size() -> int:
    """WORLD_SIZE from the environment (torchrun sets it), 1 when absent or unreadable."""
    try:
        return max(1, int(os.environ.get("WORLD_SIZE", "1")))
    except ValueError:
        return 1


def local_rank() -> int:
    """LOCAL_RANK from the environment (torchrun sets it), 0 when absent."""
    try:
        return int(os.environ.get("LOCAL_RANK", "0"))
    except ValueError:
        return 0


def is_initialized() -> bool:
    """True when a torch.distributed process group is up."""
    return bool(torch.distributed.is_available() and torch.distributed.is_initialized())


def world_size() -> int:
    """Processes in the group (1 without one)."""
    return int(torch.distributed.get_world_size()) if is_initialized() else 1


def rank() -> int:
    """This process's rank (0 without a group)."""
    return int(torch.distributed.get_rank()) if is_initialized() else 0


def is_main() -> bool:
    """True on rank 0, the process that prints and writes."""
    return rank() == 0


def rank_device(device: torch.device) -> torch.device:
    """The device of this rank: under torchrun a CUDA device becomes ``cuda:LOCAL_RANK``
    (one GPU per process); anything else is returned unchanged."""
    if device.type == "cuda" and env_world_size() > 1:
        return torch.device("cuda", local_rank())
    return device


# --------------------------------------------------------------------------- process group


def init(device: torch.device) -> bool:
    """Initialise the default process group when launched by torchrun with WORLD_SIZE > 1.

    Backend: NCCL for a CUDA device (after ``torch.cuda.set_device``), gloo otherwise.
    Returns True when this call initialised the group (and so should tear it down).
    """
    if env_world_size() <= 1 or is_initialized():
        return False
    if device.type == "cuda":
        torch.cuda.set_device(device)
        torch.distributed.init_process_group("nccl", device_id=device)
    else:
        torch.distributed.init_process_group("gloo")
    return True


def teardown(wait: bool = True) -> None:
    """Destroy the process group; with ``wait``, after a barrier (every rank done)."""
    if not is_initialized():
        return
    if wait:
        barrier()
    torch.distributed.destroy_process_group()


def barrier() -> None:
    """Wait for every rank (no-op without a group)."""
    if is_initialized():
        torch.distributed.barrier()


@contextmanager
def quiet_streams() -> Iterator[None]:
    """Send stdout and stderr to /dev/null for the duration (Python-level streams)."""
    old = sys.stdout, sys.stderr
    with open(os.devnull, "w") as null:
        sys.stdout = sys.stderr = null
        try:
            yield
        finally:
            sys.stdout, sys.stderr = old


@contextmanager
def session(device_text: str) -> Iterator[None]:
    """The distributed part of a command: init the group for ``--device device_text``,
    silence ranks other than 0, and on the way out wait for every rank and tear down.

    On an exception the barrier is skipped (the other ranks may be blocked elsewhere;
    torchrun stops them when this process exits with an error); a rank other than 0 waits
    ``FAIL_DELAY_S`` first, so that when every rank fails alike (bad input) rank 0 exits
    first with its own code and message.
    """
    started = init(resolve_device(device_text)) if env_world_size() > 1 else False
    ok = False
    try:
        if is_main():
            yield
        else:
            with quiet_streams():
                yield
        ok = True
    except Exception:
        if started and not is_main():
            time.sleep(FAIL_DELAY_S)
        raise
    finally:
        if started:
            teardown(wait=ok)


def resolve_device(text: str) -> torch.device:
    """``auto`` (CUDA when available, else CPU), ``cpu``, ``cuda`` or ``cuda:N``.

    Under torchrun (WORLD_SIZE > 1) a CUDA device is ``cuda:LOCAL_RANK``: one GPU per rank.
    """
    t = text.strip().lower()
    if t == "auto":
        return rank_device(torch.device("cuda" if torch.cuda.is_available() else "cpu"))
    if t == "cpu":
        return torch.device("cpu")
    if t.startswith("cuda"):
        if not torch.cuda.is_available():
            raise InputError(f"--device {text}: CUDA is not available on this machine")
        try:
            return rank_device(torch.device(t))
        except RuntimeError:
            raise InputError(f"--device {text}: use auto, cpu, cuda or cuda:N") from None
    raise InputError(f"--device {text}: use auto, cpu, cuda or cuda:N")


# --------------------------------------------------------------------------- sharding


def shard_indices(n: int, rank_: int | None = None, world: int | None = None) -> list[int] | None:
    """Indices of a dataset of ``n`` items that this rank takes: rank, rank + world, ...

    None (everything) in a world of 1.
    """
    r = rank() if rank_ is None else rank_
    w = world_size() if world is None else world
    if w <= 1:
        return None
    return list(range(r, n, w))


def shard_size(n: int) -> int:
    """How many of ``n`` items this rank takes."""
    idx = shard_indices(n)
    return n if idx is None else len(idx)


def batch_share(batch: int, rank_: int | None = None, world: int | None = None) -> int:
    """This rank's part of a global batch: batch // world, plus one on the first
    batch % world ranks; at least 1 (a batch smaller than the world gives 1 per rank)."""
    r = rank() if rank_ is None else rank_
    w = world_size() if world is None else world
    return max(1, batch // w + (1 if r < batch % w else 0))


# --------------------------------------------------------------------------- reductions


def all_gather_object(obj: Any) -> list[Any]:
    """Every rank's ``obj`` (picklable), in rank order; ``[obj]`` without a group."""
    if not is_initialized():
        return [obj]
    out: list[Any] = [None] * world_size()
    torch.distributed.all_gather_object(out, obj)
    return out


def all_reduce_state(state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Sum of every rank's plain state {key: array} (a key missing on a rank counts as 0).

    total[k] = sum over ranks r = 0..world-1 of state_r[k], added in rank order, so every
    rank gets bit-identical totals. Shapes of a key must agree across ranks.
    """
    states = all_gather_object({k: np.asarray(v) for k, v in state.items()})
    total: dict[str, np.ndarray] = {}
    for st in states:
        for k, v in st.items():
            total[k] = total[k] + v if k in total else np.array(v, copy=True)
    return total


def reduce_analyses(analyses: dict[str, dict[str, Any]]) -> None:
    """All-reduce streaming analyses in place: {level: {name: analysis}} on every rank.

    Each analysis merges every other rank's ``state()`` (in rank order); an analysis with
    ``merge_example`` (the plotted example image) keeps the example of lowest dataset index.
    No-op in a world of 1.
    """
    if world_size() <= 1:
        return
    me = rank()
    mine = {lv: {k: a.state() for k, a in an.items()} for lv, an in analyses.items()}
    examples = {
        lv: {k: getattr(a, "_example", None) for k, a in an.items() if hasattr(a, "merge_example")}
        for lv, an in analyses.items()
    }
    gathered = all_gather_object((mine, examples))
    for r, (states, exs) in enumerate(gathered):
        if r == me:
            continue
        for lv, an in analyses.items():
            for k, a in an.items():
                a.merge(states[lv][k])
                if k in exs[lv]:
                    other = _with_example(a, exs[lv][k])
                    a.merge_example(other)


def _with_example(a: Any, example: Any) -> Any:
    """A shallow copy of analysis ``a`` holding ``example`` (what ``merge_example`` reads)."""
    import copy

    other = copy.copy(a)
    other._example = example
    return other


# --------------------------------------------------------------------------- training


def wrap_ddp(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """``model`` wrapped in DistributedDataParallel when the world is larger than 1, else
    ``model`` itself. DDP broadcasts rank 0's weights at wrap time and averages gradients."""
    if world_size() <= 1:
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index if device.index is not None else local_rank()]
    return DistributedDataParallel(model, device_ids=ids if device.type == "cuda" else None)


# --------------------------------------------------------------------------- relaunch


def should_relaunch(devices: int | None) -> bool:
    """True when ``--devices N`` asks for N > 1 processes and this is not already one of them."""
    return bool(devices and devices > 1 and env_world_size() <= 1)


def torchrun_args(command: str, args: Sequence[str], devices: int, log_dir: str) -> list[str]:
    """torchrun's arguments: one node, ``devices`` processes on a free port (standalone
    rendezvous), ranks above 0 with stdout and stderr in ``log_dir``, running
    ``python -m convdiag command args``."""
    out = ["--standalone", "--nnodes", "1", "--nproc-per-node", str(devices)]
    out += ["--log-dir", log_dir]
    if devices > 1:
        out += ["--redirects", ",".join(f"{r}:3" for r in range(1, devices))]
    return [*out, "-m", "convdiag", command, *args]


def launch(command: str, args: Sequence[str], devices: int, device_text: str = "cpu") -> int:
    """Run ``convdiag command args`` in ``devices`` processes through torchrun's launcher
    (``torch.distributed.run``, here in this process, as ``python -m torch.distributed.run``
    would) and return rank 0's exit code.

    Each worker gets OMP_WAIT_POLICY=PASSIVE and OMP_NUM_THREADS = cores // devices unless
    set. A CUDA ``--device`` needs ``devices`` GPUs. When rank 0 succeeded but another rank
    failed, the tail of that rank's log goes to stderr and the exit code is 3.
    """
    if device_text.strip().lower().startswith("cuda"):
        have = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if devices > have:
            raise InputError(f"--devices {devices}: --device {device_text} sees {have} GPU(s)")
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args
    from torch.distributed.run import run as torchrun

    env = {
        "OMP_WAIT_POLICY": "PASSIVE",
        "OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // devices)),
    }
    saved = {k: os.environ.get(k) for k in env}
    for k, v in env.items():
        os.environ.setdefault(k, v)
    quiet = _quiet_elastic_logs()
    try:
        with tempfile.TemporaryDirectory(prefix="convdiag-torchrun-") as logs:
            parsed = parse_args(torchrun_args(command, args, devices, logs))
            try:
                torchrun(parsed)
            except ChildFailedError as e:
                return _failure_code(e.failures, Path(logs))
            except KeyboardInterrupt:
                return 130
            except Exception as e:  # torchrun's SignalException on SIGINT/SIGTERM
                if type(e).__name__ == "SignalException":
                    return 130
                raise
    finally:
        quiet()
        for k, old in saved.items():
            if old is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = old
    return 0


def _failure_code(failures: dict[int, Any], logs: Path) -> int:
    """The exit code of a failed launch: rank 0's when it exited with one; else (rank 0
    stopped by torchrun because another rank failed first, or succeeded) the first failed
    rank's, with the tail of its stderr log; 130 when every rank was stopped by a signal."""
    codes = {r: int(f.exitcode) for r, f in failures.items()}
    if codes.get(0, 0) > 0:
        return codes[0]
    failed = sorted(r for r, c in codes.items() if c > 0)
    if not failed:
        return 130
    r = failed[0]
    tails = sorted(logs.rglob(f"{r}/stderr.log"))
    lines = tails[0].read_text(errors="replace").strip().splitlines() if tails else []
    last = lines[-1] if lines else f"convdiag: error: exit code {codes[r]}"
    print(f"{last} (rank {r})", file=sys.stderr, flush=True)
    return codes[r]


def _quiet_elastic_logs() -> Callable[[], None]:
    """Raise torch.distributed.elastic's loggers to CRITICAL (convdiag reports failures
    itself); returns the function that restores their levels."""
    loggers = [
        logging.getLogger(n)
        for n in list(logging.root.manager.loggerDict)
        if n.startswith("torch.distributed")
    ]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL)

    def restore() -> None:
        for lg, lv in zip(loggers, levels, strict=True):
            lg.setLevel(lv)

    return restore


def cpu_threads(jobs: int) -> int:
    """Threads per process when ``jobs`` processes share this machine's cores."""
    return max(1, math.floor((os.cpu_count() or 1) / max(1, jobs)))
