"""Shared click option groups (DESIGN.md "Command surface"), one definition each.

Each decorator adds its options and folds their values into one keyword argument of the
command: ``dataset_options`` -> ``dataset: DatasetOptions``, ``model_options`` ->
``model_opts: ModelOptions``, ``recipe_options`` -> ``recipe_opts: RecipeOptions``,
``run_options`` -> ``run: RunOptions`` (the dataclasses live in ``convdiag.load.options``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import click

from convdiag.load.options import (
    MAX_PAD_TO,
    MAX_SEED,
    DatasetOptions,
    ModelOptions,
    RecipeOptions,
    RunOptions,
)
from convdiag.load.recipe import MAX_KERNEL

F = TypeVar("F", bound=Callable[..., Any])


def _fold(
    options: list[Callable[[Any], Any]], names: list[str], key: str, build: Callable[..., Any]
) -> Callable[[F], F]:
    def decorator(f: F) -> F:
        @functools.wraps(f)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            values = {n: kwargs.pop(n) for n in names}
            kwargs[key] = build(**values)
            return f(*args, **kwargs)

        for opt in reversed(options):
            wrapper = opt(wrapper)
        return wrapper  # type: ignore[return-value]

    return decorator


def dataset_options(with_val: bool = False) -> Callable[[F], F]:
    """Dataset options: --data-format, --split, [--val-split], --on-mismatch, --coords,
    --images, and --max-pixels (``max_pixels_option``)."""
    opts = [
        click.option(
            "--data-format",
            type=click.Choice(["auto", "masks", "points", "coco"]),
            default="auto",
            show_default=True,
            help="Dataset layout; auto detects images/+masks/, a points CSV or COCO JSON.",
        ),
        click.option(
            "--split",
            default=None,
            help="Split file listing image ids (a name inside the dataset or a path).",
        ),
    ]
    names = ["data_format", "split"]
    if with_val:
        opts.append(
            click.option(
                "--val-split",
                default=None,
                help="Split file for validation (default: the dataset's val/test split, "
                "else a seeded 20% hold-out).",
            )
        )
        names.append("val_split")
    opts += [
        click.option(
            "--on-mismatch",
            type=click.Choice(["error", "skip"]),
            default="error",
            show_default=True,
            help="A mask whose size differs from its image: stop, or skip it and report.",
        ),
        click.option(
            "--coords",
            type=click.Choice(["continuous", "index0", "index1"]),
            default="continuous",
            show_default=True,
            help="Point convention of a points table: continuous pixel coordinates, or "
            "0-/1-based pixel indices (converted to pixel centres).",
        ),
        click.option(
            "--images",
            type=click.Path(),
            default=None,
            help="Folder of the images named in a points table or COCO file.",
        ),
    ]
    names += ["on_mismatch", "coords", "images"]

    def build(**v: Any) -> DatasetOptions:
        return DatasetOptions(**v)

    def decorator(f: F) -> F:
        return max_pixels_option(_fold(opts, names, "dataset", build)(f))

    return decorator


def max_pixels_option(f: F) -> F:
    """--max-pixels N: images with more pixels are refused from their header, before
    decoding (default convdiag.load.imageio.MAX_PIXELS); applied while the command runs."""
    from convdiag.load.imageio import MAX_PIXELS, pixel_limit

    @functools.wraps(f)
    def wrapper(*args: Any, max_pixels: int, **kwargs: Any) -> Any:
        with pixel_limit(max_pixels):
            return f(*args, **kwargs)

    option = click.option(
        "--max-pixels",
        type=click.IntRange(min=1),
        default=MAX_PIXELS,
        show_default=True,
        help="Refuse images with more pixels than this, before decoding them.",
    )
    return option(wrapper)  # type: ignore[return-value]


def _parse_model_args(values: tuple[str, ...]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in values:
        if "=" not in item:
            raise click.BadParameter(f"{item!r} is not key=value", param_hint="--model-arg")
        k, v = item.split("=", 1)
        out[k.strip()] = v.strip()
    return out


def tensorboard_option(f: F) -> F:
    """--tensorboard LOGDIR: the report also goes into the user's TensorBoard run."""
    return click.option(
        "--tensorboard",
        "tensorboard",
        type=click.Path(file_okay=False),
        default=None,
        help="Also write the report into this TensorBoard run folder (your run's logdir), at "
        "the step the checkpoint was trained to. Needs the tensorboard package.",
    )(f)


def model_options(f: F) -> F:
    """Model options: --model, --model-arg, --adapter, --outputs, --pad-to, --trust-checkpoint."""
    opts = [
        click.option(
            "--model",
            default=None,
            help="Model factory pkg.module:function (not needed for convdiag checkpoints).",
        ),
        click.option(
            "--model-arg",
            "model_args",
            multiple=True,
            help="key=value argument for the model factory (repeatable).",
        ),
        click.option(
            "--adapter",
            default=None,
            help="pkg.module:function mapping the model's raw output to a DESIGN.md form.",
        ),
        click.option(
            "--outputs",
            type=click.Choice(["logits", "probs"]),
            default="logits",
            show_default=True,
            help="Whether the classification output is logits or probabilities.",
        ),
        click.option(
            "--pad-to",
            type=click.IntRange(1, MAX_PAD_TO),
            default=32,
            show_default=True,
            help="Zero-pad images at the bottom/right to a multiple of this.",
        ),
        click.option(
            "--trust-checkpoint",
            is_flag=True,
            help="Allow pickled checkpoints that import code (never needed for convdiag's own).",
        ),
    ]

    def build(**v: Any) -> ModelOptions:
        v["model_args"] = _parse_model_args(v["model_args"])
        return ModelOptions(**v)

    names = ["model", "model_args", "adapter", "outputs", "pad_to", "trust_checkpoint"]
    return _fold(opts, names, "model_opts", build)(f)


def recipe_options(f: F) -> F:
    """Recipe options: how the checkpoint was (or is to be) trained."""
    opts = [
        click.option("--labels", type=click.Choice(["hard", "soft"]), default=None,
                     help="Label kind (default hard)."),
        click.option("--kernel", type=click.IntRange(1, MAX_KERNEL), default=None,
                     help="Soft-label window in cells (default 3)."),
        click.option("--sigma", type=click.FloatRange(0, MAX_KERNEL, min_open=True), default=None,
                     help="Soft-label sigma in cells (default 1.0)."),
        click.option("--trunc", type=click.FloatRange(0, 1), default=None,
                     help="Soft values below this become 0 (default 0.1)."),
        click.option("--schedule", default=None,
                     help="Soft-label schedule: 'dynamic' or 'END:K:SIGMA,...'."),
        click.option("--loss", type=click.Choice(["bce", "focal", "sigmoid-focal"]),
                     default=None, help="Classification loss (default bce)."),
        click.option("--pos-weight", type=click.FloatRange(min=0, min_open=True),
                     default=None, help="BCE weight of positive cells."),
        click.option("--ohem", type=click.FloatRange(min=0, min_open=True), default=None,
                     help="OHEM: keep all positives and this many hardest negatives per positive."),
        click.option("--oversample", type=click.FloatRange(0, 1), default=None,
                     help="Share of training crops centred near a target."),
        click.option("--bias-init", type=click.Choice(["prior", "zero"]), default=None,
                     help="Classification bias at start: the label prior, or 0."),
    ]  # fmt: skip
    names = ["labels", "kernel", "sigma", "trunc", "schedule", "loss", "pos_weight", "ohem",
             "oversample", "bias_init"]  # fmt: skip

    def build(**v: Any) -> RecipeOptions:
        return RecipeOptions(**v)

    return _fold(opts, names, "recipe_opts", build)(f)


def format_option(name: str = "fmt", html: bool = False) -> Callable[[F], F]:
    """--format table|json|markdown (and html with ``html``), passed as ``name``."""
    return click.option(
        "--format",
        name,
        type=click.Choice(["table", "json", "markdown", *(["html"] if html else [])]),
        default="table",
        show_default=True,
        help="Output on stdout: rich table, JSON alone, or Markdown"
        + (", or the self-contained HTML page." if html else "."),
    )


def seed_option(help: str = "Random seed.") -> Callable[[F], F]:
    """--seed N: 0 <= N <= MAX_SEED (what numpy, torch and random all take)."""
    return click.option(
        "--seed",
        type=click.IntRange(0, MAX_SEED),
        default=0,
        show_default=True,
        help=f"{help} 0 to {MAX_SEED}.",
    )


def run_options(default_fail_on: str | None = None, with_out: bool = True) -> Callable[[F], F]:
    """Run options: --seed, --device, --format, --out, --fail-on."""
    opts = [
        seed_option(),
        click.option("--device", default="cpu", show_default=True,
                     help="auto, cpu, cuda or cuda:N."),
        format_option("format"),
    ]  # fmt: skip
    names = ["seed", "device", "format"]
    if with_out:
        opts.append(
            click.option(
                "--out",
                type=click.Path(file_okay=False),
                default=None,
                help="Folder for report.json, report.md and plots.",
            )
        )
        names.append("out")
    opts.append(
        click.option(
            "--fail-on",
            type=click.Choice(["info", "warning", "error", "never"]),
            default=default_fail_on,
            show_default=default_fail_on is not None,
            help="Exit 1 when a finding is at or above this severity.",
        )
    )
    names.append("fail_on")

    def build(**v: Any) -> RunOptions:
        v.setdefault("out", None)
        return RunOptions(**v)

    def decorator(f: F) -> F:
        return _fold(opts, names, "run", build)(f)

    return decorator
