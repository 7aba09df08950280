"""Console output: rich tables on stdout, progress on stderr, and the --format switch."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from convdiag.load.files import to_json


def stdout_console() -> Console:
    """Console on stdout (width from the terminal, 120 when not a terminal)."""
    width = None if os.isatty(1) else 120
    return Console(file=sys.stdout, width=width, soft_wrap=False)


def stderr_console() -> Console:
    """Console on stderr, for progress and notes."""
    return Console(file=sys.stderr, stderr=True)


@contextmanager
def progress(
    description: str, total: int | None, quiet: bool = False
) -> Iterator[Callable[..., None]]:
    """A rich progress bar on stderr; yields ``advance(n=1, **fields)``."""
    bar = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[note]}"),
        console=stderr_console(),
        transient=True,
        disable=quiet,
    )
    with bar:
        task = bar.add_task(description, total=total, note="")

        def advance(n: int = 1, note: str | None = None) -> None:
            if note is not None:
                bar.update(task, advance=n, note=note)
            else:
                bar.advance(task, n)

        yield advance


def table(title: str | None, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> Table:
    """A rich table; numbers are formatted with ``fmt_num``."""
    t = Table(title=title, title_justify="left", header_style="bold")
    for i, c in enumerate(columns):
        t.add_column(str(c), justify="left" if i == 0 else "right")
    for row in rows:
        t.add_row(*(fmt_num(v) for v in row))
    return t


def md_table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub-flavoured Markdown table."""
    lines = ["| " + " | ".join(str(c) for c in columns) + " |"]
    lines.append("|" + "|".join("---" for _ in columns) + "|")
    lines += ["| " + " | ".join(fmt_num(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def fmt_num(v: Any) -> str:
    """Numbers to short text: ints as is, floats to 4 significant digits, None as '-'."""
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        if v != v:
            return "nan"
        if v == 0:
            return "0"
        if abs(v) >= 1e5 or abs(v) < 1e-3:
            return f"{v:.3g}"
        return f"{v:.4g}"
    return str(v)


def _write(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def emit(
    data: Any,
    fmt: str,
    render_table: Callable[[Console], None],
    render_markdown: Callable[[], str],
) -> None:
    """Print a result on stdout as a rich table, JSON alone, or Markdown."""
    if fmt == "json":
        _write(to_json(data))
    elif fmt == "markdown":
        _write(render_markdown())
    else:
        render_table(stdout_console())
