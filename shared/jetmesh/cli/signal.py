"""``jetmesh signal``: send a signal to a workflow step that waits for it (``ctx.wait_for``)."""

from __future__ import annotations

import msgspec
import typer

from .common import console, run_async, settings
from .ingress import cli_client
from .render import markup


def signal(
    workflow: str = typer.Argument(..., help="the workflow id"),
    name: str = typer.Argument(..., help="the signal's name, e.g. approval"),
    body: str = typer.Argument("null", help="the signal's payload, as JSON"),
    caller: str = typer.Option("cli-user", "--as", help="caller subject for the token"),
    tenant: str = typer.Option("default", help="caller tenant"),
    scope: list[str] = typer.Option([], help="caller scope (repeatable)"),
    token: str = typer.Option("", help="use this caller token instead of minting one"),
    step: str = typer.Option(
        "", help="the waiting task's step (default: the one step whose waiting event names NAME)"
    ),
) -> None:
    """Store signal NAME with BODY in WORKFLOW's log, signed, for the caller (--as or
    --token). A step waiting for it goes on; one that waits later finds it there."""
    try:
        raw = msgspec.Raw(msgspec.json.encode(msgspec.json.decode(body)))
    except msgspec.DecodeError as exc:
        raise typer.BadParameter(f"body is not JSON: {exc}") from None

    async def go() -> None:
        async with cli_client(settings()) as mesh:
            tok = token or mesh.mint_token(caller, tenant=tenant, scopes=scope)
            await mesh.signal(workflow, name, raw, token=tok, step=step or None)

    run_async(go())
    console.print(markup(f"signal {name} sent to workflow {workflow}"), highlight=False)
