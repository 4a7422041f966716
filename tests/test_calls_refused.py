"""A call whose answer was refused for the caller token it carries ends at once with that
reason (:meth:`jetmesh.calls.PendingCalls.refuse`), and only by its callee's reply."""

from __future__ import annotations

import asyncio

import pytest

from jetmesh import CallFailed, ExpiredToken, ForgedReply, RejectedMessage, UnknownKey
from jetmesh.calls import PendingCalls
from jetmesh.envelope import Envelope, new_id
from jetmesh.events import EVENT_TYPE


def task(to: str = "billing") -> Envelope:
    return Envelope(
        id=new_id(), kind="task", workflow="W1", sender="triage", to=to, created=0.0, step="s"
    )


def reply(to: Envelope, *, sender: str = "billing", step: str = "s", type_: str = "") -> Envelope:
    return Envelope(
        id=new_id(),
        kind="reply",
        workflow=to.workflow,
        sender=sender,
        to=to.sender,
        created=0.0,
        step=step,
        parent=to.id,
        type=type_,
    )


def refused(envelope: Envelope | None, exc: RejectedMessage | None = None) -> RejectedMessage:
    """``exc`` (an expired token by default) as the verifier raises it: with the envelope
    only when its sender signed it."""
    exc = exc or ExpiredToken("caller token expired")
    if envelope is not None:
        exc.envelope = envelope  # type: ignore[attr-defined]
    return exc


async def test_the_call_fails_with_the_refusal() -> None:
    pending, sent = PendingCalls(), task()
    future = pending.expect(sent)
    assert pending.refuse(refused(reply(sent)))
    with pytest.raises(CallFailed) as failed:
        await future
    assert (failed.value.agent, failed.value.reason) == ("billing", "expired-token")
    assert failed.value.error_type == "ExpiredToken"
    assert "caller token expired" in str(failed.value)
    assert len(pending) == 0
    assert not pending.refuse(refused(reply(sent))), "already ended"


async def test_only_the_callee_can_end_it() -> None:
    pending, sent = PendingCalls(), task()
    future = pending.expect(sent)
    with pytest.raises(ForgedReply):
        pending.refuse(refused(reply(sent, sender="kb")))
    with pytest.raises(ForgedReply):
        pending.refuse(refused(reply(sent, step="other")))
    assert not future.done(), "the call keeps waiting for its real answer"
    assert pending.resolve(reply(sent), "billing")
    assert (await asyncio.wait_for(future, 1)).parent == sent.id


async def test_other_refusals_leave_the_call_waiting() -> None:
    pending, sent = PendingCalls(), task()
    future = pending.expect(sent)
    assert not pending.refuse(refused(None)), "not signed by its sender: nothing known"
    assert not pending.refuse(refused(reply(sent), UnknownKey("no certificate")))
    assert not pending.refuse(refused(reply(sent, type_=EVENT_TYPE))), "a streamed chunk"
    assert not future.done()


def test_nobody_waits() -> None:
    assert not PendingCalls().refuse(refused(reply(task())))
