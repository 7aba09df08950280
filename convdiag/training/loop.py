"""The short training loop behind ``train``, ``retrain`` and ``demo``.

AdamW with a short warm-up and cosine decay, seeded and deterministic on CPU. Each step
draws its batch from a generator seeded with (seed, step), so a resumed run sees exactly
the batches an uninterrupted run would.
Labels are rendered per batch at the step's progress (fixed window or schedule); crops are
drawn anywhere unless ``oversample`` centres a share of them near a target; ``copy_paste``
pastes target patches from other images. Validation runs every ``eval_every`` steps and the
checkpoint is written atomically then; Ctrl-C or SIGTERM stops at the next step boundary,
saves a checkpoint marked interrupted and raises ``TrainingInterrupted``.
"""

from __future__ import annotations

import dataclasses
import math
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from convdiag import __version__
from convdiag.load.batching import Batch
from convdiag.load.files import atomic_write_text, csv_text
from convdiag.load.recipe import Recipe
from convdiag.load.runner import ModelRunner
from convdiag.load.sample import PointDataset
from convdiag.targets import losses
from convdiag.targets.supervision import batch_labels, label_params
from convdiag.training import distributed as dist
from convdiag.training.batches import ImageCache, draw_batch, effective_crop
from convdiag.training.evaluate import SUMMARY_KEYS, evaluate

HISTORY_COLUMNS = (
    "run",
    "step",
    "progress",
    "train_loss",
    "train_cls_loss",
    "train_reg_loss",
    "kernel",
    "sigma",
    "cls_weight",
    *SUMMARY_KEYS,
    "reg_loss",
    "seconds",
)


class TrainingInterrupted(KeyboardInterrupt):
    """Training stopped by SIGINT/SIGTERM after saving a checkpoint marked interrupted."""

    def __init__(self, checkpoint: Path | None, step: int) -> None:
        super().__init__(f"interrupted at step {step}")
        self.checkpoint = checkpoint
        self.step = step


@dataclass
class TrainResult:
    """What a training run produced: the history rows, the last evaluation, the step reached."""

    history: list[dict[str, Any]]
    final: dict[str, Any]
    step: int
    checkpoint: Path | None = None
    seconds: float = 0.0


@dataclass
class CheckpointTarget:
    """Where and how to save: path, factory string and arguments (self-describing checkpoint)."""

    path: Path
    factory: str
    factory_args: dict[str, Any] = field(default_factory=dict)
    adapter: str | None = None
    outputs: str = "logits"


def training_loss(
    runner: ModelRunner, batch: Batch, recipe: Recipe, progress: float
) -> tuple[torch.Tensor, float, float]:
    """Total loss of one batch summed over the model's output levels, and its cls/reg parts.

    total = sum over levels of [classification_loss (with OHEM / ramp weight per recipe)
    + reg_weight * offset L1 at target cells].
    """
    outs = runner(batch.images)
    total = torch.zeros((), device=batch.images.device)
    cls_sum, reg_sum = 0.0, 0.0
    for level, out in outs.items():
        lab = batch_labels(recipe, batch, out, level, progress)
        cls = losses.classification_loss(recipe, out.cls, lab.heatmap, lab.valid, progress)
        total = total + cls
        cls_sum += float(cls.detach())
        if out.reg is not None:
            reg = losses.offset_l1_loss(out.reg, lab.offset, lab.offset_mask)
            total = total + recipe.reg_weight * reg
            reg_sum += float(reg.detach())
    return total, cls_sum, reg_sum


@contextmanager
def _deferred_interrupts() -> Iterator[Callable[[], bool]]:
    """SIGINT and SIGTERM while training ask the loop to stop at the next step boundary.

    Yields ``stop_requested()``. A step (forward, backward, optimizer update, step count)
    is never cut in half, so the checkpoint saved on the way out holds whole steps and
    ``--resume`` repeats exactly what an uninterrupted run does. A second signal raises
    KeyboardInterrupt at once (the loop then saves only if no update was under way).
    """
    received: list[int] = []

    def handler(signum: int, frame: Any) -> None:
        received.append(signum)
        if len(received) > 1:
            raise KeyboardInterrupt

    sigs = (signal.SIGINT, signal.SIGTERM)
    try:
        old = {s: signal.getsignal(s) for s in sigs}
        for s in sigs:
            signal.signal(s, handler)
    except ValueError:  # not the main thread: signals stay with whoever handles them
        yield lambda: False
        return
    try:
        yield lambda: bool(received)
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def _any_rank(flag: bool, device: torch.device) -> bool:
    """True when ``flag`` is set on any process (one process: ``flag``), so that every rank
    of a torchrun job stops at the same step."""
    if dist.world_size() <= 1:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
    return bool(t.item() > 0)


def train(
    runner: ModelRunner,
    train_ds: PointDataset,
    val_ds: PointDataset | None,
    recipe: Recipe,
    steps: int,
    eval_every: int = 0,
    target: CheckpointTarget | None = None,
    run_name: str = "train",
    resume: dict[str, Any] | None = None,
    on_step: Callable[[int, dict[str, Any]], None] | None = None,
    stop_at: int | None = None,
    should_stop: Callable[[], bool] | None = None,
    cache: ImageCache | None = None,
) -> TrainResult:
    """Train ``runner.model`` for ``steps`` steps with ``recipe`` and return its history.

    ``stop_at`` (a rung of a race) ends the run at that step, still scheduled as a run of
    ``steps`` (progress, learning rate); ``should_stop()`` (a time budget), checked at every
    step boundary, ends it early and cleanly. Either way the run ends with a validation, a
    history row and a checkpoint at the step reached.

    Progress = step / steps drives the label schedule and the loss ramp. ``eval_every``
    (0: about ten evaluations) sets how often the validation set is evaluated, a history row
    written and the checkpoint saved. ``resume`` = {"step", "history", "optimizer"} continues
    a run. ``on_step(step, info)`` is called after each step (progress bars). ``cache``:
    an ImageCache of ``train_ds`` to reuse (a race trains many arms on the same images).

    Under torch.distributed (world > 1) the model trains wrapped in DistributedDataParallel,
    each rank on its own share of every batch; only rank 0 evaluates and saves (other ranks
    return an empty ``final`` and no checkpoint).
    """
    if len(train_ds) == 0:
        from convdiag.errors import InputError

        raise InputError("the training set is empty")
    rank, world = dist.rank(), dist.world_size()
    if rank != 0:
        target, val_ds = None, None
    model = runner.model
    model.train()
    train_runner = dataclasses.replace(runner, model=dist.wrap_ddp(model, runner.device))
    if target is not None:
        target.path.parent.mkdir(parents=True, exist_ok=True)
    opt = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=1e-4)
    step, history = 0, []
    if resume:
        step = int(resume.get("step", 0))
        history = list(resume.get("history") or [])
        if resume.get("optimizer"):
            opt.load_state_dict(resume["optimizer"])
    eval_every = eval_every or max(1, steps // 10)
    if cache is None or cache.ds is not train_ds:
        cache = ImageCache(train_ds)
        cache.preload()
    crop = effective_crop(recipe, train_ds)
    with_targets = np.array([i for i, r in enumerate(train_ds.records) if len(r.points)], dtype=int)
    recipe.steps = steps
    t0 = time.perf_counter()
    window: list[tuple[float, float, float]] = []
    final: dict[str, Any] = {}

    def checkpoint(interrupted: bool) -> Path | None:
        if target is None:
            return None
        from convdiag.load.checkpoint import save_checkpoint

        save_checkpoint(
            target.path,
            model,
            target.factory,
            target.factory_args,
            recipe.to_dict(),
            meta={
                "step": step,
                "steps": steps,
                "interrupted": interrupted,
                "convdiag_version": __version__,
                "history": history,
                "run": run_name,
                "adapter": target.adapter,
                "outputs": target.outputs,
            },
            optimizer_state=opt.state_dict(),
        )
        return target.path

    def evaluate_now() -> dict[str, Any]:
        kernel, sigma = label_params(recipe, step / steps)
        mean = np.mean(window, axis=0) if window else [float("nan")] * 3
        row: dict[str, Any] = {
            "run": run_name,
            "step": step,
            "progress": step / steps,
            "train_loss": float(mean[0]),
            "train_cls_loss": float(mean[1]),
            "train_reg_loss": float(mean[2]),
            "kernel": kernel,
            "sigma": sigma,
            "cls_weight": _ramp(recipe, step / steps),
        }
        ev = evaluate(runner, val_ds, recipe, batch_size=recipe.batch) if val_ds else {}
        row.update({k: ev.get(k) for k in HISTORY_COLUMNS if k in ev})
        row["seconds"] = time.perf_counter() - t0
        history.append(row)
        window.clear()
        return ev

    end = steps if stop_at is None else min(stop_at, steps)
    updating = False  # between the optimizer update and the step count: a torn state
    try:
        with _deferred_interrupts() as stop_requested:
            while step < end:
                if _any_rank(stop_requested(), runner.device):
                    raise KeyboardInterrupt
                if should_stop is not None and _any_rank(should_stop(), runner.device):
                    break
                batch = draw_batch(
                    train_ds, cache, recipe, step, runner.pad_to, crop, with_targets, rank, world
                )
                loss, cls_l, reg_l = training_loss(train_runner, batch, recipe, step / steps)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                for group in opt.param_groups:
                    group["lr"] = learning_rate(recipe.lr, step, steps)
                updating = True
                opt.step()
                step += 1
                updating = False
                window.append((float(loss.detach()), cls_l, reg_l))
                info: dict[str, Any] = {"loss": window[-1][0]}
                if step % eval_every == 0 or step == end:
                    final = evaluate_now()
                    info.update(final)
                    checkpoint(False)
                if on_step:
                    on_step(step, info)
    except KeyboardInterrupt:
        if updating:  # a second signal tore a step: the last saved checkpoint stays
            raise TrainingInterrupted(None, step) from None
        path = checkpoint(True)
        write_history(target.path.parent / "history.csv", history) if target else None
        raise TrainingInterrupted(path, step) from None
    if val_ds is not None and (not history or history[-1]["step"] != step):
        final = evaluate_now()
        checkpoint(False)
    elif not final and val_ds is not None:
        final = evaluate(runner, val_ds, recipe, batch_size=recipe.batch)
        checkpoint(False)
    dist.barrier()
    return TrainResult(
        history, final, step, target.path if target else None, time.perf_counter() - t0
    )


def learning_rate(base: float, step: int, steps: int) -> float:
    """Linear warm-up over the first 5% of steps (at most 50), then cosine decay to 5% of base.

    lr(t) = base * (t + 1) / w for t < w, else base * (0.05 + 0.95 * 0.5 * (1 + cos(pi * u)))
    with u = (t - w) / (steps - w).
    """
    warm = min(50, max(1, steps // 20))
    if step < warm:
        return base * (step + 1) / warm
    u = (step - warm) / max(1, steps - warm)
    return base * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * u)))


def _ramp(recipe: Recipe, progress: float) -> float:
    if not recipe.loss_ramp:
        return 1.0
    return losses.loss_ramp_weight(progress, **recipe.loss_ramp)


def history_csv(rows: list[dict[str, Any]]) -> str:
    """History rows as CSV text with the HISTORY_COLUMNS header."""
    return csv_text(rows, HISTORY_COLUMNS)


def write_history(path: Path, rows: list[dict[str, Any]]) -> None:
    """Write history rows to ``path`` atomically."""
    atomic_write_text(path, history_csv(rows))
