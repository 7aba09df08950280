"""``convdiag show report.json``: render a saved report of any kind again, without
recomputing (a report's ``kind`` picks the renderer: analyze, logs, labels, retrain and its
race, demo, sweep, check); ``--plots DIR`` redraws its PNGs from report.json and report.npz."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from convdiag.cli.options import format_option
from convdiag.report.saved import read_report


@click.command("show")
@click.argument("report", type=click.Path())
@format_option(html=True)
@click.option(
    "--fail-on",
    type=click.Choice(["info", "warning", "error", "never"]),
    default=None,
    help="Exit 1 when a finding is at or above this severity.",
)
@click.option(
    "--plots",
    "plots_dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Redraw the report's PNG plots into this folder from report.json and report.npz "
    "(no model or data needed).",
)
def command(report: str, fmt: str, fail_on: str | None, plots_dir: str | None) -> int:
    """Render a saved REPORT (report.json, sweep.json or their folder) again.

    \b
    Example: convdiag show report/report.json --format markdown
             convdiag show report/ --format html > page.html
             convdiag show report/ --plots redrawn/
    """
    import sys

    from convdiag.diagnosis.findings import Finding, exit_code
    from convdiag.errors import InputError
    from convdiag.report.console import emit
    from convdiag.report.saved import report_path

    data = read_report(report)
    folder = report_path(report).parent
    try:
        findings = [Finding.from_dict(f) for f in data.get("findings", [])]
    except (TypeError, ValueError, KeyError) as e:
        raise InputError(f"{report}: malformed findings ({e})") from None
    if plots_dir is not None:
        from convdiag.load.files import prepare_out_dir
        from convdiag.report.redraw import redraw_plots
        from convdiag.report.saved_arrays import NPZ_NAME, load_arrays

        arrays = load_arrays(folder)
        files = redraw_plots(data, arrays, prepare_out_dir(plots_dir), folder / NPZ_NAME)
        print(f"redrew {len(files)} plots in {plots_dir}", file=sys.stderr)
    if fmt == "html":
        from convdiag.report.html import render_html

        sys.stdout.write(render_html(data, folder))
    else:
        table, markdown = _renderers(data)
        emit(data, fmt, table, markdown)
    return exit_code(findings, fail_on)


def _renderers(data: dict[str, Any]) -> tuple[Callable[[Any], None], Callable[[], str]]:
    """(console renderer, Markdown renderer) of a saved report, by its kind; a ``race``
    section is rendered after the rest, by ``report.race_report`` when it is there."""
    kind = data["kind"]
    table: Callable[[Any], None]
    markdown: Callable[[], str]
    if kind == "labels":
        from convdiag.report import labels_report as lr

        table = lambda c: lr.render_table(c, data)  # noqa: E731
        markdown = lambda: lr.render_markdown(data, data.get("plots") or [])  # noqa: E731
        return table, markdown
    mod: Any
    if kind == "logs":
        from convdiag.report import logs_report as mod
    elif kind == "logs-compare":
        from convdiag.report import logs_compare as mod
    elif kind == "analyze":
        from convdiag.report import analyze_report as mod
    elif kind == "retrain":
        from convdiag.report import retrain_report as mod
    elif kind == "demo":
        from convdiag.report import demo as mod
    elif kind == "sweep":
        from convdiag.report import sweep_report as mod
    else:
        from convdiag.report import generic as mod
    if "race" not in data or kind == "race":
        return (lambda c: mod.render_table(c, data)), (lambda: mod.render_markdown(data))
    race = _race_renderers(data)

    def both_table(c: Any) -> None:
        mod.render_table(c, data)
        race[0](c)

    return both_table, (lambda: mod.render_markdown(data) + "\n" + race[1]())


def _race_renderers(data: dict[str, Any]) -> tuple[Callable[[Any], None], Callable[[], str]]:
    """The race's own renderers (``report.race_report``: render_table / render_markdown of
    the report) when there, else its section as tables."""
    import importlib

    from convdiag.report import generic

    try:
        rr: Any = importlib.import_module("convdiag.report.race_report")
        table, markdown = rr.render_table, rr.render_markdown
    except (ImportError, AttributeError):
        section = {"race": data["race"]}
        return (lambda c: generic.render_table(c, section)), (
            lambda: generic.render_markdown(section)
        )
    return (lambda c: table(c, data)), (lambda: markdown(data))
