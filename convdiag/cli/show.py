"""``convdiag show report.json``: render a saved analyze or logs report again, without
recomputing (a report's ``kind`` picks the renderer: ``analyze``, the default, or ``logs``)."""

from __future__ import annotations

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
def command(report: str, fmt: str, fail_on: str | None) -> int:
    """Render a saved analyze or logs REPORT (report.json or its folder) again.

    \b
    Example: convdiag show report/report.json --format markdown
             convdiag show report/ --format html > page.html
    """
    from convdiag.diagnosis.findings import Finding, exit_code
    from convdiag.errors import InputError
    from convdiag.report.console import emit

    data = read_report(report)
    if data.get("kind") == "logs":
        from convdiag.report.logs_report import render_markdown, render_table
    else:
        from convdiag.report.analyze_report import render_markdown, render_table
    try:
        findings = [Finding.from_dict(f) for f in data["findings"]]
    except (TypeError, ValueError, KeyError) as e:
        raise InputError(f"{report}: malformed findings ({e})") from None
    if fmt == "html":
        import sys
        from pathlib import Path

        from convdiag.report.html import render_html

        folder = Path(report) if Path(report).is_dir() else Path(report).parent
        sys.stdout.write(render_html(data, folder))
    else:
        emit(data, fmt, lambda c: render_table(c, data), lambda: render_markdown(data))
    return exit_code(findings, fail_on)
