"""torch.distributed support: sharding, batch shares, reductions, argument rebuilding, and
(slow) ``analyze`` / ``retrain`` in two gloo processes on CPU compared with one process."""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from convdiag.cli.distributed import command_line
from convdiag.load.datasets import load_dataset
from convdiag.load.recipe import Recipe
from convdiag.training import distributed as dist
from convdiag.training.batches import ImageCache, draw_batch


@given(st.integers(0, 200), st.integers(1, 7))
def test_shards_partition_the_dataset(n: int, world: int) -> None:
    shards = [dist.shard_indices(n, r, world) for r in range(world)]
    if world == 1:
        assert shards == [None]
        return
    flat = sorted(i for s in shards for i in s or [])
    assert flat == list(range(n))
    sizes = [len(s or []) for s in shards]
    assert max(sizes) - min(sizes) <= 1


@given(st.integers(1, 64), st.integers(1, 8))
def test_batch_shares_add_up(batch: int, world: int) -> None:
    shares = [dist.batch_share(batch, r, world) for r in range(world)]
    assert all(s >= 1 for s in shares)
    assert sum(shares) == max(batch, world)
    assert max(shares) - min(shares) <= 1


def test_single_process_helpers_are_no_ops() -> None:
    assert not dist.is_initialized()
    assert (dist.rank(), dist.world_size(), dist.is_main()) == (0, 1, True)
    assert dist.shard_indices(5) is None and dist.shard_size(5) == 5
    assert dist.all_gather_object({"a": 1}) == [{"a": 1}]
    state = {"x": np.arange(3.0)}
    np.testing.assert_array_equal(dist.all_reduce_state(state)["x"], state["x"])
    model = torch.nn.Linear(2, 1)
    assert dist.wrap_ddp(model, torch.device("cpu")) is model
    dist.barrier()
    dist.teardown()
    assert not dist.should_relaunch(1) and not dist.should_relaunch(None)
    assert dist.should_relaunch(2)


def test_rank_device_under_torchrun(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert dist.rank_device(torch.device("cuda", 0)) == torch.device("cuda", 1)
    assert dist.rank_device(torch.device("cpu")) == torch.device("cpu")
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert dist.rank_device(torch.device("cuda", 0)) == torch.device("cuda", 0)


def test_draw_batch_per_rank(tmp_path: Path) -> None:
    """World 1 keeps the (seed, step) stream; rank r of a world draws its share from
    (seed, step, r), so ranks see different images and a rank repeats itself."""
    from convdiag.load.synth import SynthConfig, synthesize

    synthesize(tmp_path / "d", SynthConfig(n=10, size=(32, 32), seed=0))
    ds = load_dataset(tmp_path / "d")
    cache, recipe = ImageCache(ds), Recipe(batch=5, seed=7)
    targets = np.arange(len(ds))

    def draw(rank: int, world: int) -> list[int]:
        return draw_batch(ds, cache, recipe, 3, 32, None, targets, rank, world).indices

    expect = np.random.default_rng((7, 3)).integers(0, len(ds), size=5).tolist()
    assert draw(0, 1) == expect
    r0, r1 = draw(0, 2), draw(1, 2)
    assert len(r0) == 3 and len(r1) == 2
    assert r0 == np.random.default_rng((7, 3, 0)).integers(0, len(ds), size=3).tolist()
    assert r1 == np.random.default_rng((7, 3, 1)).integers(0, len(ds), size=2).tolist()
    assert draw(1, 2) == r1


@click.command()
@click.argument("data", type=click.Path())
@click.option("--steps", type=int, default=5)
@click.option("--lr", type=float, default=0.1)
@click.option("--flag", is_flag=True)
@click.option("--on/--off", default=True)
@click.option("--remedy", multiple=True)
@click.option("--devices", type=int, default=None)
def _probe(**kw: Any) -> None:
    click.echo(json.dumps(command_line(click.get_current_context())))


@pytest.mark.parametrize(
    "args",
    [
        ["data"],
        ["--steps", "7", "--lr", "0.30000000000000004", "--flag", "--", "-weird"],
        ["d", "--off", "--remedy", "focal-loss", "--remedy", "ohem:ratio=3", "--devices", "2"],
    ],
)
def test_command_line_round_trips(args: list[str]) -> None:
    """The rebuilt arguments parse to the same values; defaults and --devices stay out."""
    runner = CliRunner()
    argv = args
    first = runner.invoke(_probe, argv)
    assert first.exit_code == 0, first.output
    rebuilt = json.loads(first.output)
    assert "--devices" not in rebuilt
    assert "--steps" in rebuilt or "--steps" not in args

    def params(a: list[str]) -> dict[str, Any]:
        ctx = _probe.make_context("probe", list(a))
        return {k: v for k, v in ctx.params.items() if k != "devices"}

    assert params(rebuilt) == params(argv)


def _fake_world(monkeypatch: pytest.MonkeyPatch, me: int, ranks: list[Any]) -> None:
    """Pretend to be rank ``me`` of len(ranks) processes whose all-gather returns ``ranks``
    (with this rank's object put in its place)."""

    def gather(obj: Any) -> list[Any]:
        return [obj if r == me else x for r, x in enumerate(ranks)]

    monkeypatch.setattr(dist, "world_size", lambda: len(ranks))
    monkeypatch.setattr(dist, "rank", lambda: me)
    monkeypatch.setattr(dist, "all_gather_object", gather)


def test_all_reduce_state_sums_in_rank_order(monkeypatch: pytest.MonkeyPatch) -> None:
    v = [np.random.default_rng(r).normal(size=4) for r in range(3)]
    states = [{"v": v[0]}, {"v": v[1], "only": np.ones(2)}, {"v": v[2]}]
    totals = []
    for me in range(3):
        _fake_world(monkeypatch, me, states)
        totals.append(dist.all_reduce_state(states[me]))
    for t in totals:
        np.testing.assert_array_equal(t["v"], (v[0] + v[1]) + v[2])  # bit-identical
        np.testing.assert_array_equal(t["only"], [1.0, 1.0])


class _Acc:
    """A minimal streaming analysis with an example, as ``reduce_analyses`` sees one."""

    def __init__(self, values: np.ndarray, example: int | None) -> None:
        self.values = values.copy()
        self._example = None if example is None else {"index": example}

    def state(self) -> dict[str, np.ndarray]:
        return {"values": self.values.copy()}

    def merge(self, state: dict[str, np.ndarray]) -> None:
        self.values = self.values + state["values"]

    def merge_example(self, other: _Acc) -> None:
        ex = other._example
        if ex is not None and (self._example is None or ex["index"] < self._example["index"]):
            self._example = ex


def test_reduce_analyses_pools_states_and_examples(monkeypatch: pytest.MonkeyPatch) -> None:
    a0, a1 = _Acc(np.array([1.0, 2.0]), None), _Acc(np.array([10.0, 20.0]), 5)
    gathered = [
        ({"P2": {"g": a0.state()}}, {"P2": {"g": a0._example}}),
        ({"P2": {"g": a1.state()}}, {"P2": {"g": a1._example}}),
    ]
    _fake_world(monkeypatch, 0, gathered)
    dist.reduce_analyses({"P2": {"g": a0}})
    np.testing.assert_array_equal(a0.values, [11.0, 22.0])
    assert a0._example == {"index": 5}


# --------------------------------------------------------------------------- end to end


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "OMP_NUM_THREADS": "1"}


def _compare(a: Any, b: Any, path: str = "") -> list[str]:
    """Differences between two reports: ints and strings exactly, floats to 1e-6 relative."""
    if isinstance(a, dict) and isinstance(b, dict):
        if set(a) != set(b):
            return [f"{path}: keys {sorted(set(a) ^ set(b))}"]
        return [d for k in a if k != "seconds" for d in _compare(a[k], b[k], f"{path}.{k}")]
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{path}: lengths {len(a)} != {len(b)}"]
        return [d for i, (x, y) in enumerate(zip(a, b, strict=True))
                for d in _compare(x, y, f"{path}[{i}]")]  # fmt: skip
    if isinstance(a, float) or isinstance(b, float):
        ok = isinstance(a, int | float) and isinstance(b, int | float)
        if ok and (math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-12) or (a != a and b != b)):
            return []
        return [f"{path}: {a!r} != {b!r}"]
    return [] if a == b and type(a) is type(b) else [f"{path}: {a!r} != {b!r}"]


@pytest.mark.slow
def test_analyze_two_processes_equals_one(
    tiny_dataset: Path, trained_checkpoint: Callable[..., Path], tmp_path: Path
) -> None:
    """torchrun with 2 gloo processes: the same report as one process (counts exactly,
    means to 1e-6); only rank 0 prints and writes."""
    ckpt = trained_checkpoint(steps=20)
    args = ["analyze", str(ckpt), "--data", str(tiny_dataset), "--format", "json"]
    one = subprocess.run([sys.executable, "-m", "convdiag", *args], capture_output=True,
                         text=True, env=_env(), timeout=300)  # fmt: skip
    assert one.returncode == 0, one.stderr
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                "--master_port", str(_free_port()), "-m", "convdiag"]  # fmt: skip
    out = tmp_path / "rep"
    two = subprocess.run([*torchrun, *args, "--out", str(out)], capture_output=True, text=True,
                         env=_env(), timeout=300)  # fmt: skip
    assert two.returncode == 0, two.stderr
    rep1, rep2 = json.loads(one.stdout), json.loads(two.stdout)  # one JSON document: rank 0's
    assert rep2["images"] == rep1["images"] == 48
    p1 = rep1["analyses"]["P2"]["detections"]
    assert p1["targets"] == rep2["analyses"]["P2"]["detections"]["targets"] > 0
    assert _compare(rep1, {k: v for k, v in rep2.items() if k != "plots"}) == []
    written = json.loads((out / "report.json").read_text())
    assert _compare(written, rep2) == []


@pytest.mark.slow
def test_retrain_devices_two_writes_one_checkpoint(
    tiny_dataset: Path, trained_checkpoint: Callable[..., Path], tmp_path: Path
) -> None:
    """``retrain --devices 2`` relaunches itself through torchrun, finishes, and rank 0
    alone writes the checkpoint, history and report; the JSON is printed once."""
    from convdiag.load.checkpoint import load_checkpoint

    ckpt = trained_checkpoint(steps=20)
    out = tmp_path / "rt"
    res = subprocess.run(
        [sys.executable, "-m", "convdiag", "retrain", str(ckpt), "--data", str(tiny_dataset),
         "--soft", "--steps", "6", "--eval-every", "3", "--devices", "2", "--out", str(out),
         "--format", "json"],
        capture_output=True, text=True, env=_env(), timeout=300,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout)
    assert report["remedy"]["f1_at_0.5"] is not None
    assert sorted(p.name for p in out.iterdir()) == [
        "curves.png",
        "history.csv",
        "report.html",
        "report.json",
        "report.npz",
        "retrained.pt",
    ]
    loaded = load_checkpoint(out / "retrained.pt")
    assert loaded.meta["step"] == 6 and loaded.recipe["labels"] == "soft"
    assert [r["step"] for r in loaded.meta["history"]] == [3, 6]


@pytest.mark.slow
def test_devices_input_error_is_one_line_exit_2(tmp_path: Path) -> None:
    res = subprocess.run(
        [sys.executable, "-m", "convdiag", "analyze", str(tmp_path / "none.pt"), "--data",
         str(tmp_path / "nodata"), "--devices", "2"],
        capture_output=True, text=True, env=_env(), timeout=300,
    )  # fmt: skip
    assert res.returncode == 2, res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("convdiag: error: "), res.stderr
