"""``ctx.tool``: call a tool through the tool gateway, never holding its credential.

The agent side of :mod:`jetmesh.toolgate`. A tool call is a ``ctx.call`` to the ``toolgate``
role (journaled and de-duplicated by its step key like any call), carrying a
:class:`~jetmesh.toolgate.ToolRequest`. Before anything is sent, when a policy is loaded
(``settings.policy_file``), the agent checks its own grant: a tool its role lacks, or whose
scope is not in ``ctx.scopes``, is refused here with :class:`~jetmesh.ScopeDenied` and a
``denied`` event. That check, not the model, is what stops a model output (say, a prompt
injected into a tool's result) asking for a tool or a scope the agent does not have.

A call that needs a person's approval (an irreversible tool, as the policy says, or
``approval=True``) first waits for it durably (``require_approval``): the person sees the
tool, the arguments and their SHA-256 in the ``approval-requested`` event and in ``jetmesh
approve``, which mints an approval token bound to exactly that and sends it with the
verdict. The token goes to the gateway with the request; a deny raises
:class:`~jetmesh.ApprovalDenied`.

Example:
    >>> receipt = await ctx.tool("refund", Refund(order="A-1", amount_eur=240.0),
    ...                          returns=RefundReceipt, approval_timeout=4 * 3600,
    ...                          action="refund 240 EUR to alice")       # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any, Protocol, TypeVar

import msgspec

from .. import events as ev
from .._exceptions import (
    ApprovalDenied,
    ApprovalExpired,
    ApprovalInvalid,
    ApprovalMismatch,
    ApprovalMissing,
    ApprovalReused,
    CallerInvalid,
    CallFailed,
    CredentialMissing,
    McpToolError,
    McpUnauthorized,
    ScopeDenied,
    ToolInDoubt,
    ToolNotGranted,
    ToolRefused,
    ToolScopeDenied,
    UnknownTool,
)
from ..policy.model import Policy
from ..telemetry import traces
from ..toolgate.wire import TOOLGATE, ToolApprovalAsk, ToolRequest, ToolResult, args_digest
from .approval import ApprovalContext, require_approval

T = TypeVar("T")

DEFAULT_APPROVAL_TIMEOUT_S = 4 * 3600.0
"""How long a tool call waits for a person's approval by default."""

REFUSALS: dict[str, type[ToolRefused]] = {
    cls.code: cls
    for cls in (
        UnknownTool,
        ToolNotGranted,
        CallerInvalid,
        ToolScopeDenied,
        CredentialMissing,
        ApprovalMissing,
        ApprovalDenied,
        ApprovalMismatch,
        ApprovalReused,
        ApprovalInvalid,
        ApprovalExpired,
        ToolInDoubt,
        McpToolError,
        McpUnauthorized,
    )
}
"""The gateway's refusal codes and the exception each raises in the agent."""


class ToolCallContext(ApprovalContext, Protocol):
    """What a tool call takes of the handler's context
    (:class:`~jetmesh.runtime.context_base.ContextBase` is one): an approval's needs,
    and the scope check."""

    async def require_scope(self, scope: str, *, what: str = "") -> None: ...


async def call_tool(
    ctx: ToolCallContext,
    name: str,
    args: Any,
    *,
    returns: type[T],
    policy: Policy | None,
    approval: bool = False,
    action: str = "",
    approval_timeout: float = DEFAULT_APPROVAL_TIMEOUT_S,
    timeout: float | None = None,
) -> T:
    """Run tool ``name`` with ``args`` through the tool gateway, in an ``execute_tool``
    span; see :meth:`Context.tool`."""
    with traces.tool(name):
        return await _call_tool(
            ctx,
            name,
            args,
            returns=returns,
            policy=policy,
            approval=approval,
            action=action,
            approval_timeout=approval_timeout,
            timeout=timeout,
        )


async def _call_tool(
    ctx: ToolCallContext,
    name: str,
    args: Any,
    *,
    returns: type[T],
    policy: Policy | None,
    approval: bool,
    action: str,
    approval_timeout: float,
    timeout: float | None,
) -> T:
    plain = msgspec.to_builtins(args)
    if not isinstance(plain, dict):
        raise TypeError(f"tool {name}: args must encode as a JSON object, not {type(plain)}")
    digest = args_digest(plain)
    needs = approval
    if policy is not None:
        role = policy.roles.get(ctx.agent)
        grant = role.tools.get(name) if role is not None else None
        if grant is None:
            detail = f"tool {name} is not granted to the agent {ctx.agent} by the policy"
            await ctx.emit_event(
                ev.DENIED,
                reason=ScopeDenied.reason,
                key=f"tool:{name}",
                target=f"tool {name}",
                detail=detail,
            )
            raise ScopeDenied(f"tool:{name}", detail)
        if grant.scope is not None:
            await ctx.require_scope(grant.scope, what=f"tool {name}")
        needs = needs or grant.needs_approval(plain)
    token = ""
    if needs:
        token = await _approved(ctx, name, plain, digest, action, approval_timeout)
    request = ToolRequest(tool=name, args=plain, approval=token)
    try:
        result = await ctx.call(TOOLGATE, request, returns=ToolResult, timeout=timeout)
    except CallFailed as exc:
        refused = REFUSALS.get(exc.reason)
        if refused is None:
            raise
        raise refused(name, exc.message) from exc
    return msgspec.json.decode(result.value, type=returns)


async def _approved(
    ctx: ToolCallContext,
    name: str,
    args: dict[str, Any],
    digest: str,
    action: str,
    timeout: float,
) -> str:
    """Wait for a person's approval of this call; its approval token."""

    shown = msgspec.json.encode(args, order="sorted").decode()
    decision = await require_approval(
        ctx,
        action or f"tool {name} {shown}",
        timeout=timeout,
        detail=f"tool {name}, args {shown}, sha256 {digest}",
        ask=ToolApprovalAsk(tool=name, args=args, args_sha256=digest, agent=ctx.agent),
    )
    if not decision.approved:
        because = f": {decision.note}" if decision.note else ""
        raise ApprovalDenied(
            name, f"denied by {decision.by}{because}", by=decision.by, note=decision.note
        )
    if not decision.token:
        raise ApprovalMissing(
            name, f"approved by {decision.by}, but the verdict carries no approval token"
        )
    return decision.token
