"""The tool gateway: the one role that holds tool credentials and runs tools, for the
agents that ask it and on behalf of their callers.

It is an ordinary agent role (``toolgate``). The runtime has already verified a request's
signature, its sender's certificate and its caller token before :meth:`Toolgate.handle`
runs; the gateway then, in this order:

1. verifies the caller token again, now (``caller-invalid``);
2. checks the policy: the sender (the task's verified sender) is a role that may call the
   gateway and has the tool in its ``tools`` (``tool-not-granted``); the tool's scope is
   among the scopes delegated to the request (:func:`delegated_scopes`,
   ``scope-not-delegated``); the gateway runs a tool of that name (``unknown-tool``);
3. for a call that needs a person's approval (the policy's ``approval``,
   ``approve_above``), or that brings one: verifies the approval token (EdDSA, its key an
   ingress, not revoked, not expired: ``approval-invalid``, ``approval-expired``), that it
   approves this workflow, this task's step, this tool and these arguments
   (``approval-mismatch``), and spends its ``jti`` once in Redis (``approval-reused``);
4. takes the tool's credential, for this call only (``credential-missing``), and runs it
   at most once for the request step, by its own ledger (``ctx.once``, keyed by the
   request's workflow, step and tool, in the gateway's own Redis keys): claimed before the
   tool runs, recorded ``done`` with the result before the reply. The same step again (a
   redelivery, or a caller's re-run that sends it again) gets the recorded result, with a
   ``tool`` event ``recorded`` and no second run. A claim left by a gateway that died
   mid-call is in doubt: a tool that declares ``find`` asks its target by the idempotency
   key (found: ``reconciled``, not run; not found: run with the same key), one that
   declares ``idempotent`` runs again with the same key, and any other is not run again:
   :class:`~jetmesh.ToolInDoubt` (``tool-in-doubt``) for a person to decide. The tool gets
   the idempotency key ``<workflow>/<step>`` all the same, for its target: the second line.

A refusal (the gateway's, or a tool's own :class:`~jetmesh.ToolRefused`, such as an MCP
server's: :mod:`jetmesh.toolgate.mcp`) raises the matching class after a ``tool-refused`` event
(who, on whose behalf, which tool, why): the replica answers the caller with an error
reply carrying the code, without retrying, and goes on serving. Every run records a
``tool`` event: tool, sender, caller and tenant, the args' digest, the approval's ``jti``,
the credential's fingerprint, the outcome and the duration. The credential itself is never
returned, logged or put in an event. A ``tool`` event is stored before the gateway goes on
(the run recorded ``done``, the reply): a gateway killed after a tool ran leaves either
its ``tool`` event or a claim in doubt, never a run the log does not show.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass

import jwt
import msgspec

from .. import events as ev
from .._exceptions import (
    ApprovalInvalid,
    ApprovalMismatch,
    ApprovalMissing,
    ApprovalReused,
    CallerInvalid,
    CredentialMissing,
    EffectInDoubt,
    RejectedMessage,
    ToolInDoubt,
    ToolNotGranted,
    ToolRefused,
    ToolScopeDenied,
    UnknownTool,
)
from ..addresses import TOKEN_RE
from ..envelope import encode, type_name
from ..identity.approvals import ApprovalClaims, approval_key_id, verify_approval
from ..policy.model import Policy, RoleGrant, ToolGrant
from ..policy.scopes import effective_scopes
from ..runtime.agent import Agent
from ..runtime.context import Context
from ..runtime.context_base import ContextBase
from ..telemetry import traces
from .credentials import Credential, Credentials
from .registry import Tool, ToolCall, ToolRegistry
from .wire import (
    RECONCILED,
    RECORDED,
    TOOL,
    TOOL_REFUSED,
    TOOLGATE,
    ToolRecord,
    ToolRequest,
    ToolResult,
    args_digest,
)

log = logging.getLogger("jetmesh.toolgate")

_APPROVAL_STEP = "approval."


def delegated_scopes(ctx: ContextBase, sender: RoleGrant) -> frozenset[str]:
    """The scopes a tool request may use: what its signed delegation chain hands the
    gateway (the caller's scopes, narrowed by every hop that narrowed them, the sender's
    included) ∩ the sender role's grant in the policy."""
    return effective_scopes(ctx.delegated_scopes, sender.scopes)


def approval_key(prefix: str, workflow: str, gateway: str, jti: str) -> str:
    """Where a spent approval is marked: in the gateway's own namespace of the workflow
    (``<prefix>:wf:<workflow>:<gateway>:approval.<jti>``; the ``.`` keeps it apart from
    working-memory names, which cannot hold one)."""
    return f"{prefix}:wf:{workflow}:{gateway}:{_APPROVAL_STEP}{jti}"


def _parent(step: str) -> str:
    return step.rpartition("/")[0]


class Toolgate:
    """The gateway's checks and runs, over a policy, a tool registry and credentials."""

    def __init__(
        self,
        policy: Policy,
        tools: ToolRegistry,
        credentials: Credentials,
        *,
        name: str = TOOLGATE,
    ) -> None:
        self.policy = policy
        self.tools = tools
        self.credentials = credentials
        self.name = name

    def agent(self, *, concurrency: int | None = None) -> Agent:
        """The gateway's agent role, to run like any other (``jetmesh run``)."""
        agent = Agent(
            self.name,
            concurrency=concurrency,
            description="the tool gateway: runs tools with their credentials, for callers",
        )

        @agent.handler
        async def run_tool(request: ToolRequest, ctx: Context) -> ToolResult:
            return await self.handle(request, ctx)

        return agent

    async def handle(self, request: ToolRequest, ctx: Context) -> ToolResult:
        """Check ``request`` and run its tool (see the module's docstring).

        Raises:
            ToolRefused: one of its subclasses, after a ``tool-refused`` event.
        """
        digest = args_digest(request.args)
        record = ToolRecord(
            tool=request.tool,
            sender=ctx.task.sender,
            caller=ctx.caller.subject,
            tenant=ctx.caller.tenant,
            args_sha256=digest,
            outcome="",
        )
        try:
            await self._recheck_caller(request, ctx)
            grant = self._check_policy(request, ctx)
            tool = self._tool(request.tool)
            approval = await self._approval(request, ctx, grant, digest)
            credential = self._credential(tool)
        except ToolRefused as exc:
            refused = msgspec.structs.replace(
                record, outcome=exc.reason, detail=exc.detail[:1024], approval=_jti(request)
            )
            await self._record(ctx, TOOL_REFUSED, refused)
            raise
        record = msgspec.structs.replace(
            record,
            approval=approval.jti if approval else "",
            approved_by=approval.sub if approval else "",
            credential=credential.fingerprint if credential else "",
        )
        return await self._run(request, ctx, tool, credential, record)

    async def _run(
        self,
        request: ToolRequest,
        ctx: Context,
        tool: Tool,
        credential: Credential | None,
        record: ToolRecord,
    ) -> ToolResult:
        """Run the tool at most once for this request step (see the module's docstring):
        claimed, run, recorded as done before the reply, by the gateway's own ledger."""
        call = ToolCall(
            tool=tool.name,
            args=dict(request.args),
            credential=credential,
            key=f"{ctx.workflow}/{ctx.step}",
            caller=ctx.caller.subject,
            tenant=ctx.caller.tenant,
            sender=ctx.task.sender,
            approved_by=record.approved_by,
        )
        if not ctx.mesh.settings.step_ledger:  # no ledger, no promise: run it (the key only)
            return await self._invoke(ctx, tool, call, credential, record, again=False)
        doubt = _Run()

        async def run() -> ToolResult:
            doubt.ran = True
            return await self._invoke(ctx, tool, call, credential, record, again=doubt.asked)

        async def settle() -> ToolResult | None:
            doubt.asked = True
            if tool.find is None:
                return None  # idempotent by key: run it again with the same key
            started = time.perf_counter()
            found = await tool.find(call)
            if found is None:
                return None
            doubt.found = True
            return self._result(tool, found, record, _ms(started))

        try:
            result = await ctx.once(
                _effect_key(tool.name),
                run,
                returns=ToolResult,
                reconcile=settle if tool.settles_doubt else None,
            )
        except EffectInDoubt as exc:
            if doubt.ran:  # the tool's own error, not the gateway's claim
                raise
            detail = (
                f"in doubt: a run of {tool.name} for step {ctx.step} was started and never "
                f"recorded (its gateway stopped mid-call), so it may or may not have happened; "
                f"{tool.name} declares neither find nor idempotent, so it is not run again: a "
                "person checks the target and decides"
            )
            refused = msgspec.structs.replace(record, outcome=ToolInDoubt.code, detail=detail)
            await self._record(ctx, TOOL_REFUSED, refused)
            raise ToolInDoubt(tool.name, detail) from exc
        if doubt.found:
            await self._record(
                ctx,
                TOOL,
                msgspec.structs.replace(
                    record,
                    outcome=RECONCILED,
                    detail="in doubt (its gateway stopped mid-call); the target found it under "
                    "its idempotency key: recorded, not run again",
                    duration_ms=result.duration_ms,
                ),
            )
        elif not doubt.ran:
            traces.annotate({traces.FROM_RECORD: True})
            await self._record(
                ctx,
                TOOL,
                msgspec.structs.replace(
                    record,
                    outcome=RECORDED,
                    detail="from the record: it ran for this step already, not run again",
                    duration_ms=result.duration_ms,
                ),
            )
        return result

    async def _invoke(
        self,
        ctx: Context,
        tool: Tool,
        call: ToolCall,
        credential: Credential | None,
        record: ToolRecord,
        *,
        again: bool,
    ) -> ToolResult:
        """Call the tool's function once, with its ``tool`` event (``ok`` or ``error``)."""
        started = time.perf_counter()
        try:
            with traces.tool(tool.name, **{"jetmesh.tool.key": call.key}):
                value = await tool.fn(call)
        except Exception as exc:
            refused = isinstance(exc, ToolRefused)  # the tool's target refused it (typed)
            failed = exc.detail if isinstance(exc, ToolRefused) else f"{type(exc).__name__}: {exc}"
            if credential is not None:  # never let an error message carry the secret
                failed = failed.replace(credential.reveal(), credential.fingerprint)
            await self._record(
                ctx,
                TOOL_REFUSED if refused else TOOL,
                msgspec.structs.replace(
                    record,
                    outcome=exc.reason if isinstance(exc, ToolRefused) else "error",
                    detail=failed[:1024],
                    duration_ms=_ms(started),
                ),
            )
            raise
        result = self._result(tool, value, record, _ms(started))
        ran = msgspec.structs.replace(record, outcome="ok", duration_ms=result.duration_ms)
        if again:
            ran = msgspec.structs.replace(
                ran,
                detail="run again with the same idempotency key after a run in doubt "
                f"({'the target found none' if tool.find else 'the tool is idempotent'})",
            )
        await self._record(ctx, TOOL, ran)
        return result

    @staticmethod
    def _result(tool: Tool, value: object, record: ToolRecord, took: float) -> ToolResult:
        return ToolResult(
            tool=tool.name,
            value=msgspec.Raw(encode(value)),
            args_sha256=record.args_sha256,
            approval=record.approval,
            approved_by=record.approved_by,
            duration_ms=took,
        )

    # -- the checks, in order --------------------------------------------------------------

    async def _recheck_caller(self, request: ToolRequest, ctx: Context) -> None:
        try:
            again = await ctx.mesh.verify_token(ctx.task.caller)
        except RejectedMessage as exc:
            raise CallerInvalid(request.tool, f"the caller token: {exc}") from None
        if again.subject != ctx.caller.subject:
            raise CallerInvalid(request.tool, "the caller token names another caller now")

    def _check_policy(self, request: ToolRequest, ctx: Context) -> ToolGrant:
        sender, tool = ctx.task.sender, request.tool
        who = f"{sender} for {ctx.caller.subject}"
        role = self.policy.roles.get(sender)
        if role is None or role.ingress or self.name not in role.calls:
            raise ToolNotGranted(tool, f"{who}: {sender} is not a role that may call {self.name}")
        grant = role.tools.get(tool)
        if grant is None:
            raise ToolNotGranted(tool, f"{who}: the policy grants {sender} no tool {tool!r}")
        if grant.scope is not None and grant.scope not in delegated_scopes(ctx, role):
            held = sorted(delegated_scopes(ctx, role))
            raise ToolScopeDenied(
                tool,
                f"{who}: {tool} needs {grant.scope}, delegated: {', '.join(held) or 'none'}",
            )
        return grant

    def _tool(self, name: str) -> Tool:
        tool = self.tools.get(name)
        if tool is None:
            raise UnknownTool(name, f"{self.name} runs no tool {name!r}")
        return tool

    async def _approval(
        self, request: ToolRequest, ctx: Context, grant: ToolGrant, digest: str
    ) -> ApprovalClaims | None:
        tool = request.tool
        if not request.approval:
            if grant.needs_approval(request.args):
                raise ApprovalMissing(
                    tool,
                    f"{ctx.task.sender} for {ctx.caller.subject}: {tool} needs a person's "
                    "approval of this exact request, and none came with it",
                )
            return None
        claims = await self._verify(request.approval, tool, ctx)
        mismatched = [
            *([f"workflow {claims.workflow}"] if claims.workflow != ctx.workflow else []),
            *([f"tool {claims.tool}"] if claims.tool != tool else []),
            *([f"args sha256 {claims.args_sha256[:12]}"] if claims.args_sha256 != digest else []),
            *([f"step {claims.step}"] if not self._step_matches(claims.step, ctx.step) else []),
        ]
        if mismatched:
            raise ApprovalMismatch(
                tool,
                f"approval {claims.jti} by {claims.sub} is for {', '.join(mismatched)}, not "
                f"this request ({ctx.workflow} {ctx.step}, {tool}, args {digest[:12]})",
            )
        await self._spend(claims, ctx)
        return claims

    @staticmethod
    def _step_matches(approved: str, step: str) -> bool:
        """The approval's step belongs to the task that sends the request: both are steps
        of the same task (``<task>/approval.<n>`` and ``<task>/toolgate.<m>``)."""
        parent, _, last = approved.rpartition("/")
        number = last.removeprefix(_APPROVAL_STEP)
        return (
            parent == _parent(step)
            and last.startswith(_APPROVAL_STEP)
            and number.isdigit()
            and bool(parent)
        )

    async def _verify(self, token: str, tool: str, ctx: Context) -> ApprovalClaims:
        kid = approval_key_id(token, tool)
        try:
            issuer = await ctx.mesh.certificate_of(kid)
        except RejectedMessage as exc:
            raise ApprovalInvalid(tool, f"the approval's key: {exc}") from None
        claims = verify_approval(token, issuer, tool=tool, leeway_s=ctx.mesh.settings.clock_skew_s)
        if not TOKEN_RE.match(claims.jti):
            raise ApprovalInvalid(tool, f"approval id {claims.jti!r} is not a token")
        return claims

    async def _spend(self, claims: ApprovalClaims, ctx: Context) -> None:
        """Mark the approval used (SET NX with an expiry past the token's), by this step:
        a retry of the same request may present it again, nothing else may."""
        settings = ctx.mesh.settings
        key = approval_key(settings.subject_prefix, ctx.workflow, self.name, claims.jti)
        ttl = max(int(claims.exp + settings.clock_skew_s - time.time()) + 1, 1)
        redis = ctx.mesh.redis
        if await redis.set(key, ctx.step, nx=True, ex=ttl):
            return
        found = await redis.get(key)
        used_by = found.decode() if isinstance(found, bytes) else str(found)
        if used_by == ctx.step:
            return  # this request again (its first run failed): the same approval holds
        where = used_by if found is not None else "?"
        raise ApprovalReused(
            claims.tool,
            f"approval {claims.jti} by {claims.sub} was used already (by step {where})",
        )

    def _credential(self, tool: Tool) -> Credential | None:
        if not tool.needs_credential:
            return None
        credential = self.credentials.get(tool.name)
        if credential is None:
            raise CredentialMissing(tool.name, f"{self.name} holds no credential for {tool.name}")
        return credential

    async def _record(self, ctx: Context, kind: str, record: ToolRecord) -> None:
        approval = (
            f", approval {record.approval} by {record.approved_by}" if record.approval else ""
        )
        what = f"{record.tool} for {record.sender} on behalf of {record.caller} ({record.tenant})"
        if kind == TOOL:
            credential = f", credential {record.credential}" if record.credential else ""
            detail = f"{what}: {record.outcome}{approval}{credential}"
            if record.detail:
                detail += f": {record.detail}"
        else:
            detail = f"{what}: {record.outcome}: {record.detail}"
        await ctx.emit_event(
            kind,
            stored=kind == TOOL,  # what a tool did: in the log before it is recorded done
            target=record.tool,
            reason=record.outcome,
            digest=record.args_sha256,
            key=record.approval,
            duration_ms=record.duration_ms,
            detail=detail[:1024],
            body=ev.EventPayload(type=type_name(ToolRecord), value=msgspec.Raw(encode(record))),
        )


@dataclass
class _Run:
    """What one handling of a request did about its tool."""

    ran: bool = False
    """The tool's function was called."""
    asked: bool = False
    """A run left in doubt was found, and its tool's declaration asked to settle it."""
    found: bool = False
    """The target found the call that was in doubt (``find``)."""


def _effect_key(tool: str) -> str:
    """The gateway's ledger key for a tool's run in a request step (a token)."""
    if len(tool) <= 59:
        return f"tool-{tool}"
    return f"tool-{hashlib.sha256(tool.encode()).hexdigest()[:32]}"


def _jti(request: ToolRequest) -> str:
    """The approval's id, read without verification (for the record of a refusal)."""
    if not request.approval:
        return ""
    try:
        jti = jwt.decode(request.approval, options={"verify_signature": False}).get("jti", "")
    except Exception:
        return "unreadable"
    return str(jti)[:64] if isinstance(jti, str) else ""


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000
