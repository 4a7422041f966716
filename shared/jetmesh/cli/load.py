"""``jetmesh load``: run a load scenario and judge it against its objectives, or compare
two runs.

``jetmesh load run SCENARIO.toml --out DIR`` sends the scenario's requests (open loop:
on a schedule fixed in advance, latency from each request's scheduled time; see
:mod:`jetmesh.load.driver`), prints a line a second, writes ``DIR/report.json``,
``DIR/report.md`` (and with ``--plots`` the PNGs) and a summary. Exit 0 when every
objective held, 1 when one failed (or the run could not be made), 2 when the scenario file
is wrong. ``jetmesh load compare A.json B.json`` says
what changed from A to B and exits 1 when B is worse.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import typer
from rich.table import Table

from .._exceptions import ConfigError
from ..load import (
    LoadReport,
    Progress,
    Scenario,
    bounds,
    check_runnable,
    floor_ratio,
    load_scenario,
    markdown,
    plots,
    read_report,
    run_load,
    write_report,
)
from ..load.generators import (
    merge_generators,
    parse_part,
    parse_processes,
    part_of,
    run_generators,
    suggested_processes,
)
from ..load.memory import RssWatch, embedded_pids, watch_pids, with_soak
from ..runtime.gc_tuning import settle_heap
from .common import console, err_console, run_async, settings
from .render import markup

app = typer.Typer(help="Run load scenarios and compare their reports.", no_args_is_help=True)

BAD_SCENARIO = 2
"""The exit code of a scenario file that does not validate."""


def _progress_line(p: Progress) -> None:
    phase = "warm-up" if p.t < 0 else f"{p.t:5.0f}s"
    console.print(
        f"{phase}  sent {p.sent:>7}  completed {p.completed:>7}  errors {p.errors:>5}  "
        f"lost {p.lost:>5}  p99 {p.p99_ms:8.1f} ms  rate {p.rate:7.0f}/s",
        highlight=False,
    )


def summary(report: LoadReport) -> Table:
    """The report as a two-column table: counts, rates, latencies, the floors and the run's
    ratio to each, and objectives."""
    table = Table(title=f"{markup(report.scenario)}: {report.verdict.upper()}", show_header=False)
    table.add_column("what")
    table.add_column("value", justify="right")
    asked = f"{report.asked_rate:.1f}/s" if report.asked_rate is not None else "-"
    rows = [
        ("target", markup(report.target)),
        ("arrival", markup(report.arrival)),
        ("seconds (+warm-up)", f"{report.seconds:g} (+{report.warmup_s:g})"),
        ("asked / achieved rate", f"{asked} / {report.achieved_rate:.1f}/s"),
        ("saturated", "YES: the generator fell behind" if report.saturated else "no"),
    ]
    if report.generators > 1:
        rows.append(("generators", f"{report.generators} processes"))
    for name in ("sent", "completed", "errors", "lost", "duplicated", "dead_lettered"):
        rows.append((name.replace("_", " "), str(getattr(report, name))))
    rows += [(f"latency {k}", f"{v:.2f} ms") for k, v in report.latency_ms.items()]
    for floor in (report.floor, report.durable_floor):
        if floor is None:
            continue
        name = "floor" if floor.kind == "request" else "durable floor"
        ratio = floor_ratio(report, floor.kind)
        said = f"{floor.rate:,.0f}/s, p50 {floor.p50_ms:.2f} ms, p99 {floor.p99_ms:.2f} ms"
        rows.append((f"{name} (bare nats-py)", said))
        rows.append(
            (f"ratio to the {name}", "-" if ratio is None else f"{ratio:.3f} (completed/s)")
        )
    for f in report.faults:
        result = "done" if f.done else "NOT DONE"
        rows.append((f"fault at {f.at:.1f} s", markup(f"{f.kind} {f.target}: {result}")))
    for slo in report.slos:
        mark = "ok" if slo.ok else "FAIL"
        rows.append((f"slo {slo.name}", f"{slo.value:.4g} (limit {slo.limit:g}) {mark}"))
    for figure in report.audit:
        mark = "ok" if figure.ok else "FAIL"
        said = f"{figure.value:g} ({bounds(figure)}) {mark}"
        rows.append((f"audit {markup(figure.name)}", said))
    for row in rows:
        table.add_row(*row)
    return table


def _scenario(path: Path, seconds: float | None, rate: float | None) -> Scenario:
    try:
        return load_scenario(path, seconds=seconds, rate=rate)
    except ConfigError as exc:
        err_console.print(f"[red]error:[/red] {markup(exc)}", highlight=False, soft_wrap=True)
        raise typer.Exit(BAD_SCENARIO) from None


def _runnable(scenario: Scenario) -> None:
    """Exit 2 when the scenario cannot run, before anything starts (see check_runnable)."""
    try:
        check_runnable(scenario)
    except ConfigError as exc:
        err_console.print(f"[red]error:[/red] {markup(exc)}", highlight=False, soft_wrap=True)
        raise typer.Exit(BAD_SCENARIO) from None


def _generator_args(
    scenario_file: Path, seconds: float | None, rate: float | None, soak: bool, watch: list[str]
) -> list[str]:
    """The options a generator process gets (each writes its own report)."""
    args = [str(scenario_file)]
    args += ["--seconds", repr(seconds)] if seconds is not None else []
    args += ["--rate", repr(rate)] if rate is not None else []
    args += ["--soak"] if soak else []
    for option in watch:
        args += ["--watch-pid", option]
    return args


def _generator(
    scenario: Scenario, processes: str, part: str | None, soak: bool, watch: list[str]
) -> tuple[int | None, Scenario, float, RssWatch | None]:
    """``--processes`` (None: auto), this process's share of the scenario and its delay
    (``--part``), and the memory watch of a soak; exit 2 on a wrong option."""
    delay, name = 0.0, "generator"
    try:
        count = parse_processes(processes)
        if part is not None:
            index, of = parse_part(part)
            scenario, delay = part_of(scenario, index, of)
            name = f"generator-{index + 1}"
        memory = None
        if soak:
            servers = embedded_pids(settings().state_dir)
            memory = RssWatch({name: os.getpid(), **servers, **watch_pids(watch)})
    except ConfigError as exc:
        err_console.print(f"[red]error:[/red] {markup(exc)}", highlight=False, soft_wrap=True)
        raise typer.Exit(BAD_SCENARIO) from None
    return count, scenario, delay, memory


def _several(args: list[str], count: int) -> LoadReport:
    """``count`` generator processes run with ``args``; their reports merged (exit 1 when
    one wrote none)."""
    console.print(f"{count} generator processes, each at 1/{count} of the rate", highlight=False)
    try:
        return merge_generators(run_async(run_generators(args, count)))
    except ValueError as exc:
        err_console.print(f"[red]error:[/red] {markup(exc)}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None


def run(
    scenario_file: Path = typer.Argument(..., help="the scenario (TOML)", metavar="SCENARIO"),
    out: Path = typer.Option(Path("load-out"), "--out", help="folder for report.json"),
    seconds: float | None = typer.Option(None, help="run this long instead (after warm-up)"),
    rate: float | None = typer.Option(None, help="this rate instead (constant or poisson)"),
    quiet: bool = typer.Option(False, "--quiet", help="no line per second"),
    draw: bool = typer.Option(
        False, "--plots", help="also draw the run's plots as PNGs in OUT (needs matplotlib)"
    ),
    processes: str = typer.Option(
        "1", "--processes", help="generator processes, each at rate/N (a count, or auto)"
    ),
    soak: bool = typer.Option(
        False, "--soak", help="sample memory per second; judge memory and p99 flat"
    ),
    watch: list[str] = typer.Option(
        [], "--watch-pid", help="NAME=PID: a process whose memory a soak samples"
    ),
    part: str | None = typer.Option(None, "--part", hidden=True),
) -> None:
    """Run SCENARIO: print a line a second, write OUT/report.json, OUT/report.md and a
    summary; exit 1 when an objective failed, 2 when the scenario is wrong."""
    scenario = _scenario(scenario_file, seconds, rate)
    if scenario.mesh is not None or scenario.audit is not None:
        sys.path.insert(0, str(Path.cwd()))  # a mesh package or audit of this checkout
    _runnable(scenario)
    mesh_settings = settings() if scenario.target.door == "nats" else None
    count, scenario, delay, memory = _generator(scenario, processes, part, soak, watch)
    if memory is not None and not quiet:
        console.print(markup(memory.describe()), highlight=False)

    async def go() -> LoadReport:
        await asyncio.sleep(delay)  # a generator process's place in the schedule
        # the scenario's [mesh] launched and its [[faults]] struck around the run
        return await run_load(
            scenario,
            mesh_settings,
            progress=None if quiet else _progress_line,
            on_launch=None if memory is None else lambda fleet: memory.follow(fleet.pids),
            memory=None if memory is None else memory.sample,
            log_dir=out / "logs" if scenario.mesh is not None else None,
        )

    if count is not None and count > 1 and part is None:
        if scenario.mesh is not None:
            said = markup("a scenario's [mesh] runs with one generator process")
            err_console.print(f"[red]error:[/red] {said}", highlight=False)
            raise typer.Exit(BAD_SCENARIO)
        report = _several(_generator_args(scenario_file, seconds, rate, soak, watch), count)
    else:
        settle_heap(settings().gc_young_threshold)  # this process is the load's caller
        report = run_async(go())
    if soak:
        report = with_soak(report)
    path = out / "report.json"
    write_report(path, report)
    (out / "report.md").write_text(markdown(report))
    if draw:
        try:
            plots(report, out)
        except ConfigError as exc:
            err_console.print(f"[red]error:[/red] {markup(exc)}", highlight=False)
            raise typer.Exit(1) from None
    console.print(summary(report))
    if report.saturated:
        err_console.print(
            "[yellow]warning:[/yellow] the load generator could not keep its schedule "
            "(saturated): the latencies include its own lag",
            highlight=False,
        )
        if count is None:
            err_console.print(
                f"--processes auto: try --processes {suggested_processes(report)}",
                highlight=False,
            )
    console.print(f"report: {markup(path)}", highlight=False)
    if report.verdict == "fail":
        raise typer.Exit(1)


def compare(
    a: Path = typer.Argument(..., help="the baseline report.json"),
    b: Path = typer.Argument(..., help="the report to compare with it"),
    limit: list[str] = typer.Option(
        [],
        "--limit",
        metavar="NAME=RATIO",
        help="B fails when its figure NAME is more than RATIO times A's (p99=2.0); "
        "given, the limits alone decide",
    ),
) -> None:
    """Say what changed from run A to run B; exit 1 when B is worse or, with --limit, when
    B went beyond a limit; 2 when a report or a limit is wrong."""
    from ..load.compare import compare_reports, parse_limit  # loaded when asked for

    try:
        reports = read_report(a), read_report(b)
        limits = dict(parse_limit(text) for text in limit)
        text, fails = compare_reports(*reports, limits=limits)
    except (OSError, ValueError, ConfigError) as exc:
        err_console.print(f"[red]error:[/red] {markup(exc)}", highlight=False, soft_wrap=True)
        raise typer.Exit(BAD_SCENARIO) from None
    console.print(markup(text, lines=True, limit=64 * 1024), highlight=False, soft_wrap=True)
    if fails:
        raise typer.Exit(1)


app.command("run")(run)
app.command("compare")(compare)
