"""Signals: a message from outside a running workflow to a step that waits for it (a
person's approval, an outside system's callback).

A signal is a signed event of kind ``signal`` in the workflow's log (MESH_EVENTS), named by
its ``key``, carrying its payload in ``body``, and sent for a caller (the token of whoever
sends it: the handler can see who approved). Waiting for one holds no state only in memory:
the waiting step reads the workflow's log from the start (by direct gets, polling: a role
may not create consumers, :mod:`jetmesh.bus.direct`), so a signal sent before the step
began waiting (or while its replica was dead) counts; the task stays alive with the
replica's in-progress acks; and a re-run after a crash finds the signal in the log and the
wait's start in the step ledger, so its timeout is not restarted.

Who may signal: a signal is bound to one waiting step (its ``step``, the waiting task's
step key) in one workflow (its subject and envelope), under one name (its ``key``), and a
wait takes it only from a signer it accepts: any ingress (the CLI, a gateway: what acts
for a person) by default, or the roles named in ``ctx.wait_for(..., senders=...)`` or in
the policy's ``signal_senders`` for the waiting role. The
signer is the verified certificate's owner, never a field of the event. A signal by any
other signer is refused (:class:`~jetmesh.SignalRefused`: a dead letter and a
``rejected`` event) and the step waits on; a compromised agent that read a person's
caller token in the log cannot approve, deny or block with it. The first accepted signal
decides: the same signal stored again cannot change what the step got, and a signal for
another step is never taken by this one.

Example:
    >>> await client.signal(workflow, "approval", Approval(ok=True), token=token)  # doctest: +SKIP
    >>> got = await ctx.wait_for("approval", returns=Approval, timeout=3600)     # doctest: +SKIP
    >>> got.value.ok, got.caller                                                   # doctest: +SKIP
    (True, 'bob')
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

import msgspec

from . import events as ev
from ._exceptions import ConfigError, PublishFailed, RejectedMessage, SignalRefused, SignalTimeout
from .bus.direct import MessageStore, Stored, next_stored, read_from
from .dead_letters import DeadLettering, reject
from .envelope import decode_body, type_name
from .mesh_protocols import Verifying

log = logging.getLogger("jetmesh.signals")

T = TypeVar("T")


class Signalling(DeadLettering, Verifying, MessageStore, Protocol):
    """What sending and waiting for signals take: the workflow's log read and verified,
    a signal stored, and a refused one dead-lettered."""


@dataclass(frozen=True)
class Signal(Generic[T]):
    """A signal as received: its payload and who sent it, verified."""

    name: str
    value: T
    sender: str
    """The agent or ingress whose certificate signed it (e.g. ``cli``)."""
    caller: str
    """The caller it was sent for (the person who approved, say)."""
    at: float
    """When it was sent (Unix time)."""


class ReceivedSignal(msgspec.Struct, frozen=True):
    """A signal as a waiting step received it: recorded in its ``signalled`` event, so
    that a re-run (``jetmesh replay --rerun``) gets the same signal back."""

    __mesh_type__ = "mesh.ReceivedSignal/1"

    value: msgspec.Raw
    sender: str
    caller: str
    at: float

    @classmethod
    def of(cls, signal: Signal[Any]) -> ReceivedSignal:
        return cls(
            value=msgspec.Raw(msgspec.json.encode(signal.value)),
            sender=signal.sender,
            caller=signal.caller,
            at=signal.at,
        )

    def decode(self, name: str, returns: type[T]) -> Signal[T]:
        value = msgspec.json.decode(self.value, type=returns)
        return Signal(name=name, value=value, sender=self.sender, caller=self.caller, at=self.at)


async def waiting_step(mesh: Signalling, workflow: str, name: str) -> str:
    """The step of ``workflow`` that waits (or waited) for signal ``name``, from the
    verified ``waiting`` events of its log.

    Raises:
        ConfigError: no step, or more than one, waits for ``name``: name the step.
    """
    steps: set[str] = set()
    subject = mesh.subjects.event(workflow, ev.WAITING)
    async for stored in read_from(mesh, mesh.settings.events_stream, subject):
        try:
            verified = await mesh.verify(stored, stored_at=stored.stored_at, audit=True)
            event = decode_body(verified.envelope, ev.Event)
        except RejectedMessage:
            continue
        if event.key == name and event.agent == verified.certificate.name:
            steps.add(event.step)
    if len(steps) != 1:
        found = ", ".join(sorted(steps)) or "none yet"
        raise ConfigError(
            f"signal {name!r} of workflow {workflow}: name the waiting step "
            f"(steps waiting for it: {found})"
        )
    return steps.pop()


async def send_signal(
    mesh: Signalling, workflow: str, name: str, value: Any, *, token: str, step: str
) -> None:
    """Store signal ``name`` with ``value`` for the waiting ``step`` in ``workflow``'s
    log; returns once stored.

    Raises:
        InvalidToken: ``token`` is not a valid caller token.
        PublishFailed: the stream did not store it, or ``value`` is too large for it.
    """
    caller = await mesh.verify_token(token)
    raw = value if isinstance(value, msgspec.Raw) else msgspec.Raw(msgspec.json.encode(value))
    event = ev.Event(
        kind=ev.SIGNAL,
        agent=mesh.name,
        at=time.time(),
        instance=mesh.instance,
        key=name,
        step=step,
        caller=caller.subject,
        body=ev.EventPayload(
            type="" if isinstance(value, msgspec.Raw) else type_name(type(value)), value=raw
        ),
    )
    envelope = mesh.event_envelope(workflow, event, caller=token)
    if decode_body(envelope, ev.Event).body != event.body:  # the payload would not fit
        raise PublishFailed(f"signal {name!r}: payload over {mesh.settings.max_payload_bytes} B")
    async with asyncio.timeout(mesh.settings.call_timeout_s):
        await mesh.store_sealed(mesh.subjects.event(workflow, ev.SIGNAL), envelope)


POLL_MIN_S = 0.02
POLL_MAX_S = 0.25
"""A wait with nothing new in the log asks again after ``POLL_MIN_S``, doubling up to
``POLL_MAX_S``: a signal is seen at most a quarter of a second after it is stored, for at
most four direct gets a second per waiting step."""


async def wait_signal(
    mesh: Signalling,
    workflow: str,
    name: str,
    returns: type[T],
    *,
    deadline: float,
    step: str,
    senders: frozenset[str] | None = None,
) -> Signal[T]:
    """The first signal ``name`` for ``step`` of ``workflow`` stored before ``deadline``
    (Unix time) by an accepted signer, sent before or after this call, waiting until
    ``deadline``.

    Accepted signers: the roles in ``senders``, or any ingress when it is None. A signal
    for this step by another signer is refused and audited (dead letter and ``rejected``
    event, once per stored signal thanks to the dead letter's id) and does not count.
    Signals that fail verification are skipped (they were audited when refused elsewhere;
    here they simply do not count), and so are signals for other steps. A wait that
    starts after ``deadline`` (a re-run whose replica died near the end of the wait) still
    reads what was stored before it.

    Raises:
        SignalTimeout: none was stored before ``deadline``.
    """
    subject = mesh.subjects.event(workflow, ev.SIGNAL)
    timed_out = SignalTimeout(name, f"no signal {name!r} for workflow {workflow}")
    after, pause = 0, POLL_MIN_S
    while True:
        stored = await next_stored(mesh, mesh.settings.events_stream, subject, after)
        if stored is None:  # everything stored so far is read
            left = deadline - time.time()
            if left <= 0:
                raise timed_out
            await asyncio.sleep(min(pause, left))
            pause = min(pause * 2, POLL_MAX_S)
            continue
        after, pause = stored.seq, POLL_MIN_S
        if stored.stored_at > deadline:  # the log is in order: nothing after this counts
            raise timed_out
        try:
            verified = await mesh.verify(stored, stored_at=stored.stored_at, audit=True)
            event = decode_body(verified.envelope, ev.Event)
            if event.kind != ev.SIGNAL or event.key != name or event.step != step:
                continue
            signer = verified.certificate
            if not (signer.name in senders if senders is not None else signer.ingress):
                await _refuse(mesh, stored, verified.envelope, step, signer.name, senders)
                continue
            if event.body is None:
                continue
            value = msgspec.json.decode(event.body.value, type=returns)
        except (RejectedMessage, msgspec.DecodeError, msgspec.ValidationError):
            continue
        return Signal(
            name=name,
            value=value,
            sender=verified.certificate.name,
            caller=verified.caller.subject if verified.caller else "",
            at=event.at,
        )


async def _refuse(
    mesh: Signalling,
    stored: Stored,
    envelope: Any,
    step: str,
    signer: str,
    senders: frozenset[str] | None,
) -> None:
    accepts = ", ".join(sorted(senders)) if senders is not None else "an ingress"
    exc = SignalRefused(f"signal for step {step!r} signed by {signer}; the wait accepts {accepts}")
    exc.envelope = envelope  # type: ignore[attr-defined]
    try:
        await reject(mesh, stored.subject, stored.data, stored.headers, exc)
    except Exception as dl_exc:  # the wait goes on; the signal does not count either way
        log.error("refused signal in %s not dead-lettered: %s", envelope.workflow, dl_exc)
