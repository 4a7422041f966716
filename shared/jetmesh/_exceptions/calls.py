"""Errors of calls and waits: the callee failed or was never asked, a budget, a redrive
refused, a signal that did not come, a model provider. (The whole tree is drawn in
:mod:`jetmesh._exceptions`.)"""

from __future__ import annotations

from .base import MeshError


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

    _not_done = "not sent"

    def __init__(self, seq: int, reason: str, detail: str) -> None:
        super().__init__(f"dead letter {seq} {self._not_done}: {reason}: {detail}")
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


class SettleRefused(RedriveRefused):
    """A dead letter that ``jetmesh dlq settle`` will not settle: its step holds no side
    effect in doubt (``nothing-in-doubt``), or a claim changed while it was being settled
    (``claim-changed``: the run that held it recorded it meanwhile). Nothing is removed or
    sent. A dead letter whose task does not verify is refused as a redrive is
    (:class:`RedriveRefused`)."""

    _not_done = "not settled"


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
