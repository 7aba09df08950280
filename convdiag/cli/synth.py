"""``convdiag synth OUT``: write a synthetic dim-target dataset (images, masks, points, splits)."""

from __future__ import annotations

import re
from typing import Any

import click

from convdiag.cli.options import format_option, seed_option
from convdiag.errors import InputError
from convdiag.targets.geometry import parse_size

_RANGE = re.compile(
    r"\s*([0-9]*\.?[0-9]+(?:[eE][-+]?\d+)?)\s*(?:(?:-|:|\.\.)\s*([0-9]*\.?[0-9]+(?:[eE][-+]?\d+)?)\s*)?"
)


def parse_int_range(text: str, flag: str) -> tuple[int, int]:
    """``"1-5"`` -> (1, 5); ``"3"`` -> (3, 3). InputError naming ``flag`` otherwise."""
    m = re.fullmatch(r"\s*(\d+)\s*(?:(?:-|:|\.\.)\s*(\d+)\s*)?", text)
    if not m:
        raise InputError(f"{flag} {text!r}: use a count or a range LOW-HIGH, e.g. 1-5")
    lo = int(m.group(1))
    hi = int(m.group(2)) if m.group(2) is not None else lo
    if hi < lo:
        raise InputError(f"{flag} {text!r}: the range's high end is below its low end")
    return lo, hi


def parse_float_range(text: str, flag: str) -> tuple[float, float]:
    """``"0.7-1.2"`` -> (0.7, 1.2); ``"1.0"`` -> (1.0, 1.0). InputError naming ``flag``."""
    m = _RANGE.fullmatch(text)
    if not m:
        raise InputError(f"{flag} {text!r}: use a number or a range LOW-HIGH, e.g. 0.7-1.2")
    lo = float(m.group(1))
    hi = float(m.group(2)) if m.group(2) is not None else lo
    if hi < lo:
        raise InputError(f"{flag} {text!r}: the range's high end is below its low end")
    return lo, hi


def _rows(summary: dict[str, Any]) -> list[tuple[str, Any]]:
    cfg = summary["config"]
    splits = ", ".join(f"{k} {v}" for k, v in summary["splits"].items())
    return [
        ("written to", summary["out"]),
        ("images", summary["images"]),
        ("size (HxW)", f"{summary['size'][0]}x{summary['size'][1]}"),
        ("targets", summary["targets"]),
        ("targets per image", summary["targets_per_image"]),
        ("images without targets", summary["empty_images"]),
        ("PSF sigma (px)", f"{cfg['psf'][0]:g}-{cfg['psf'][1]:g}"),
        ("SNR (peak / noise std)", cfg["snr"]),
        ("clutter", cfg["clutter"]),
        ("seed", cfg["seed"]),
        ("splits", splits),
    ]


@click.command("synth")
@click.argument("out", type=click.Path(file_okay=False))
@click.option("--n", type=int, default=200, show_default=True, help="Number of images.")
@click.option("--size", default="480x640", show_default=True, help="Image size HEIGHTxWIDTH.")
@click.option(
    "--targets", default="1-5", show_default=True, help="Targets per image: a count or LOW-HIGH."
)
@click.option(
    "--psf", default="0.7-1.2", show_default=True, help="Gaussian PSF sigma in pixels (LOW-HIGH)."
)
@click.option(
    "--snr", type=float, default=3.0, show_default=True, help="Target peak / sensor-noise std."
)
@click.option(
    "--clutter", type=float, default=0.5, show_default=True, help="Background clutter strength."
)
@click.option(
    "--empty", type=float, default=0.0, show_default=True, help="Share of images without targets."
)
@seed_option()
@click.option("--force", is_flag=True, help="Replace a dataset already in OUT.")
@format_option()
def command(
    out: str,
    n: int,
    size: str,
    targets: str,
    psf: str,
    snr: float,
    clutter: float,
    empty: float,
    seed: int,
    force: bool,
    fmt: str,
) -> int:
    """Write a synthetic dim-target dataset to OUT.

    Smooth cluttered background, Gaussian-PSF targets of peak SNR x noise std, sensor
    noise: images/ (8-bit PNG), masks/ (0/255), points.csv (true sub-pixel centres),
    train/val/test/trainval.txt and synth.json. The same seed gives the same bytes.
    """
    from convdiag.load.synth import SynthConfig, synthesize
    from convdiag.report.console import emit, md_table, progress, table

    try:
        hw = parse_size(size)
    except InputError as e:
        raise InputError(f"--size {e}") from None
    config = SynthConfig(
        n=n,
        size=hw,
        targets=parse_int_range(targets, "--targets"),
        psf=parse_float_range(psf, "--psf"),
        snr=snr,
        clutter=clutter,
        seed=seed,
        empty_fraction=empty,
    )
    config.validate()
    with progress("synth", total=n, quiet=fmt == "json") as advance:
        summary = synthesize(out, config, force=force, advance=advance)
    rows = _rows(summary)
    emit(
        summary,
        fmt,
        lambda console: console.print(table("synthetic dataset", ["", "value"], rows)),
        lambda: "## Synthetic dataset\n\n" + md_table(["", "value"], rows),
    )
    return 0
