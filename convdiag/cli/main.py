"""The ``convdiag`` command line: a click group whose commands live in ``convdiag.cli``.

Each command module defines ``command`` (a click.Command) whose body parses options, calls
the library and renders. Errors become exit codes here (DESIGN.md "Exit codes"): InputError
and click usage errors -> one line on stderr and 2, any other error -> one line and 3,
Ctrl-C or SIGTERM -> 130. ``CONVDIAG_DEBUG=1`` re-raises so the traceback shows.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import os
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click

from convdiag.errors import ConvdiagError, InputError
from convdiag.load.files import output_set

# command name -> module under convdiag.cli (help order follows this dict)
COMMANDS = {
    "demo": "demo",
    "synth": "synth",
    "labels": "labels",
    "train": "train",
    "analyze": "analyze",
    "retrain": "retrain",
    "show": "show",
    "check": "check",
    "logs": "logs",
    "sweep": "sweep",
}

# commands whose files are kept when they fail: an interrupted training keeps its checkpoint
WRITES_AS_IT_GOES = {"train"}
_WRAPPED: set[int] = set()


def _in_output_set(f: Any, all_or_nothing: bool) -> Any:
    """``f`` run inside one output set (convdiag.load.files.output_set): its files are all
    written or none is left, its --out folders are locked while it runs."""

    @functools.wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with output_set(all_or_nothing):
            return f(*args, **kwargs)

    return wrapper


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


@contextmanager
def _sigterm_as_ctrl_c() -> Iterator[None]:
    """While a command runs, SIGTERM (``kill``, a scheduler's stop) behaves like Ctrl-C:
    partial temporary files are removed, a training run saves its checkpoint, exit 130."""
    try:
        old = signal.getsignal(signal.SIGTERM)
        if old is signal.SIG_DFL:
            signal.signal(signal.SIGTERM, _interrupt)
    except ValueError:  # not the main thread: the embedding application decides
        old = None
    try:
        yield
    finally:
        if old is signal.SIG_DFL:
            signal.signal(signal.SIGTERM, old)


def _fail(message: str, code: int) -> None:
    click.echo(f"convdiag: error: {message}", err=True)
    sys.exit(code)


class ConvdiagGroup(click.Group):
    """A group that imports commands lazily and turns errors into one line and an exit code."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [
            name
            for name, mod in COMMANDS.items()
            if importlib.util.find_spec(f"convdiag.cli.{mod}") is not None
        ]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        mod = COMMANDS.get(cmd_name)
        if mod is None or importlib.util.find_spec(f"convdiag.cli.{mod}") is None:
            return None
        module = importlib.import_module(f"convdiag.cli.{mod}")
        command: click.Command = module.command
        if id(command) not in _WRAPPED and command.callback is not None:
            command.callback = _in_output_set(command.callback, mod not in WRITES_AS_IT_GOES)
            _WRAPPED.add(id(command))
        return command

    def main(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        kwargs["standalone_mode"] = False
        debug = os.environ.get("CONVDIAG_DEBUG") == "1"
        try:
            with _sigterm_as_ctrl_c():
                rv = super().main(*args, **kwargs)
        except click.exceptions.Exit as e:
            sys.exit(e.exit_code)
        except click.ClickException as e:
            _fail(e.format_message().replace("\n", " "), e.exit_code)
        except (click.Abort, KeyboardInterrupt):
            click.echo("convdiag: interrupted", err=True)
            sys.exit(130)
        except InputError as e:
            if debug:
                raise
            _fail(str(e), 2)
        except ConvdiagError as e:
            if debug:
                raise
            _fail(str(e), e.exit_code)
        except BrokenPipeError:
            sys.exit(0)
        except Exception as e:
            if debug:
                raise
            _fail(
                f"internal error: {type(e).__name__}: {e} (set CONVDIAG_DEBUG=1 for a traceback)",
                3,
            )
        sys.exit(rv if isinstance(rv, int) else 0)


@click.group(cls=ConvdiagGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="convdiag")
def cli() -> None:
    """Diagnose why a heatmap detector for tiny point targets does not converge.

    Start with `convdiag demo`, then `convdiag labels DATA` and
    `convdiag analyze CHECKPOINT --data DATA`.
    """


def main() -> None:
    """Console-script entry point."""
    cli.main(prog_name="convdiag")
