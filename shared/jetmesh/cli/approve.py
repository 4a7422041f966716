"""``jetmesh approve`` and ``jetmesh deny``: decide a step that waits for a person's
approval (:func:`jetmesh.patterns.require_approval`)."""

from __future__ import annotations

import msgspec
import typer

from ..client import MeshClient
from ..event_log import read_events
from ..runtime.approval import (
    APPROVAL_DENIED,
    APPROVAL_ESCALATED,
    APPROVAL_GRANTED,
    APPROVAL_REQUESTED,
    APPROVAL_TIMED_OUT,
    Verdict,
    approval_signal,
)
from ..toolgate.approving import approval_token, describe, tool_ask
from .common import console, err_console, run_async, settings
from .ingress import cli_client
from .render import markup

_DECIDED = {
    APPROVAL_GRANTED: "approved",
    APPROVAL_DENIED: "denied",
    APPROVAL_ESCALATED: "escalated",
    APPROVAL_TIMED_OUT: "timed out",
}


async def decide(
    mesh: MeshClient,
    workflow: str,
    step: str,
    verdict: Verdict,
    token: str,
    told: list[str] | None = None,
) -> str:
    """Send ``verdict`` for the approval at ``step``, signed for the caller of ``token``, if
    the workflow asked for one there and it is still open; returns why not ("" when sent).
    ``jetmesh approve``, ``jetmesh deny`` and the demo decide through it.

    A tool call's approval (``ctx.tool``) gets an approval token for the caller of
    ``token``, bound to the tool, its args' digest, the workflow and the step; what was
    decided is appended to ``told``, when given."""
    logged = [e for e in await read_events(mesh, workflow) if e.verified]  # forged: not asked
    asked = [e.event for e in logged if e.event.kind == APPROVAL_REQUESTED]
    if not any(e.callee_step == step for e in asked):
        pending = ", ".join(sorted({e.callee_step for e in asked})) or "none"
        return (
            f"no approval was requested at step {step} of workflow {workflow} (asked at: {pending})"
        )
    done = [e for e in logged if e.event.kind in _DECIDED and e.event.callee_step == step]
    if done:
        last = done[-1].event
        return f"step {step} is {_DECIDED[last.kind]} already ({last.detail})"
    request = next(e for e in asked if e.callee_step == step)
    try:
        ask = tool_ask(request)
    except ValueError as exc:
        return str(exc)
    if ask is not None:
        if told is not None:
            told.append(describe(ask))
        if verdict.approved:
            minted = await approval_token(
                mesh, ask, workflow=workflow, step=step, person_token=token
            )
            verdict = msgspec.structs.replace(verdict, approval=minted)
    await mesh.signal(workflow, approval_signal(step), verdict, token=token, step=request.step)
    return ""


def _decide(
    workflow: str,
    step: str,
    verdict: Verdict,
    caller: str,
    tenant: str,
    scope: list[str],
    token: str,
) -> None:
    """Send ``verdict`` for the approval at ``step`` (see :func:`decide`)."""

    told: list[str] = []

    async def go() -> str:
        async with cli_client(settings()) as mesh:
            tok = token or mesh.mint_token(caller, tenant=tenant, scopes=scope)
            return await decide(mesh, workflow, step, verdict, tok, told)

    problem = run_async(go())
    if problem:
        err_console.print(f"[red]error:[/red] {markup(problem)}", soft_wrap=True, highlight=False)
        raise typer.Exit(1)
    word = "approved" if verdict.approved else "denied"
    who = "the token's caller" if token else caller
    console.print(markup(f"{word} step {step} of workflow {workflow} as {who}"), highlight=False)
    for line in told:
        console.print(f"{word}: {markup(line)}", soft_wrap=True, highlight=False)


def approve(
    workflow: str = typer.Argument(..., help="the workflow id"),
    step: str = typer.Argument(
        ..., help="the approval's step, as its approval-requested event names it"
    ),
    note: str = typer.Option("", help="a remark kept with the decision"),
    caller: str = typer.Option("cli-user", "--as", help="who approves (caller subject)"),
    tenant: str = typer.Option("default", help="caller tenant"),
    scope: list[str] = typer.Option([], help="caller scope (repeatable)"),
    token: str = typer.Option("", help="use this caller token instead of minting one"),
) -> None:
    """Approve the step STEP of WORKFLOW that waits for a person (see the
    approval-requested event in `jetmesh events WORKFLOW`)."""
    _decide(workflow, step, Verdict(approved=True, note=note), caller, tenant, scope, token)


def deny(
    workflow: str = typer.Argument(..., help="the workflow id"),
    step: str = typer.Argument(
        ..., help="the approval's step, as its approval-requested event names it"
    ),
    reason: str = typer.Option("", help="why (the waiting step gets it)"),
    caller: str = typer.Option("cli-user", "--as", help="who denies (caller subject)"),
    tenant: str = typer.Option("default", help="caller tenant"),
    scope: list[str] = typer.Option([], help="caller scope (repeatable)"),
    token: str = typer.Option("", help="use this caller token instead of minting one"),
) -> None:
    """Deny the step STEP of WORKFLOW that waits for a person's approval."""
    _decide(workflow, step, Verdict(approved=False, note=reason), caller, tenant, scope, token)
