"""The jetmesh exception tree.

Every error jetmesh raises derives from :class:`MeshError`::

    MeshError
    ├── ConfigError                   bad settings, missing keys or certificates
    │   ├── PolicyError               a policy file that cannot be read or does not validate
    │   └── NotProvisioned            a stream, consumer, registry or certificate the admin
    │                                 step makes is missing (``jetmesh up``)
    ├── ServerStartError (+ RuntimeError)  an embedded server did not come up
    ├── MeshTimeout (+ TimeoutError)  a call's deadline passed
    ├── CallFailed                    the called agent answered with an error
    ├── CallNotSent                   ``ctx.call``'s pre-flight refused the call: nothing sent
    │   ├── NoReplicas                no replica serves the role, none seen lately
    │   └── BodyRejected              the body fails the callee's published input schema
    ├── BudgetExceeded                a model call would pass a caller's or tenant's budget
    ├── PublishFailed                 the stream refused a message, or no stream takes it
    │   └── PublishRefused            the policy or nats-server does not let this client
    │                                 publish there (``jetmesh publish`` to a role not called)
    ├── RedriveRefused                a dead letter whose task does not verify as the
    │   │                             original of the role it is filed for; nothing sent
    │   └── NotATask                  a dead letter whose bytes are no task envelope (a
    │                                 refused reply, event or raw message): nothing to send
    ├── RegistryUnavailable           a certificate could not be read (servers away, a
    │                                 cluster electing a leader): nothing decided, try later
    ├── RejectedMessage               a message failed verification; ``reason`` is a stable code
    │   ├── Oversized                 body over ``max_payload_bytes``
    │   ├── Unsigned                  no signature headers, or an unknown scheme
    │   ├── UnknownKey                key id not in the registry
    │   ├── UntrustedCertificate      certificate not signed by the mesh root, or malformed
    │   ├── ExpiredKey                certificate expired (or not yet valid)
    │   ├── RevokedKey                key id revoked in the registry
    │   ├── BadSignature              signature does not match the published bytes
    │   ├── Malformed                 not a JSON envelope
    │   ├── Misaddressed              subject does not match ``to``, or sender not allowed there
    │   ├── Stale                     ``created`` too old or in the future
    │   ├── Replayed                  an envelope id seen before
    │   ├── ForgedReply               a reply not signed by the role called, or not for that
    │   │                             call (workflow, step, call id)
    │   ├── SignalRefused             a signal from a signer the wait does not accept, or
    │   │                             bound to another step
    │   ├── InvalidToken              caller token missing, forged or not from an ingress
    │   │   └── ExpiredToken          caller token (or a delegation link) expired
    │   ├── BadDelegation             chain missing, broken, spliced, or not from an ingress
    │   │   └── WidenedDelegation     a hop handed on more scopes, or longer, than it got
    │   ├── SchemaViolation           body does not match the handler's input type
    │   └── PlanLimitExceeded         a call beyond the plan's limits, refused before it is sent
    │       ├── PlanTooDeep           its step would nest deeper than ``max_call_depth``
    │       └── FanOutExceeded        one task would make more than ``max_fan_out`` calls
    ├── MemoryRefused                 working memory refused a write
    │   ├── MemoryConflict            the value changed since it was read (compare-and-set)
    │   ├── MemoryTooLarge            the value is over the size limit
    │   ├── MemoryDenied              Redis refused the role a key outside its patterns
    │   └── MemoryFull                Redis is at its ``maxmemory`` and refused a write
    ├── EffectInDoubt                 a side effect was started and its outcome is unknown
    ├── ScopeDenied                   a hop asked for a scope outside caller ∩ agent grant
    ├── ToolRefused                   a tool call not carried out; ``reason`` is a stable code
    │   ├── UnknownTool               the tool gateway has no tool of that name
    │   ├── ToolNotGranted            the requesting role has no such tool in the policy
    │   ├── CallerInvalid             the caller token no longer verifies at the gateway
    │   ├── ToolScopeDenied           the tool's scope is not delegated to the request
    │   ├── CredentialMissing         the gateway holds no credential for the tool
    │   ├── ApprovalMissing           an approval is needed and none came with the request
    │   ├── ApprovalDenied            the person asked denied it
    │   ├── ApprovalMismatch          the approval is for another workflow, step, tool or args
    │   ├── ApprovalReused            the approval was used before (it is single-use)
    │   ├── ApprovalInvalid           forged, malformed, not from an ingress, or revoked
    │   │   └── ApprovalExpired       past its expiry
    │   ├── ToolInDoubt (+ EffectInDoubt)  a run of the tool for this step was left
    │   │                             unrecorded, and the tool says no way to settle it
    │   └── McpToolError              an MCP server's tool answered with an error
    │       └── McpUnauthorized       the MCP server refused the gateway's credential
    ├── SignalTimeout (+ TimeoutError)  no signal within a wait's timeout
    │   └── ApprovalTimeout           nobody approved or denied in time, and no escalation
    ├── ModelError                    a model provider refused a request, or answered nonsense
    │   └── ModelUnavailable          unreachable, timed out, overloaded or rate limited
    └── HandlerControl                raised by handlers to steer delivery
        ├── Retry                     redeliver after ``delay`` seconds
        └── Reject                    dead-letter now with ``reason``, no retry
"""

from __future__ import annotations

from pathlib import Path


class MeshError(Exception):
    """Root of every jetmesh error."""


class ConfigError(MeshError):
    """Settings, keys or certificates are missing or invalid."""


class PolicyError(ConfigError):
    """A policy file that cannot be read or does not validate.

    ``problems`` lists each as ``<file>: <where>: <what is wrong>``.
    """

    def __init__(self, path: Path | str, problems: list[str]) -> None:
        self.path = Path(path)
        self.problems = problems
        super().__init__(f"invalid policy {path}:\n" + "\n".join(f"  {p}" for p in problems))


class NotProvisioned(ConfigError):
    """Something a role uses but may not make is missing on the servers: a stream, its
    consumer, the registry or its certificate there. The admin step makes them: ``jetmesh
    up``, or ``jetmesh admin provision`` for servers started otherwise."""


class ServerStartError(MeshError, RuntimeError):
    """An embedded server did not come up; the message ends with the tail of its log."""


class MeshTimeout(MeshError, TimeoutError):
    """A call did not get its reply before the deadline."""


class CallFailed(MeshError):
    """The called agent replied with an error.

    Attributes:
        agent: the agent that failed.
        error_type: the class name of the error on the remote side.
        reason: the error's stable code (``max-deliveries``, ``plan-too-deep``, ...; ""
            when the reply named none).
    """

    def __init__(self, agent: str, error_type: str, message: str, reason: str = "") -> None:
        super().__init__(f"{agent} failed: {error_type}: {message}")
        self.agent = agent
        self.error_type = error_type
        self.message = message
        self.reason = reason


class CallNotSent(MeshError):
    """``ctx.call``'s pre-flight check (``call_preflight``, :mod:`jetmesh.runtime.preflight`)
    found that the call cannot succeed: nothing was sent, and a ``call-refused`` event
    with the ``reason`` says so.

    Attributes:
        agent: the role called.
        reason: a stable code (the class's ``code``).
        detail: what was found.
    """

    code = "call-not-sent"

    def __init__(self, agent: str, detail: str) -> None:
        super().__init__(f"{self.code}: {agent}: {detail}")
        self.agent = agent
        self.detail = detail

    @property
    def reason(self) -> str:
        return self.code


class NoReplicas(CallNotSent):
    """No replica of the role answered the service API (the servers said nobody listens)
    and none was seen within the positive cache's lifetime (``call_preflight =
    "served"``). A handler that lets it escape is retried with its backoff: replicas
    may come back."""

    code = "no-replicas"

    def __init__(self, agent: str, detail: str = "") -> None:
        super().__init__(agent, detail or f"no replica of {agent} answered")


class BodyRejected(CallNotSent, ValueError):
    """The body does not match the input schema the callee publishes for its type
    (``call_preflight`` ``"schema"`` or ``"served"``). A handler that lets it escape
    fails at once (no retry: the same body would be rejected again).

    Attributes:
        type: the body's wire type.
        errors: each violation, the field's path first (``text: 5 is not of type
            'string'``).
    """

    code = "body-rejected"

    def __init__(self, agent: str, type_: str, errors: list[str]) -> None:
        super().__init__(agent, f"{type_} does not match its input schema: " + "; ".join(errors))
        self.type = type_
        self.errors = errors


class BudgetExceeded(MeshError):
    """A model call would pass a budget of the policy file (``[budgets.caller.<subject>]``
    or ``[budgets.tenant.<tenant>]``): the provider is not asked, a ``model`` event with
    ``reason`` ``budget-exceeded`` records it, and a handler that lets it escape fails at
    once (no retry within the window: the same call would be refused again).

    Attributes:
        scope: ``caller`` or ``tenant``.
        name: the caller's subject or the tenant.
        limit: ``tokens`` or ``cost_usd``.
        used: what was spent in the window before this call.
        allowed: the budget.
        window: the window, for people (``day 2026-12-02T00:00:00Z``).
        asked: what the call may add (its estimated input and its ``max_tokens``, or
            their price).
    """

    reason = "budget-exceeded"

    def __init__(
        self,
        scope: str,
        name: str,
        limit: str,
        used: float,
        allowed: float,
        window: str,
        *,
        asked: float = 0,
    ) -> None:
        self.detail = (
            f"the {scope} {name} has used {used:g} of its {allowed:g} {limit} in the "
            f"{window} window, and this call may add {asked:g}"
        )
        super().__init__(f"{self.reason}: {self.detail}")
        self.scope = scope
        self.name = name
        self.limit = limit
        self.used = used
        self.allowed = allowed
        self.window = window
        self.asked = asked


class PublishFailed(MeshError):
    """The stream refused a message (or no stream takes its subject)."""


class PublishRefused(PublishFailed):
    """This client may not publish on the subject: the policy in force does not list the
    role among those its identity ``calls`` (checked before anything is sent), or
    nats-server refused the publish (a permissions violation, reported at once instead of
    waiting for a reply that cannot come).

    Attributes:
        identity: who publishes (``cli``, or another ingress).
        subject: where it may not publish.
    """

    def __init__(self, identity: str, subject: str, detail: str) -> None:
        super().__init__(f"{identity} may not publish to {subject}: {detail}")
        self.identity = identity
        self.subject = subject
        self.detail = detail


class RedriveRefused(MeshError):
    """A dead letter that ``jetmesh dlq redrive`` will not send again: its task does not
    verify as one sent to the role whose dead-letter subject holds it (the signature with
    the kept headers, the signer as sender, the addressee, the chain and caller token), or
    the ingress that redrives may not send to that role. Nothing is sent; a
    ``redrive-refused`` event records it.

    Attributes:
        seq: the dead letter's sequence number.
        reason: a stable code: the verification's (``bad-signature``, ``misaddressed``,
            ...), ``not-a-task``, ``misfiled`` or ``not-permitted``.
        detail: what did not hold.
    """

    def __init__(self, seq: int, reason: str, detail: str) -> None:
        super().__init__(f"dead letter {seq} not sent: {reason}: {detail}")
        self.seq = seq
        self.reason = reason
        self.detail = detail


class NotATask(RedriveRefused):
    """A dead letter whose bytes are not a task envelope: a refused reply or event, or raw
    bytes that were never one (``jetmesh publish --raw``). There is no task to send
    again: nothing is sent and the dead letter stays (``jetmesh dlq show`` prints what it
    holds). ``reason`` is ``not-a-task``."""

    def __init__(self, seq: int, detail: str) -> None:
        super().__init__(seq, "not-a-task", detail)


class RegistryUnavailable(MeshError):
    """The certificate a message names could not be read from the registry (servers away,
    a cluster electing a leader): nothing was decided about the message, and its receiver
    takes it again later (a task is sent back with its delivery's backoff) instead of
    refusing it."""


class RejectedMessage(MeshError):
    """A message was refused before reaching a handler.

    Attributes:
        reason: a stable machine-readable code (the class's ``code``), also used in
            dead letters and audit events.
    """

    code = "rejected"

    def __init__(self, detail: str) -> None:
        super().__init__(f"{self.code}: {detail}")
        self.detail = detail

    @property
    def reason(self) -> str:
        return self.code


class Oversized(RejectedMessage):
    code = "oversized"


class Unsigned(RejectedMessage):
    code = "unsigned"


class UnknownKey(RejectedMessage):
    code = "unknown-key"


class UntrustedCertificate(RejectedMessage):
    code = "untrusted-certificate"


class ExpiredKey(RejectedMessage):
    code = "expired-key"


class RevokedKey(RejectedMessage):
    """The key id was revoked (``jetmesh keys revoke``): its certificate no longer counts."""

    code = "revoked-key"


class BadSignature(RejectedMessage):
    code = "bad-signature"


class Malformed(RejectedMessage):
    code = "malformed"


class Misaddressed(RejectedMessage):
    code = "misaddressed"


class Stale(RejectedMessage):
    code = "stale"


class Replayed(RejectedMessage):
    code = "replayed"


class ForgedReply(RejectedMessage):
    """A reply that is not the called role's answer to that call: signed by another role,
    or for another workflow or step than the task it names as its parent."""

    code = "forged-reply"


class SignalRefused(RejectedMessage):
    """A signal a waiting step does not take: signed by a role the wait does not accept
    signals from (ingresses only, by default), or bound to another step."""

    code = "signal-refused"


class InvalidToken(RejectedMessage):
    code = "invalid-token"


class ExpiredToken(InvalidToken):
    code = "expired-token"


class BadDelegation(RejectedMessage):
    """A task's delegation chain is missing, does not verify, or does not lead from an
    ingress to this task (a hop removed, reordered, spliced from another chain)."""

    code = "bad-delegation"


class WidenedDelegation(BadDelegation):
    """A hop of the chain handed on a scope it was not given, or a later expiry."""

    code = "delegation-widened"


class SchemaViolation(RejectedMessage):
    code = "schema-violation"


class PlanLimitExceeded(RejectedMessage):
    """A call that would break the limits that keep a runaway plan off the bus.

    Raised by ``ctx.call`` (when awaited) and ``ctx.gather`` before anything is sent, and
    used by a replica to refuse a task that arrives nested too deep. A handler that lets
    it escape fails at once with its ``reason`` (no retry: the same plan would break the
    same limit), and so does a caller that lets the resulting ``CallFailed`` escape.

    Attributes:
        step: the step key the refused call would have had.
        limit: the limit it would break.
    """

    code = "plan-limit-exceeded"

    def __init__(self, detail: str, *, step: str, limit: int) -> None:
        super().__init__(detail)
        self.step = step
        self.limit = limit


class PlanTooDeep(PlanLimitExceeded):
    """The call's step would nest deeper than ``max_call_depth`` calls."""

    code = "plan-too-deep"


class FanOutExceeded(PlanLimitExceeded):
    """The task would make more than ``max_fan_out`` calls."""

    code = "fan-out-exceeded"


class MemoryRefused(MeshError):
    """Working memory refused a write."""


class MemoryConflict(MemoryRefused):
    """A compare-and-set write found another version than the one it expected.

    Attributes:
        key: the Redis key.
        expected: the version the writer held.
        actual: the version stored now.
    """

    def __init__(self, key: str, expected: int, actual: int) -> None:
        super().__init__(f"{key}: expected version {expected}, found {actual}")
        self.key = key
        self.expected = expected
        self.actual = actual


class MemoryTooLarge(MemoryRefused, ValueError):
    """A value is over the memory's size limit."""


class MemoryDenied(MemoryRefused):
    """Redis refused the role's user a key outside its patterns (another role's memory):
    the server's ACL, generated from the policy. A handler that lets it escape fails at
    once (no retry: the same key would be refused again) with a ``denied`` event.

    Attributes:
        key: the Redis key.
        reason: ``memory-denied``.
        detail: what was refused, and Redis's answer.
    """

    reason = "memory-denied"

    def __init__(self, key: str, detail: str) -> None:
        super().__init__(f"{self.reason}: {detail}")
        self.key = key
        self.detail = detail


class MemoryFull(MemoryRefused):
    """Redis is at its memory limit (``maxmemory``, policy ``noeviction``: nothing jetmesh
    keeps is dropped to make room) and refused a write (``OOM``). The step fails and is
    retried with the task's backoff: keys expire, or the operator raises the limit.

    Attributes:
        key: the Redis key written.
        reason: ``memory-full``.
        detail: what was refused, and Redis's answer.
    """

    reason = "memory-full"

    def __init__(self, key: str, detail: str) -> None:
        super().__init__(f"{self.reason}: {detail}")
        self.key = key
        self.detail = detail


class EffectInDoubt(MeshError):
    """A side effect guarded by ``ctx.once`` was claimed by a run that did not finish:
    it may or may not have happened, and running it again could do it twice."""


class ScopeDenied(MeshError):
    """A hop asked for a scope it does not have: the caller's scopes ∩ the agent's grant.

    Attributes:
        scope: the scope asked for.
        reason: ``scope-denied``.
        detail: who lacks it (the caller, the agent, or both).
    """

    reason = "scope-denied"

    def __init__(self, scope: str, detail: str) -> None:
        super().__init__(f"{self.reason}: {detail}")
        self.scope = scope
        self.detail = detail


class ToolRefused(MeshError):
    """A tool call was not carried out: the tool did not run, and will not for this
    request as it stands. Raised by ``ctx.tool`` (refused in the agent, or answered so by
    the tool gateway) and by the gateway's checks; a handler that lets it escape fails at
    once with its ``reason`` (no retry: the same request would be refused again).

    Attributes:
        tool: the tool asked for.
        reason: a stable code (the class's ``code``), also in the ``tool-refused`` event.
        detail: who asked, for whom, and why it was refused.
    """

    code = "tool-refused"

    def __init__(self, tool: str, detail: str) -> None:
        super().__init__(f"{self.code}: {tool}: {detail}")
        self.tool = tool
        self.detail = detail

    @property
    def reason(self) -> str:
        return self.code


class UnknownTool(ToolRefused):
    """The tool gateway has no tool of that name."""

    code = "unknown-tool"


class ToolNotGranted(ToolRefused):
    """The requesting role (the task's sender) has no such tool in the policy, or may not
    call the tool gateway."""

    code = "tool-not-granted"


class CallerInvalid(ToolRefused):
    """The caller token no longer verifies when the gateway checks it again (expired
    meanwhile, or its ingress key revoked)."""

    code = "caller-invalid"


class ToolScopeDenied(ToolRefused):
    """The scope the tool needs is not among the scopes delegated to the request."""

    code = "scope-not-delegated"


class CredentialMissing(ToolRefused):
    """The tool gateway holds no credential for the tool (environment or secrets file)."""

    code = "credential-missing"


class ApprovalMissing(ToolRefused):
    """The call needs a person's approval (an irreversible tool) and came without one."""

    code = "approval-missing"


class ApprovalDenied(ToolRefused):
    """The person asked to approve the call denied it.

    Attributes:
        by: who denied it.
        note: their reason.
    """

    code = "approval-denied"

    def __init__(self, tool: str, detail: str, *, by: str = "", note: str = "") -> None:
        super().__init__(tool, detail)
        self.by = by
        self.note = note


class ApprovalMismatch(ToolRefused):
    """The approval was given for another workflow, step, tool or arguments."""

    code = "approval-mismatch"


class ApprovalReused(ToolRefused):
    """The approval was used before: each approves one request, once."""

    code = "approval-reused"


class ApprovalInvalid(ToolRefused):
    """The approval token is forged or malformed, not EdDSA, not minted by an ingress, or
    its key is unknown or revoked."""

    code = "approval-invalid"


class ApprovalExpired(ApprovalInvalid):
    """The approval token is past its expiry (or not valid yet)."""

    code = "approval-expired"


class ToolInDoubt(ToolRefused, EffectInDoubt):
    """The tool gateway found a run of the tool for this request step that a gateway
    started and never recorded (it died mid-call): the call may or may not have happened.
    The tool declares neither ``find`` nor ``idempotent``, so the gateway does not run it
    again; a person checks the target and decides (docs/toolgate.md)."""

    code = "tool-in-doubt"


class McpToolError(ToolRefused):
    """An MCP server's tool (:mod:`jetmesh.toolgate.mcp`) answered its call with an error
    (``isError``), or its server answered with a protocol error (an unknown tool, invalid
    arguments)."""

    code = "mcp-tool-error"


class McpUnauthorized(McpToolError):
    """An MCP server refused the tool gateway's credential for the tool (HTTP 401 or 403)."""

    code = "mcp-unauthorized"


class SignalTimeout(MeshError, TimeoutError):
    """A step waited for a signal (``ctx.wait_for``) longer than its timeout.

    Attributes:
        name: the signal waited for.
    """

    def __init__(self, name: str, message: str) -> None:
        super().__init__(message)
        self.name = name


class ApprovalTimeout(SignalTimeout):
    """Nobody approved or denied a step within its timeout, and it names no role to
    escalate to (:func:`jetmesh.patterns.require_approval`).

    Attributes:
        step: the approval's step key (what ``jetmesh approve WORKFLOW STEP`` names).
        action: what was asked.
        timeout: the seconds it waited, counted from its first wait.
    """

    def __init__(self, name: str, *, step: str, action: str, timeout: float) -> None:
        super().__init__(name, f"no decision on {action!r} (step {step}) within {timeout:g} s")
        self.step = step
        self.action = action
        self.timeout = timeout


class ModelError(MeshError):
    """A model provider refused a request (bad key, bad request), or its answer could not
    be read.

    Attributes:
        provider: the provider's name (``openai``, ``anthropic``, ``offline-deterministic``).
        status: the HTTP status of the answer (0 when there was none).
        code: a stable code for events: ``model-error`` or ``model-unavailable``.
    """

    code = "model-error"

    def __init__(self, provider: str, message: str, *, status: int = 0) -> None:
        super().__init__(f"{provider}: {message}" + (f" (HTTP {status})" if status else ""))
        self.provider = provider
        self.status = status
        self.message = message


class ModelUnavailable(ModelError):
    """The provider could not be reached, timed out, was overloaded (5xx) or rate limited
    (429) on every try; the request itself may be fine, and a later retry may succeed."""

    code = "model-unavailable"


class HandlerControl(MeshError):
    """Base of exceptions that handlers raise to steer delivery."""


class Retry(HandlerControl):
    """Ask for redelivery of the current task after ``delay`` seconds.

    Counts as a delivery: after ``max_deliver`` the task is dead-lettered.
    """

    def __init__(self, delay: float = 1.0, reason: str = "retry requested") -> None:
        super().__init__(reason)
        self.delay = delay
        self.reason = reason


class Reject(HandlerControl):
    """Dead-letter the current task now, with ``reason``; the caller gets an error reply."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
