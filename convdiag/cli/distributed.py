"""The click side of running a command in several processes: ``--devices N`` and relaunch.

The library side (process group, ranks, sharding, the torchrun launcher) is
``convdiag.training.distributed``; here the command line the user gave is rebuilt from the
click context so the command can run again under torchrun.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Collection
from typing import Any, TypeVar

import click

from convdiag.training.distributed import is_main, launch, session, should_relaunch

F = TypeVar("F", bound=Callable[..., Any])


def command_line(ctx: click.Context, drop: Collection[str] = ("devices",)) -> list[str]:
    """The arguments a user gave this command (from the command line or the environment),
    rebuilt from ``ctx`` as a list for ``convdiag <name> ...``; options in ``drop`` left out.

    Options come first, then ``--`` and the positional arguments (so a path starting with
    "-" stays a path).
    """
    from click.core import ParameterSource

    opts: list[str] = []
    positional: list[str] = []
    given = (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT)
    for p in ctx.command.params:
        if p.name is None or p.name in drop or ctx.get_parameter_source(p.name) not in given:
            continue
        value = ctx.params.get(p.name)
        if isinstance(p, click.Argument):
            vals = value if isinstance(value, tuple | list) else [value]
            positional += [_text(v) for v in vals if v is not None]
            continue
        if not isinstance(p, click.Option) or value is None:
            continue
        if p.count:
            opts += [p.opts[0]] * int(value)
        elif p.is_flag:
            if p.secondary_opts:
                opts.append(p.opts[0] if value else p.secondary_opts[0])
            elif value:
                opts.append(p.opts[0])
        elif p.multiple:
            for v in value:
                opts += [p.opts[0], *_texts(v)]
        else:
            opts += [p.opts[0], *_texts(value)]
    return [*opts, "--", *positional] if positional else opts


def _texts(v: Any) -> list[str]:
    return [_text(x) for x in v] if isinstance(v, tuple | list) else [_text(v)]


def _text(v: Any) -> str:
    if isinstance(v, float):
        return repr(v)
    return os.fspath(v) if isinstance(v, os.PathLike) else str(v)


def relaunch(ctx: click.Context, devices: int, device_text: str = "cpu") -> int:
    """Run this command again in ``devices`` processes (``launch``, with the arguments the
    user gave, rebuilt from ``ctx``) and return rank 0's exit code."""
    return launch(ctx.command.name or "", command_line(ctx), devices, device_text)


def distributed_command(f: F) -> F:
    """Decorator for a click command callback: adds ``--devices N`` and runs the body in a
    ``session`` for its ``--device`` (``run.device``).

    With N > 1 outside torchrun the command relaunches itself in N processes and returns
    rank 0's exit code; under torchrun every rank runs the body and ranks above 0 return 0
    (their outcome is rank 0's). Put it under the option decorators, next to the function.
    """

    @functools.wraps(f)
    def wrapper(*args: Any, devices: int | None = None, **kwargs: Any) -> Any:
        run = kwargs.get("run")
        device_text = str(getattr(run, "device", "cpu"))
        if should_relaunch(devices):
            return relaunch(click.get_current_context(), int(devices or 1), device_text)
        main = True
        with session(device_text):
            main = is_main()
            code = f(*args, **kwargs)
        return code if main else 0

    option = click.option(
        "--devices",
        type=click.IntRange(min=1),
        default=None,
        help="Run in N processes through torchrun (gloo on CPU, one GPU each with CUDA).",
    )
    return option(wrapper)  # type: ignore[return-value]
