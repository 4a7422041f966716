"""``jetmesh dlq``: inspect dead letters with their reasons and send them back."""

from __future__ import annotations

import datetime

import msgspec
import typer
from rich.table import Table

from ..dead_letters import DeadLetter, get_dead_letter, list_dead_letters
from ..redrive import redrive as redrive_letter
from .common import console, run_async, settings
from .ingress import admin_client

app = typer.Typer(help="Inspect dead letters and send them back once fixed.", no_args_is_help=True)


def _when(at: float) -> str:
    return datetime.datetime.fromtimestamp(at, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S")


def _subject(agent: str | None) -> str:
    s = settings()
    return f"{s.subject_prefix}.dlq.{agent}" if agent else f"{s.subject_prefix}.dlq.>"


@app.command("list")
def list_(
    agent: str = typer.Option("", help="only this agent's dead letters"),
    limit: int = typer.Option(100, help="at most this many"),
) -> None:
    """List dead letters: sequence, agent, reason, workflow, time, detail."""

    async def go() -> list[DeadLetter]:
        async with admin_client(settings()) as mesh:
            return await list_dead_letters(
                mesh.js, mesh.settings.dlq_stream, _subject(agent or None), limit=limit
            )

    letters = run_async(go())
    table = Table("seq", "agent", "reason", "workflow", "stored (UTC)", "detail")
    for letter in letters:
        env = letter.envelope()
        table.add_row(
            str(letter.seq),
            letter.agent,
            letter.reason,
            env.workflow if env else "-",
            _when(letter.at),
            letter.detail[:60],
        )
    console.print(table)
    console.print(f"{len(letters)} dead letter(s)")


@app.command("show")
def show(seq: int = typer.Argument(..., help="sequence number from `jetmesh dlq list`")) -> None:
    """Show one dead letter: its reason, headers and the refused bytes."""

    async def go() -> DeadLetter:
        async with admin_client(settings()) as mesh:
            return await get_dead_letter(mesh.js, mesh.settings.dlq_stream, seq)

    letter = run_async(go())
    console.print(f"seq       {letter.seq}\nagent     {letter.agent}\nreason    {letter.reason}")
    console.print(f"detail    {letter.detail}\nsubject   {letter.subject}")
    console.print(f"stored    {_when(letter.at)} UTC")
    for name, value in sorted(letter.headers.items()):
        console.print(f"header    {name}: {value[:100]}")
    try:
        console.print_json(msgspec.json.encode(msgspec.json.decode(letter.data)).decode())
    except msgspec.DecodeError:
        console.print(repr(letter.data[:2000]))


@app.command("redrive")
def redrive(seq: int = typer.Argument(..., help="sequence number from `jetmesh dlq list`")) -> None:
    """Send a dead-lettered task again (new id, same workflow, step, caller and body),
    then remove the dead letter."""

    async def go() -> str:
        async with admin_client(settings()) as mesh:
            letter = await get_dead_letter(mesh.js, mesh.settings.dlq_stream, seq)
            task = await redrive_letter(mesh, letter)
            await mesh.flush_events()
            return f"sent again as task {task.id} to {task.to} (workflow {task.workflow})"

    console.print(run_async(go()))
