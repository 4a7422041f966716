"""``jetmesh cost``: what the model calls cost, by caller, tenant, role or model.

Reads the ``model`` events of the log as the admin (:mod:`jetmesh.cost`): only events that
verify are added; the others are counted on a line of their own. Every key printed comes
from an event a role wrote, so it is shown as data (:mod:`.render`)."""

from __future__ import annotations

import datetime
import re
import sys
import time

import msgspec
import typer
from rich.table import Table

from ..cost import GROUPS, CostReport, GroupBy, cost_report
from ..event_log import usd
from .common import console, err_console, run_async, settings
from .ingress import admin_client
from .render import text

DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhd])")
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_since(value: str, now: float) -> float:
    """``24h``, ``30m``, ``2d``, ``90s`` (that long before ``now``) or an ISO 8601 time
    (UTC unless it says otherwise), as Unix time.

    Raises:
        typer.BadParameter: neither.
    """
    if match := DURATION.fullmatch(value.strip()):
        return now - float(match.group(1)) * UNITS[match.group(2)]
    try:
        at = datetime.datetime.fromisoformat(value.strip())
    except ValueError:
        raise typer.BadParameter(
            f"{value!r} is neither a duration (24h, 30m, 2d) nor an ISO time"
        ) from None
    if at.tzinfo is None:
        at = at.replace(tzinfo=datetime.UTC)
    return at.timestamp()


def _when(at: float) -> str:
    return datetime.datetime.fromtimestamp(at, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def cost_table(report: CostReport) -> Table:
    """One row a group, the largest cost first, then the total."""
    table = Table(report.by, "calls", "tokens in", "tokens out", "cost", show_footer=False)
    for line in report.lines:
        cost = usd(line.cost_usd) + (f" (+{line.unpriced} unpriced)" if line.unpriced else "")
        table.add_row(
            text(line.key, limit=60),
            str(line.calls),
            str(line.tokens_in),
            str(line.tokens_out),
            cost,
        )
    total = report.total
    unknown = f" (+{total.unpriced} unpriced)" if total.unpriced else ""
    table.add_section()
    table.add_row(
        "total",
        str(total.calls),
        str(total.tokens_in),
        str(total.tokens_out),
        usd(total.cost_usd) + unknown,
        style="bold",
    )
    return table


def cost(
    by: str = typer.Option("role", "--by", help="group by caller, tenant, role or model"),
    since: str = typer.Option(
        "24h", help="from this long ago (24h, 30m, 2d) or this ISO time (UTC by default)"
    ),
    workflow: str = typer.Option("", help="only this workflow's calls"),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
    timeout: float = typer.Option(60.0, help="give up reading after this many seconds"),
) -> None:
    """What the model calls cost, by caller, tenant, role or model, the largest first.

    Only events whose signature verifies are counted, each credited to the role that
    signed it; events that fail verification are counted apart. A call answered from the
    journal (a re-run that did not ask the model again) costs nothing again."""
    if by not in GROUPS:
        raise typer.BadParameter(f"--by must be one of {', '.join(GROUPS)}", param_hint="--by")
    group: GroupBy = by  # checked just above
    start = parse_since(since, time.time())

    async def go() -> CostReport:
        async with admin_client(settings()) as mesh:
            return await cost_report(
                mesh, by=group, since=start, workflow=workflow or None, timeout=timeout
            )

    try:
        report = run_async(go())
    except TimeoutError:
        err_console.print(
            f"[red]error:[/red] the events since {_when(start)} took over {timeout:g} s to "
            "read: a later --since, a --workflow, or a longer --timeout",
            highlight=False,
        )
        raise typer.Exit(1) from None
    if as_json:
        sys.stdout.write(msgspec.json.encode(report.as_dict()).decode() + "\n")
        return
    scope = f"workflow {workflow}, " if workflow else ""
    console.print(text(f"model calls, {scope}since {_when(start)}, by {by}"))
    if report.total.calls:
        console.print(cost_table(report))
    else:
        console.print("no model calls")
    if report.not_asked:
        console.print(
            f"not asked again: {report.not_asked} events (answered from the journal, or failed)"
        )
    if report.not_counted:
        console.print(
            text(f"not counted: {report.not_counted} events failing verification", style="red")
        )
