"""``jetmesh dlq``: inspect dead letters with their reasons and send them back.

Dead letters are read and removed as the admin (on servers that enforce the policy); a
redriven task is verified as its role's original and sent by the ``cli`` ingress
(:mod:`jetmesh.dead_letters.redrive`); a side effect in doubt is settled as a person found
it (:mod:`jetmesh.dead_letters.settle`). Everything printed from a dead letter is shown as data
(:mod:`.render`).
"""

from __future__ import annotations

import contextlib
import datetime
from collections.abc import AsyncIterator

import typer
from rich.console import Console
from rich.table import Table

from ..client import MeshClient
from ..dead_letters import DeadLetter, get_dead_letter, list_dead_letters, with_task
from ..dead_letters import redrive as redrive_letter
from ..dead_letters import settle as settle_letter
from ..logins import admin_login
from ..settings import MeshSettings
from .common import console, run_async, settings
from .ingress import CLI_IDENTITY, admin_client, cli_client
from .render import json_text, markup, plain, text

app = typer.Typer(help="Inspect dead letters and send them back once fixed.", no_args_is_help=True)


def _when(at: float) -> str:
    try:
        return datetime.datetime.fromtimestamp(at, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S")
    except (OverflowError, OSError, ValueError):
        return "-"


def _subject(agent: str | None) -> str:
    s = settings()
    return f"{s.subject_prefix}.dlq.{agent}" if agent else f"{s.subject_prefix}.dlq.>"


def letters_table(letters: list[DeadLetter]) -> Table:
    """The dead letters as a table: sequence, agent, reason, workflow, time, detail."""
    table = Table("seq", "agent", "reason", "workflow", "stored (UTC)", "detail")
    for letter in letters:
        env = letter.envelope()
        table.add_row(
            str(letter.seq),
            text(letter.owner or letter.agent, limit=40),
            text(letter.reason, limit=40),
            text(env.workflow if env else "-", limit=40),
            _when(letter.at),
            text(letter.detail, limit=60),
        )
    return table


@app.command("list")
def list_(
    agent: str = typer.Option("", help="only this agent's dead letters"),
    limit: int = typer.Option(100, help="at most this many"),
) -> None:
    """List dead letters: sequence, agent, reason, workflow, time, detail."""

    async def go() -> list[DeadLetter]:
        async with admin_client(settings()) as mesh:
            return await list_dead_letters(
                mesh, mesh.settings.dlq_stream, _subject(agent or None), limit=limit
            )

    letters = run_async(go())
    console.print(letters_table(letters))
    console.print(f"{len(letters)} dead letter(s)")


def show_letter(letter: DeadLetter, out: Console | None = None) -> None:
    """Print one dead letter (on ``out``, the standard output by default): where it was
    stored, its reason, headers and bytes."""
    out = out or console
    lines = [
        f"seq       {letter.seq}",
        f"stored on {markup(letter.stored_on)}",
        f"agent     {markup(letter.agent)}",
        f"reason    {markup(letter.reason)}",
        f"detail    {markup(letter.detail)}",
        f"subject   {markup(letter.subject)}",
        f"stored    {_when(letter.at)} UTC",
    ]
    if letter.task_seq is not None:
        read = "read from the tasks stream" if letter.data else "no longer in the tasks stream"
        lines.append(f"task seq  {letter.task_seq} ({read})")
    for name, value in sorted(letter.headers.items()):
        lines.append(f"header    {markup(name, limit=100)}: {markup(value, limit=100)}")
    if letter.reason == "tool-in-doubt" or "in doubt" in letter.detail:
        env = letter.envelope()
        key = f"{env.workflow}/{env.step}" if env is not None else "<workflow>/<step>"
        lines.append(
            f"settle    a side effect in doubt: check the target under the key "
            f"{markup(key, limit=200)}, then jetmesh dlq settle {letter.seq} "
            "--happened|--did-not-happen --as NAME"
        )
    out.print("\n".join(lines), highlight=False, soft_wrap=True)
    body = json_text(letter.data)
    if body is not None:
        out.print(body, soft_wrap=True)
    else:
        out.print(plain(repr(letter.data[:2000])), markup=False, highlight=False)


@app.command("show")
def show(seq: int = typer.Argument(..., help="sequence number from `jetmesh dlq list`")) -> None:
    """Show one dead letter: its reason, headers and the refused bytes (for a task that ran
    out of deliveries without being kept, the task read from the tasks stream)."""

    async def go() -> DeadLetter:
        async with admin_client(settings()) as mesh:
            letter = await get_dead_letter(mesh, mesh.settings.dlq_stream, seq)
            return await with_task(mesh, mesh.settings.tasks_stream, letter)

    show_letter(run_async(go()))


@contextlib.asynccontextmanager
async def _operating(s: MeshSettings, ingress: str) -> AsyncIterator[tuple[MeshClient, MeshClient]]:
    """The admin (reads and removes dead letters, clears records) and the ingress that
    verifies, signs and sends (the admin itself on open servers)."""
    enforced = admin_login(s).user is not None
    async with admin_client(s) as admin:
        sender: MeshClient = cli_client(s, ingress) if enforced else admin
        if enforced:
            await sender.start()
        try:
            yield admin, sender
        finally:
            await sender.flush_events()
            if enforced:
                await sender.close()


async def _letter(admin: MeshClient, seq: int) -> DeadLetter:
    letter = await get_dead_letter(admin, admin.settings.dlq_stream, seq)
    return await with_task(admin, admin.settings.tasks_stream, letter)


async def redrive_seq(s: MeshSettings, seq: int, ingress: str = CLI_IDENTITY) -> str:
    """Verify and send dead letter ``seq`` again: read and removed as the admin, sent by
    the ingress ``ingress``; returns what was sent.

    Raises:
        NotATask: it holds no task envelope (nothing sent).
        RedriveRefused: it does not hold its role's original task, or the ingress may not
            send there (nothing sent).
        ConfigError: there is no dead letter ``seq``.
    """
    async with _operating(s, ingress) as (admin, sender):
        task = await redrive_letter(sender, await _letter(admin, seq), operator=admin)
    return f"sent again as task {task.id} to {task.to} (workflow {task.workflow})"


async def settle_seq(
    s: MeshSettings, seq: int, *, happened: bool, by: str, ingress: str = CLI_IDENTITY
) -> str:
    """Settle the side effects in doubt of dead letter ``seq``'s step as ``by`` found them
    (:mod:`jetmesh.dead_letters.settle`); returns what was done.

    Raises:
        RedriveRefused: it does not hold its role's original task (nothing done).
        SettleRefused: its step holds nothing in doubt, or a claim changed meanwhile.
        ConfigError: there is no dead letter ``seq``.
    """
    async with _operating(s, ingress) as (admin, sender):
        done = await settle_letter(
            sender, await _letter(admin, seq), happened=happened, by=by, operator=admin
        )
    claims = ", ".join(done.claims)
    if done.task is None:
        return f"settled as happened: {claims} stays claimed; dead letter {seq} removed"
    return (
        f"settled as not happened: {claims} removed; sent again as task {done.task.id} to "
        f"{done.task.to} (workflow {done.task.workflow})"
    )


@app.command("redrive")
def redrive(
    seq: int = typer.Argument(..., help="sequence number from `jetmesh dlq list`"),
    ingress: str = typer.Option(
        CLI_IDENTITY, help="the ingress role that sends the task (it must call its role)"
    ),
) -> None:
    """Verify a dead-lettered task as its role's original (signature, signer, addressee,
    chain and caller token) and send it again (new id, same workflow, step, caller and
    body), then remove the dead letter. A dead letter that does not verify is refused,
    audited, and nothing is sent."""
    console.print(markup(run_async(redrive_seq(settings(), seq, ingress))), highlight=False)


@app.command("settle")
def settle(
    seq: int = typer.Argument(..., help="sequence number from `jetmesh dlq list`"),
    happened: bool = typer.Option(
        ...,
        "--happened/--did-not-happen",
        help="what you found at the target, under the idempotency key <workflow>/<step>",
    ),
    by: str = typer.Option(..., "--as", help="who checked the target and decides"),
    ingress: str = typer.Option(
        CLI_IDENTITY, help="the ingress role that sends the task again (it must call its role)"
    ),
) -> None:
    """Settle a side effect left in doubt (a tool-in-doubt, or a ctx.once whose run died
    mid-effect) as you found it at the target: --did-not-happen removes the step's claim
    and sends the task again (the effect runs once); --happened keeps the claim (never run
    again) and removes the dead letter. A settled event records who decided what."""
    done = run_async(settle_seq(settings(), seq, happened=happened, by=by, ingress=ingress))
    console.print(markup(done), highlight=False, soft_wrap=True)
