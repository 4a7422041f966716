"""``jetmesh publish``: send a task as a caller and wait for the result."""

from __future__ import annotations

import msgspec
import typer

from ..envelope import new_id
from .common import console, run_async, settings
from .ingress import cli_client
from .render import json_text, text


def publish(
    agent: str = typer.Argument(..., help="the agent role to send the task to"),
    body: str = typer.Argument(..., help="the task body, as JSON"),
    type_: str = typer.Option("", "--type", help="payload type name, e.g. Ticket"),
    caller: str = typer.Option("cli-user", "--as", help="caller subject for the token"),
    tenant: str = typer.Option("default", help="caller tenant"),
    scope: list[str] = typer.Option([], help="caller scope (repeatable)"),
    token: str = typer.Option("", help="use this caller token instead of minting one"),
    timeout: float = typer.Option(30.0, help="seconds to wait for the result"),
) -> None:
    """Start a workflow: mint a caller token (or use --token), send BODY to AGENT, print
    the reply and the workflow id (see `jetmesh events <workflow>`)."""
    try:
        raw = msgspec.Raw(msgspec.json.encode(msgspec.json.decode(body)))
    except msgspec.DecodeError as exc:
        raise typer.BadParameter(f"body is not JSON: {exc}") from None
    workflow = new_id()

    async def go() -> bytes:
        async with cli_client(settings()) as mesh:
            tok = token or mesh.mint_token(caller, tenant=tenant, scopes=scope)
            result = await mesh.request(
                agent,
                raw,
                token=tok,
                returns=msgspec.Raw,
                timeout=timeout,
                workflow=workflow,
                type_=type_,
            )
            return bytes(result)

    result = run_async(go())
    console.print(json_text(result) or text(result), soft_wrap=True)
    console.print(f"workflow {workflow}")
