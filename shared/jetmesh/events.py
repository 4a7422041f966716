"""Workflow events: what happened, where, for whom, and how long it took.

Every event is a signed envelope of ``kind="event"`` on ``<prefix>.event.<workflow>.<kind>``
in the MESH_EVENTS stream. The audit trail, ``jetmesh events`` and replay read them back.

Events also record what a re-run of the workflow needs (``jetmesh replay --rerun``): the
task's body in ``accepted`` and ``call``, the result in ``completed`` (a call's reply is
its callee's ``completed``; an error reply, or none, is the caller's ``reply``), a side
effect's recorded result in ``effect`` and a model's reply in ``model``.
"""

from __future__ import annotations

from typing import Final

import msgspec

__all__ = [
    "ACCEPTED",
    "CALL",
    "CALL_REFUSED",
    "CANCELLED",
    "CHUNK",
    "COMPLETED",
    "DENIED",
    "EFFECT",
    "EVENT_TYPE",
    "FAILED",
    "KINDS",
    "MODEL",
    "REJECTED",
    "REPLY",
    "RETRIED",
    "SIGNAL",
    "SIGNALLED",
    "STARTED",
    "TIMED_OUT",
    "WAITING",
    "Event",
    "EventPayload",
]

EVENT_TYPE: Final = "mesh.Event/1"

ACCEPTED: Final = "accepted"
"""Ingress accepted a new workflow from a caller."""
STARTED: Final = "started"
"""A replica started a task's handler."""
CALL: Final = "call"
"""A handler sent a task to another agent."""
REPLY: Final = "reply"
"""A handler received an error in reply to one of its calls, or no reply (``reason``
:data:`TIMED_OUT` or :data:`CANCELLED`), or took a reply from its journal (a re-run). A
result is in the log once, in its callee's ``completed``: a caller with a step ledger
writes no ``reply`` for it (without one, it does)."""
COMPLETED: Final = "completed"
"""A handler returned; its reply was sent."""
FROM_LEDGER: Final = "from-ledger"
"""The ``reason`` of a ``completed`` that did not run the handler: the step was already done,
its recorded result was sent again (a redelivery, or a caller asking again)."""
TIMED_OUT: Final = "timeout"
"""The ``reason`` of a ``reply`` without a body: the call's time ran out, no reply came."""
CANCELLED: Final = "cancelled"
"""The ``reason`` of a ``reply`` without a body: the calling handler was cancelled while it
waited (a fan-out failing fast, a replica draining)."""
RETRIED: Final = "retried"
"""A handler failed (or asked to retry) and the task will be delivered again."""
FAILED: Final = "failed"
"""A task failed for good: out of deliveries, or rejected by its handler."""
REJECTED: Final = "rejected"
"""A message failed verification; it was dead-lettered with the reason."""
EFFECT: Final = "effect"
"""A handler's side effect (``ctx.once``) ran, or its recorded result was used."""

SIGNAL: Final = "signal"
"""A signal sent to the workflow from outside (an approval, a callback), named by ``key``,
its payload in ``body`` (:mod:`jetmesh.signals`)."""
WAITING: Final = "waiting"
"""A step began waiting for the signal named by ``key`` (``ctx.wait_for``)."""
SIGNALLED: Final = "signalled"
"""A waiting step received its signal (``key``; the payload in ``body``, for replay)."""
MODEL: Final = "model"
"""A handler's model call (``ctx.model``): provider in ``target``, ``model``, tokens,
``cost_usd``, latency in ``duration_ms``, the reply in ``body`` and the request's
``digest``; a failed call has ``reason`` and no body."""

CALL_REFUSED: Final = "call-refused"
"""A call broke the plan's limits and was not sent: the agent in ``target``, the step it
would have had in ``callee_step``, ``plan-too-deep`` or ``fan-out-exceeded`` in
``reason`` (or, from the call's pre-flight, ``body-rejected`` or ``no-replicas``). (Not in
:data:`KINDS`: trees show it as a note, like a handler's own events.)"""

DENIED: Final = "denied"
"""A hop asked for a scope outside the caller's scopes ∩ its agent's grant
(``ctx.require_scope``): ``reason`` ``scope-denied``, ``key`` the scope, ``detail`` who
lacks it, ``target`` what it was for."""

CHUNK: Final = "chunk"
"""A partial result a handler streamed (``ctx.stream``): its index in ``key``, the chunk in
``body`` (:mod:`jetmesh.runtime.streaming`)."""

KINDS: Final = (
    ACCEPTED, STARTED, CALL, REPLY, COMPLETED, RETRIED, FAILED, REJECTED, EFFECT,
    SIGNAL, WAITING, SIGNALLED, MODEL, DENIED, CHUNK,
)  # fmt: skip


class EventPayload(msgspec.Struct, frozen=True, kw_only=True):
    """A payload recorded in an event, for replay (``jetmesh replay``)."""

    type: str
    """The payload's type name, as in ``Envelope.type``."""
    value: msgspec.Raw
    """The payload's JSON, as sent (null when omitted)."""
    omitted: bool = False
    """Left out: with it, the event would exceed the maximum payload."""


class Event(msgspec.Struct, frozen=True, kw_only=True):
    """The body of an event envelope."""

    __mesh_type__ = EVENT_TYPE

    kind: str
    agent: str
    at: float
    """Unix time of the event."""
    instance: str = ""
    """The replica (process) that emitted it."""
    task: str | None = None
    """Id of the task envelope this event is about."""
    parent: str | None = None
    """Id of the task that caused that task (None for the workflow's first task)."""
    step: str = ""
    """The step key of the task this event is about (the emitting task's own step)."""
    target: str | None = None
    """For ``call``, ``reply`` and ``accepted``: the agent the task was sent to; for
    ``model``: the provider."""
    callee_step: str = ""
    """For ``call`` and ``reply``: the step key of the task that was sent; for ``model``:
    the model call's step key (``<step>/model.<n>``)."""
    type: str = ""
    """The payload type involved."""
    duration_ms: float | None = None
    caller: str = ""
    """Subject of the verified caller the work ran for."""
    attempt: int = 1
    reason: str = ""
    """For ``rejected``, ``retried`` and ``failed``: a stable code. For ``reply``: the
    error's reason code when the call was answered with an error."""
    detail: str = ""
    key: str = ""
    """For ``effect``: the key given to ``ctx.once``; for ``signal``, ``waiting`` and
    ``signalled``: the signal's name."""
    body: EventPayload | None = None
    """The payload, recorded for replay: the task for ``accepted`` and ``call``, the reply
    for ``reply``, the result for ``completed``, the effect's result for ``effect``, the
    model's reply for ``model``."""
    model: str = ""
    """For ``model``: the model that answered."""
    tokens_in: int | None = None
    """For ``model``: input (prompt) tokens, as the provider counted them."""
    tokens_out: int | None = None
    """For ``model``: output tokens."""
    cost_usd: float | None = None
    """For ``model``: the call's cost by the price table (None: the table lacks the model)."""
    digest: str = ""
    """For ``model``: a hash of the request, so a re-run can tell a changed prompt."""
    message: str = ""
    """For ``rejected`` and ``dead-letter-failed``: the refused message's ``Nats-Msg-Id`` as
    its sender set it, so that the sender can tell which of its messages it was; at most
    256 characters, a non-printable character escaped as ``\\xNN``, ``\\uNNNN`` or
    ``\\UNNNNNNNN`` and a backslash as ``\\\\``. Chosen by the sender: never used for a
    decision."""
    seq: int | None = None
    """For ``rejected`` and ``dead-letter-failed``: the refused task's sequence in the tasks
    stream, when it was delivered from there (None for a reply or a signal); for a
    ``failed`` event in ``_unverified``: the sequence of the task that ran out of
    deliveries without its replica keeping it."""
