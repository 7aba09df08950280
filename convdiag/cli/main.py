"""The ``convdiag`` command line: a click group whose commands live in ``convdiag.cli``.

Each command module defines ``command`` (a click.Command) whose body parses options, calls
the library and renders. Errors become exit codes here (DESIGN.md "Exit codes"): InputError
and click usage errors -> one line on stderr and 2, any other error -> one line and 3,
Ctrl-C or SIGTERM -> 130. ``CONVDIAG_DEBUG=1`` re-raises so the traceback shows.
"""

from __future__ import annotations

import os
import signal
import sys


def _interrupted_while_starting(signum: int, frame: Any) -> None:
    """Ctrl-C before the command's own handling is in place (imports): one line, 130."""
    os.write(2, b"convdiag: interrupted\n")
    os._exit(130)


_STARTING = os.path.basename(sys.argv[0] if sys.argv else "") in ("convdiag", "__main__.py")
if _STARTING and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
    signal.signal(signal.SIGINT, _interrupted_while_starting)  # the console script starting

import functools  # noqa: E402
import importlib  # noqa: E402
import importlib.util  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from contextlib import contextmanager  # noqa: E402
from typing import Any  # noqa: E402

import click  # noqa: E402

from convdiag.errors import ConvdiagError, InputError  # noqa: E402

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
        from convdiag.load.files import output_set

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


def _quiet_stdout() -> None:
    """Point stdout at /dev/null after it failed, so the exit flush adds no second message."""
    try:
        fd = os.open(os.devnull, os.O_WRONLY)
        os.dup2(fd, 1)
        os.close(fd)
    except OSError:
        pass


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
        if signal.getsignal(signal.SIGINT) is _interrupted_while_starting:
            signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C -> below
        if sys.stdout is None or getattr(sys.stdout, "closed", False):
            _fail("stdout is closed: give the command an output (a file, a pipe or --out)", 2)
        try:
            with _sigterm_as_ctrl_c():
                rv = super().main(*args, **kwargs)
                sys.stdout.flush()  # a full disk or a closed pipe shows here, not at exit
        except UnicodeEncodeError as e:
            _quiet_stdout()
            enc = getattr(sys.stdout, "encoding", None) or e.encoding
            _fail(
                f"stdout: cannot write {e.object[e.start : e.end]!r} in the encoding {enc}; "
                "set PYTHONIOENCODING=utf-8 (or a UTF-8 locale) or use --format json",
                2,
            )
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
            _quiet_stdout()
            sys.exit(0)
        except OSError as e:
            if e.filename is not None or debug:  # a file: convdiag.load reports those itself
                raise
            _quiet_stdout()
            _fail(f"stdout: cannot write the output ({e.strerror or e})", 2)
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
