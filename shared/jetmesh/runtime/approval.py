"""Human approval: a step that does something irreversible waits for a person to approve
or deny it, durably, with a timeout and an escalation.

:func:`require_approval` gives the approval a step key of its own
(``<task step>/approval.<n>``), records an ``approval-requested`` event that names the
workflow, that step and what is asked, and waits (``ctx.wait_for``) for the signal
:func:`approval_signal` derives from the step. A person answers with ``jetmesh approve
WORKFLOW STEP`` or ``jetmesh deny WORKFLOW STEP`` (or any signed ``signal`` event carrying a
:class:`Verdict`). The wait survives the death of its replica (see docs/durability.md); a
verdict sent before the wait began counts, and the first one sent wins.

If nobody answers within ``timeout``, the request goes to ``escalate_to`` (a role that gets
an :class:`ApprovalRequest` with the whole context and answers a :class:`Verdict`), or,
without one, :class:`~jetmesh.ApprovalTimeout` is raised.

Example:
    >>> decision = await require_approval(                                  # doctest: +SKIP
    ...     ctx, f"refund {req.amount} EUR to {req.customer}", timeout=4 * 3600,
    ...     escalate_to="finance-lead")
    >>> if not decision.approved:                                            # doctest: +SKIP
    ...     return Outcome(refunded=False, reason=f"denied by {decision.by}")
    >>> await ctx.once("refund", pay, returns=Receipt)                       # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable
from typing import Any, Protocol, TypeVar

import msgspec

from .. import events as ev
from .._exceptions import ApprovalTimeout, SignalTimeout
from ..envelope import encode, type_name
from ..identity.tokens import Caller
from ..signals import Signal

T = TypeVar("T")

APPROVAL_REQUESTED = "approval-requested"
"""Event: a step asks for approval (its step in ``callee_step``, the signal's name in
``key``, what is asked in ``detail``)."""
APPROVAL_GRANTED = "approval-granted"
"""Event: the step was approved (who, and any note, in ``detail``)."""
APPROVAL_DENIED = "approval-denied"
"""Event: the step was denied (who, and the reason, in ``detail``)."""
APPROVAL_ESCALATED = "approval-escalated"
"""Event: nobody answered in time; the request went to the role in ``target``."""
APPROVAL_TIMED_OUT = "approval-timed-out"
"""Event: nobody answered in time and there is no escalation (``ApprovalTimeout``)."""


class Verdict(msgspec.Struct, frozen=True, kw_only=True):
    """A decision on an approval: the payload of its signal, and an escalation's reply."""

    __mesh_type__ = "mesh.Verdict/1"

    approved: bool
    note: str = ""
    """Why (a deny's reason, an approval's remark)."""
    approval: str = ""
    """For a tool call's approval: the approval token that ``jetmesh approve`` minted,
    bound to the exact request (:mod:`jetmesh.identity.approvals`)."""


class ApprovalRequest(msgspec.Struct, frozen=True, kw_only=True):
    """What an escalation role is sent when nobody decided in time."""

    __mesh_type__ = "mesh.ApprovalRequest/1"

    workflow: str
    step: str
    """The approval's step key (``jetmesh approve WORKFLOW STEP`` still works)."""
    agent: str
    """The agent whose step waits."""
    action: str
    """What is asked."""
    detail: str = ""
    caller: str = ""
    """Whom the workflow runs for."""
    waited_s: float = 0.0
    """How long it waited for a person."""


class Approval(msgspec.Struct, frozen=True, kw_only=True):
    """The decision :func:`require_approval` returns."""

    __mesh_type__ = "mesh.Approval/1"

    approved: bool
    by: str
    """Who decided: the verified caller of the verdict's signal (the person), or the
    escalation role."""
    step: str
    note: str = ""
    escalated: bool = False
    """Decided by the escalation role after the timeout."""
    token: str = ""
    """The approval token the verdict carried (a tool call's approval), or ""."""


class ApprovalContext(Protocol):
    """What asking for an approval takes of a handler's context
    (:class:`~jetmesh.runtime.context_base.ContextBase` is one): its place in the
    workflow, a step key, events, a signal to wait for and a call to escalate with."""

    @property
    def workflow(self) -> str: ...

    @property
    def agent(self) -> str: ...

    @property
    def caller(self) -> Caller: ...

    def next_step(self, agent: str) -> str: ...

    async def emit_event(self, kind: str, **fields: Any) -> None: ...

    async def wait_for(self, name: str, *, returns: type[T], timeout: float) -> Signal[T]: ...

    def call(
        self, agent: str, body: Any, *, returns: type[T], timeout: float | None = None
    ) -> Awaitable[T]: ...


def approval_signal(step: str) -> str:
    """The name of the signal that decides the approval at ``step`` (a subject-safe
    token: step keys hold ``/`` and ``.``, signal names may not)."""
    return "approval-" + hashlib.blake2b(step.encode(), digest_size=8).hexdigest()


async def require_approval(
    ctx: ApprovalContext,
    action: str,
    *,
    timeout: float,
    escalate_to: str | None = None,
    detail: str = "",
    escalation_timeout: float | None = None,
    ask: msgspec.Struct | None = None,
) -> Approval:
    """Wait for a person to approve or deny ``action``; return the decision.

    A deny is a decision (``approved`` False), not an error. The wait is durable:
    ``timeout`` counts from the first time this step waited, across replicas.

    Args:
        ctx: the handler's context.
        action: what is asked, as a person should read it.
        timeout: seconds to wait for a person.
        escalate_to: a role to ask when nobody answered in time (it gets an
            :class:`ApprovalRequest` and answers a :class:`Verdict`).
        detail: more context for the person and the escalation.
        escalation_timeout: the escalation call's deadline (default ``call_timeout_s``).
        ask: what exactly is asked, recorded as the ``approval-requested`` event's body
            (a tool call's :class:`~jetmesh.toolgate.ToolApprovalAsk`, which ``jetmesh
            approve`` binds the approval to).

    Raises:
        ApprovalTimeout: nobody answered in time, and no ``escalate_to``.
        MeshError: the escalation call failed (``CallFailed``, ``MeshTimeout``).
    """
    step = ctx.next_step("approval")
    name = approval_signal(step)
    asked = f"{action}; {detail}" if detail else action
    body = None
    if ask is not None:
        body = ev.EventPayload(type=type_name(type(ask)), value=msgspec.Raw(encode(ask)))
    await ctx.emit_event(
        APPROVAL_REQUESTED,
        key=name,
        callee_step=step,
        detail=f"{asked} (jetmesh approve|deny {ctx.workflow} {step})"[:1024],
        body=body,
    )
    try:
        got = await ctx.wait_for(name, returns=Verdict, timeout=timeout)
    except SignalTimeout:
        if escalate_to is None:
            await ctx.emit_event(
                APPROVAL_TIMED_OUT, key=name, callee_step=step, detail=f"after {timeout:g} s"
            )
            raise ApprovalTimeout(name, step=step, action=action, timeout=timeout) from None
        await ctx.emit_event(
            APPROVAL_ESCALATED,
            key=name,
            callee_step=step,
            target=escalate_to,
            detail=f"nobody decided within {timeout:g} s: asking {escalate_to}",
        )
        request = ApprovalRequest(
            workflow=ctx.workflow,
            step=step,
            agent=ctx.agent,
            action=action,
            detail=detail,
            caller=ctx.caller.subject,
            waited_s=timeout,
        )
        verdict = await ctx.call(escalate_to, request, returns=Verdict, timeout=escalation_timeout)
        decision = Approval(
            approved=verdict.approved, by=escalate_to, step=step, note=verdict.note, escalated=True
        )
    else:
        decision = Approval(
            approved=got.value.approved,
            by=got.caller or got.sender,
            step=step,
            note=got.value.note,
            token=got.value.approval,
        )
    note = f": {decision.note}" if decision.note else ""
    await ctx.emit_event(
        APPROVAL_GRANTED if decision.approved else APPROVAL_DENIED,
        key=name,
        callee_step=step,
        detail=f"by {decision.by}{note}"[:1024],
    )
    return decision
