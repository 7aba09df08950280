"""Synthetic dataset generator and the ``convdiag synth`` command."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from convdiag.cli.main import cli
from convdiag.errors import InputError
from convdiag.load import synth
from convdiag.load.datasets import load_dataset, load_train_val
from convdiag.load.options import DatasetOptions
from convdiag.load.synth import SynthConfig, render_synthetic, synthesize

SMALL = SynthConfig(n=12, size=(48, 64), targets=(1, 4), seed=5)


def files_of(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_render_shapes_and_mask() -> None:
    cfg = SynthConfig(size=(60, 80), targets=(3, 5), psf=(0.6, 1.5))
    for seed in range(20):
        img, mask, pts = render_synthetic(np.random.default_rng(seed), cfg)
        assert img.dtype == np.float32 and img.shape == (60, 80)
        assert img.min() >= 0 and img.max() <= 1
        levels = img.astype(np.float64) * 255  # quantised to 8 bits, as written to disk
        assert np.abs(levels - np.rint(levels)).max() < 1e-4
        assert mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 255}
        assert 3 <= len(pts) <= 5
        x, y = pts[:, 0], pts[:, 1]
        assert (x >= 3).all() and (x <= 77).all() and (y >= 3).all() and (y <= 57).all()
        d = np.hypot(*(pts[:, None, :] - pts[None, :, :]).transpose(2, 0, 1))
        assert (d[~np.eye(len(pts), dtype=bool)] >= 8).all()
        # the pixel holding each centre is in the mask; one mask component per target
        assert (mask[y.astype(int), x.astype(int)] == 255).all()
        from convdiag.load.datasets import mask_to_points

        comp = mask_to_points(mask)
        assert len(comp) == len(pts)
        nearest = np.hypot(*(comp[:, None, :] - pts[None, :, :]).transpose(2, 0, 1)).min(axis=1)
        assert nearest.max() < 0.75


def test_render_empty_and_count() -> None:
    cfg = SynthConfig(size=(40, 40), empty_fraction=1.0)
    _, mask, pts = render_synthetic(np.random.default_rng(0), cfg)
    assert pts.shape == (0, 2) and mask.max() == 0
    _, _, pts = render_synthetic(np.random.default_rng(0), cfg, n_targets=2)
    assert len(pts) == 2


def test_target_amplitude_matches_snr() -> None:
    """Excess brightness in a 7x7 window = sum of the PSF peak*exp(-d^2/2s^2) there."""
    snr, sigma = 4.0, 1.0
    cfg = SynthConfig(size=(96, 96), targets=(4, 4), psf=(sigma, sigma), snr=snr, clutter=0.0)
    peak = snr * synth.NOISE_STD
    measured, expected = [], []
    for seed in range(60):
        img, _, pts = render_synthetic(np.random.default_rng(seed), cfg)
        img = img.astype(np.float64)
        rr, cc = np.mgrid[0:96, 0:96]
        for x, y in pts:
            r, c = int(y), int(x)
            if not (12 <= r < 84 and 12 <= c < 84):
                continue
            d2 = (cc + 0.5 - x) ** 2 + (rr + 0.5 - y) ** 2
            ring = (d2 > 4.5**2) & (d2 < 6.5**2)
            others = [(a, b) for a, b in pts if (a, b) != (x, y)]
            if any(np.hypot(a - x, b - y) < 15 for a, b in others):
                continue
            win = (slice(r - 3, r + 4), slice(c - 3, c + 4))
            measured.append(img[win].sum() - 49 * img[ring].mean())
            expected.append((peak * np.exp(-d2[win] / (2 * sigma**2))).sum())
    assert len(measured) > 60
    assert np.mean(measured) == pytest.approx(np.mean(expected), rel=0.1)


def test_noise_level() -> None:
    cfg = SynthConfig(size=(64, 64), targets=(0, 0), clutter=0.0)
    img, _, _ = render_synthetic(np.random.default_rng(1), cfg)
    # the background is a plane; its second difference leaves the noise: std * sqrt(6)
    d = img[:, 2:].astype(np.float64) - 2 * img[:, 1:-1] + img[:, :-2]
    assert d.std() / np.sqrt(6) == pytest.approx(synth.NOISE_STD, rel=0.1)


def test_clutter_scales_background() -> None:
    def spread(clutter: float) -> float:
        cfg = SynthConfig(size=(64, 64), targets=(0, 0), clutter=clutter)
        return float(
            np.mean([render_synthetic(np.random.default_rng(s), cfg)[0].std() for s in range(8)])
        )

    assert spread(0.0) < spread(0.5) < spread(1.5)


def test_synthesize_layout_and_loaders(tmp_path: Path) -> None:
    cfg = SynthConfig(n=12, size=(48, 64), targets=(1, 4), seed=5, empty_fraction=0.25)
    summary = synthesize(tmp_path / "ds", cfg)
    root = tmp_path / "ds"
    assert summary["images"] == 12 and summary["empty_images"] == 3
    meta = json.loads((root / "synth.json").read_text())
    assert meta["counts"]["targets"] == summary["targets"]
    assert meta["config"]["size"] == [48, 64]
    for sub in ("images", "masks"):
        names = sorted(p.name for p in (root / sub).iterdir())
        assert names == [f"{i:06d}.png" for i in range(12)]
    assert Image.open(root / "images" / "000000.png").mode == "L"
    masks = load_dataset(root)
    points = load_dataset(root / "points.csv")
    assert masks.format == "masks" and points.format == "points"
    assert len(masks) == len(points) == 12
    assert masks.num_targets == points.num_targets == summary["targets"]
    for m, p in zip(masks.records, points.records, strict=True):
        assert m.id == p.id and len(m.points) == len(p.points)
        if len(p.points):
            d = np.hypot(*(m.points[:, None] - p.points[None]).transpose(2, 0, 1)).min(axis=1)
            assert d.max() < 0.75
        np.testing.assert_array_equal(masks[0].image, points[0].image)
    sizes = {k: len((root / f"{k}.txt").read_text().split()) for k in ("train", "val", "test")}
    assert (
        sizes
        == {"train": 8, "val": 2, "test": 2}
        == {k: summary["splits"][k] for k in ("train", "val", "test")}
    )
    ids = [set((root / f"{k}.txt").read_text().split()) for k in ("train", "val", "test")]
    assert not (ids[0] & ids[1]) and not (ids[0] & ids[2]) and not (ids[1] & ids[2])
    assert set((root / "trainval.txt").read_text().split()) == ids[0] | ids[1]
    train, val = load_train_val(root, None)
    assert {r.id for r in train.records} == ids[0] and {r.id for r in val.records} == ids[1]
    tv = load_dataset(root, DatasetOptions(split="trainval"))
    assert len(tv) == 10


def test_points_csv_holds_true_centres(tmp_path: Path) -> None:
    cfg = SynthConfig(n=3, size=(40, 50), seed=9)
    synthesize(tmp_path, cfg)
    ds = load_dataset(tmp_path / "points.csv")
    for i, rec in enumerate(ds.records):
        rng = np.random.default_rng(np.random.SeedSequence(9, spawn_key=(0, i)))
        k = int(rng.integers(1, 6))
        img, _, pts = render_synthetic(rng, cfg, n_targets=k)
        np.testing.assert_array_equal(rec.points, pts)
        np.testing.assert_array_equal(ds[i].image, img)


def test_same_seed_same_bytes(tmp_path: Path) -> None:
    synthesize(tmp_path / "a", SMALL)
    synthesize(tmp_path / "b", SMALL)
    a, b = files_of(tmp_path / "a"), files_of(tmp_path / "b")
    assert a.keys() == b.keys() and a == b
    synthesize(tmp_path / "c", SynthConfig(n=12, size=(48, 64), targets=(1, 4), seed=6))
    c = files_of(tmp_path / "c")
    assert a["images/000000.png"] != c["images/000000.png"]
    # image i does not depend on how many images are drawn
    synthesize(tmp_path / "d", SynthConfig(n=3, size=(48, 64), targets=(1, 4), seed=5))
    assert files_of(tmp_path / "d")["images/000002.png"] == a["images/000002.png"]


def test_existing_dataset_and_force(tmp_path: Path) -> None:
    synthesize(tmp_path, SMALL)
    with pytest.raises(InputError, match="already holds a dataset"):
        synthesize(tmp_path, SMALL)
    small = SynthConfig(n=4, size=(48, 64), seed=5, splits=(1.0, 0.0, 0.0))
    synthesize(tmp_path, small, force=True)
    assert len(list((tmp_path / "images").iterdir())) == 4
    assert not (tmp_path / "val.txt").exists() and (tmp_path / "train.txt").exists()
    assert len(load_dataset(tmp_path)) == 4
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="not a folder"):
        synthesize(tmp_path / "file", SMALL)


@pytest.mark.parametrize(
    ("field", "value", "flag"),
    [
        ("n", 0, "--n"),
        ("size", (4, 64), "--size"),
        ("targets", (3, 1), "--targets"),
        ("psf", (0.0, 1.0), "--psf"),
        ("snr", -1.0, "--snr"),
        ("clutter", -0.5, "--clutter"),
        ("seed", -1, "--seed"),
        ("empty_fraction", 1.5, "--empty"),
    ],
)
def test_config_validation(field: str, value: object, flag: str) -> None:
    cfg = SynthConfig(**{field: value})  # type: ignore[arg-type]
    with pytest.raises(InputError, match=flag):
        cfg.validate()


@pytest.mark.parametrize(("n", "expected"), [(1, [1, 0, 0]), (3, [1, 1, 1]), (20, [14, 3, 3])])
def test_split_counts(n: int, expected: list[int]) -> None:
    assert synth._split_counts(n, (0.7, 0.15, 0.15)) == expected


# ----------------------------------------------------------------------------- CLI


def test_cli_table_and_json(tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "s"
    args = ["synth", str(out), "--n", "4", "--size", "32x48", "--targets", "2", "--seed", "1"]
    res = runner.invoke(cli, args)
    assert res.exit_code == 0, res.output
    assert "images" in res.stdout and str(out) in res.stdout
    res = runner.invoke(cli, [*args, "--force", "--format", "json", "--psf", "1.0-1.0"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["images"] == 4 and data["targets"] == 8 and data["size"] == [32, 48]
    assert data["config"]["psf"] == [1.0, 1.0]
    res = runner.invoke(cli, [*args, "--force", "--format", "markdown", "--empty", "0.5"])
    assert res.exit_code == 0 and "| images without targets | 2 |" in res.stdout


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--size", "0x5"], "--size"),
        (["--size", "big"], "--size"),
        (["--targets", "a-b"], "--targets"),
        (["--targets", "5-1"], "--targets"),
        (["--psf", "2-1"], "--psf"),
        (["--psf", "x"], "--psf"),
        (["--snr", "-1"], "--snr"),
        (["--empty", "2"], "--empty"),
        (["--n", "0"], "--n"),
        (["--n", "many"], "--n"),
    ],
)
def test_cli_bad_values(tmp_path: Path, extra: list[str], needle: str) -> None:
    res = CliRunner().invoke(cli, ["synth", str(tmp_path / "s"), "--size", "32x32", *extra])
    assert res.exit_code == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("convdiag: error:") and needle in lines[0]
    assert not (tmp_path / "s" / "images").exists()


def test_cli_refuses_existing(tmp_path: Path) -> None:
    synthesize(tmp_path, SynthConfig(n=2, size=(32, 32)))
    res = CliRunner().invoke(cli, ["synth", str(tmp_path), "--n", "2", "--size", "32x32"])
    assert res.exit_code == 2 and "--force" in res.stderr
