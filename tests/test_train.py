"""The training loop: gradients against a hand-written loss, schedules, checkpoints, resume."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from convdiag.cli.main import cli
from convdiag.load.checkpoint import load_checkpoint
from convdiag.load.datasets import load_dataset, load_train_val
from convdiag.load.recipe import Recipe
from convdiag.load.runner import ModelRunner
from convdiag.load.synth import SynthConfig, synthesize
from convdiag.models.detector import reference
from convdiag.targets.geometry import offset_targets, point_to_cell
from convdiag.targets.supervision import label_params
from convdiag.training.batches import ImageCache, draw_batch
from convdiag.training.loop import (
    CheckpointTarget,
    TrainingInterrupted,
    train,
    training_loss,
)
from convdiag.training.workflow import REFERENCE


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny synthetic set: 24 images of 64x96, bright enough to learn in a few steps."""
    out = tmp_path_factory.mktemp("tiny") / "data"
    synthesize(out, SynthConfig(n=24, size=(64, 96), targets=(1, 3), snr=10, clutter=0.2, seed=3))
    return out


def _hand_loss(model: torch.nn.Module, images: torch.Tensor, pts: list[np.ndarray]) -> torch.Tensor:
    """BCE over every cell + offset L1 at target cells, written out by hand (float64)."""
    out = model(images)["P2"]
    z, reg = out["cls"].double(), out["reg"].double()
    y = torch.zeros_like(z)
    off = torch.zeros_like(reg)
    mask = torch.zeros_like(z)
    for k, p in enumerate(pts):
        for (i, j), (dx, dy) in zip(point_to_cell(p, 4), offset_targets(p, 4), strict=True):
            y[k, 0, i, j] = 1.0
            off[k, :, i, j] = torch.tensor([dx, dy], dtype=torch.float64)
            mask[k, 0, i, j] = 1.0
    prob = torch.sigmoid(z)
    bce = -(y * torch.log(prob) + (1 - y) * torch.log(1 - prob)).mean()
    l1 = ((reg - off).abs() * mask).sum() / (2 * mask.sum())
    return bce + l1


def test_training_gradient_matches_hand_written_loss(tiny: Path) -> None:
    ds = load_dataset(tiny)
    recipe = Recipe(head="P2", labels="hard", loss="bce", batch=4, seed=1)
    torch.manual_seed(0)
    model = reference(head="P2", width=8, prior=0.01)
    model.eval()  # BatchNorm in eval: both passes see the same normalisation
    twin = copy.deepcopy(model)
    batch = draw_batch(ds, ImageCache(ds), recipe, 0, 32, None, np.arange(len(ds)))
    assert sum(len(p) for p in batch.points) > 0
    loss, _, _ = training_loss(ModelRunner(model), batch, recipe, 0.0)
    loss.backward()
    ref = _hand_loss(twin, batch.images, batch.points)
    ref.backward()
    assert float(loss.detach()) == pytest.approx(float(ref.detach()), rel=1e-5)
    for (name, p), q in zip(model.named_parameters(), twin.parameters(), strict=True):
        assert p.grad is not None and q.grad is not None
        assert torch.allclose(p.grad, q.grad.float(), rtol=1e-3, atol=1e-6), name


def test_schedule_phases_follow_progress() -> None:
    r = Recipe(schedule="dynamic")
    assert label_params(r, 0.0) == (5, 1.2)
    assert label_params(r, 0.29) == (5, 1.2)
    assert label_params(r, 0.3) == (4, 1.0)
    assert label_params(r, 0.69) == (4, 1.0)
    assert label_params(r, 0.7) == (3, 0.8)
    assert label_params(r, 1.0) == (3, 0.8)
    assert label_params(Recipe(labels="hard"), 0.5) == (None, None)
    assert label_params(Recipe(labels="soft", kernel=5, sigma=1.1), 0.5) == (5, 1.1)


def test_batches_are_seeded_by_step(tiny: Path) -> None:
    ds = load_dataset(tiny)
    r = Recipe(batch=4, seed=7, crop=(32, 32), oversample=1.0)
    with_t = np.array([i for i, rec in enumerate(ds.records) if len(rec.points)])
    a = draw_batch(ds, ImageCache(ds), r, 5, 32, r.crop, with_t)
    b = draw_batch(ds, ImageCache(ds), r, 5, 32, r.crop, with_t)
    c = draw_batch(ds, ImageCache(ds), r, 6, 32, r.crop, with_t)
    assert torch.equal(a.images, b.images) and a.indices == b.indices
    assert not torch.equal(a.images, c.images)
    # oversample 1.0: every crop is centred near a target, so every crop holds one
    assert all(len(p) > 0 for p in a.points)
    assert a.images.shape[-2:] == (32, 32)


def test_copy_paste_adds_targets_where_it_pastes(tiny: Path) -> None:
    ds = load_dataset(tiny)
    r = Recipe(batch=4, seed=2, copy_paste=2)
    with_t = np.array([i for i, rec in enumerate(ds.records) if len(rec.points)])
    plain = draw_batch(ds, ImageCache(ds), Recipe(batch=4, seed=2), 0, 32, None, with_t)
    pasted = draw_batch(ds, ImageCache(ds), r, 0, 32, None, with_t)
    added = sum(len(p) for p in pasted.points) - sum(len(p) for p in plain.points)
    assert 1 <= added <= 8
    for k in range(4):
        for x, y in pasted.points[k][len(plain.points[k]) :]:
            # the pasted target is brighter than the original image there
            assert pasted.images[k, 0, int(y), int(x)] > plain.images[k, 0, int(y), int(x)]


def _train(tiny: Path, out: Path, steps: int, stop_at: int | None = None) -> torch.nn.Module:
    tr, va = load_train_val(tiny, None, seed=0)
    recipe = Recipe(head="P2", labels="soft", loss="focal", batch=4, seed=0)
    torch.manual_seed(0)
    model = reference(head="P2", width=8, prior=0.01)
    target = CheckpointTarget(out / "checkpoint.pt", REFERENCE, dict(model.config))

    def hook(step: int, info: dict[str, object]) -> None:
        if stop_at is not None and step == stop_at:
            raise KeyboardInterrupt

    train(ModelRunner(model), tr, va, recipe, steps, eval_every=4, target=target, on_step=hook)
    return model


def test_interrupt_leaves_loadable_checkpoint_and_resume_matches(
    tiny: Path, tmp_path: Path
) -> None:
    full = _train(tiny, tmp_path / "full", 8)
    with pytest.raises(TrainingInterrupted) as exc:
        _train(tiny, tmp_path / "cut", 8, stop_at=5)
    assert exc.value.step == 5
    raw = torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=True)
    assert raw["meta"]["interrupted"] is True and raw["meta"]["step"] == 5
    assert (tmp_path / "cut" / "history.csv").exists()
    loaded = load_checkpoint(tmp_path / "cut" / "checkpoint.pt")
    tr, va = load_train_val(tiny, None, seed=0)
    resumed = loaded.model
    resumed.train()
    recipe = Recipe.from_dict(loaded.recipe or {})
    train(
        ModelRunner(resumed),
        tr,
        va,
        recipe,
        8,
        eval_every=4,
        resume={"step": 5, "history": loaded.meta["history"], "optimizer": loaded.optimizer_state},
    )
    for (name, a), b in zip(full.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.allclose(a.float(), b.float(), atol=1e-5), name


def test_checkpoint_loads_with_weights_only_and_carries_recipe(tiny: Path, tmp_path: Path) -> None:
    _train(tiny, tmp_path, 4)
    raw = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert raw["model"]["factory"] == REFERENCE
    assert raw["recipe"]["labels"] == "soft" and raw["recipe"]["loss"] == "focal"
    assert raw["meta"]["interrupted"] is False and raw["meta"]["step"] == 4


@pytest.mark.slow
def test_cli_train_then_retrain_end_to_end(tiny: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    res = runner.invoke(
        cli,
        ["train", str(tiny), "--head", "P2", "--labels", "hard", "--loss", "bce", "--steps", "12",
         "--batch", "4", "--width", "8", "--out", str(tmp_path / "run"), "--format", "json"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    for name in ("checkpoint.pt", "history.csv", "curves.png"):
        assert (tmp_path / "run" / name).stat().st_size > 0
    res = runner.invoke(
        cli,
        ["retrain", str(tmp_path / "run" / "checkpoint.pt"), "--data", str(tiny), "--soft",
         "--focal", "--compare", "--steps", "8", "--out", str(tmp_path / "fix"), "--format",
         "json"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    report = json.loads((tmp_path / "fix" / "report.json").read_text())
    assert set(report) >= {"before", "baseline", "remedy"}
    keys = {"f1_at_0.5", "best_f1", "best_threshold", "precision", "recall", "fp_per_image",
            "loc_error_px", "cls_loss", "constant_loss"}  # fmt: skip
    for run in ("before", "baseline", "remedy"):
        assert set(report[run]) == keys
    assert report["recipes"]["remedy"]["loss"] == "focal"
    assert report["recipes"]["baseline"]["loss"] == "bce"
    for name in ("retrained.pt", "history.csv", "curves.png"):
        assert (tmp_path / "fix" / name).stat().st_size > 0
    hist = (tmp_path / "fix" / "history.csv").read_text().splitlines()
    assert hist[0].startswith("run,step")
    assert {line.split(",")[0] for line in hist[1:]} == {"baseline", "remedy"}
    assert json.loads(res.output)["remedy"].keys() == keys


def test_cli_retrain_rejects_unknown_remedy(tiny: Path, tmp_path: Path) -> None:
    _train(tiny, tmp_path, 2)
    res = CliRunner().invoke(
        cli, ["retrain", str(tmp_path / "checkpoint.pt"), "--data", str(tiny), "--remedy", "magic"]
    )
    assert res.exit_code == 2
    assert "unknown remedy" in res.output and "Traceback" not in res.output


@pytest.mark.slow
def test_user_model_trains_and_retrains_through_an_adapter(
    tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(Path(__file__).parent / "fixtures"))
    runner = CliRunner()
    res = runner.invoke(
        cli,
        ["train", str(tiny), "--model", "user_models:tiny", "--model-arg", "width=4",
         "--adapter", "user_models:adapter", "--steps", "6", "--batch", "4",
         "--out", str(tmp_path / "run"), "--format", "json"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    raw = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert raw["model"] == {"factory": "user_models:tiny", "args": {"width": 4}}
    assert raw["meta"]["adapter"] == "user_models:adapter"
    # the checkpoint names a factory outside convdiag: it is not imported unless the user
    # names it (or trusts the file); the stored arguments and adapter then apply
    ckpt = str(tmp_path / "run" / "checkpoint.pt")
    res = runner.invoke(cli, ["retrain", ckpt, "--data", str(tiny), "--focal", "--steps", "4"])
    assert res.exit_code == 2 and "refusing to import code named by the file" in res.output
    res = runner.invoke(
        cli,
        ["retrain", ckpt, "--data", str(tiny), "--focal", "--model", "user_models:tiny",
         "--adapter", "user_models:adapter", "--steps", "4", "--out", str(tmp_path / "fix"),
         "--format", "json"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    report = json.loads(res.output)
    assert report["recipes"]["remedy"]["loss"] == "focal"
    # an architecture remedy is refused for a user model, with one line
    res = runner.invoke(
        cli,
        ["retrain", ckpt, "--data", str(tiny), "--model", "user_models:tiny",
         "--adapter", "user_models:adapter", "--remedy", "fused-head", "--steps", "2"],
    )  # fmt: skip
    assert res.exit_code == 2 and "reference detector only" in res.output
