"""A call whose answer was refused for the caller token it carries ends at once with that
reason (:meth:`jetmesh.calls.PendingCalls.refuse`), and only by its callee's reply."""

from __future__ import annotations

import asyncio

import pytest

from jetmesh import CallFailed, ForgedReply
from jetmesh.calls import PendingCalls
from jetmesh.envelope import Envelope, new_id


def task(to: str = "billing") -> Envelope:
    return Envelope(
        id=new_id(), kind="task", workflow="W1", sender="triage", to=to, created=0.0, step="s"
    )


def reply(to: Envelope, *, sender: str = "billing", step: str = "s") -> Envelope:
    return Envelope(
        id=new_id(),
        kind="reply",
        workflow=to.workflow,
        sender=sender,
        to=to.sender,
        created=0.0,
        step=step,
        parent=to.id,
    )


async def test_the_call_fails_with_the_refusal() -> None:
    pending, sent = PendingCalls(), task()
    future = pending.expect(sent)
    assert pending.refuse(reply(sent), "billing", "expired-token", "caller token expired")
    with pytest.raises(CallFailed) as failed:
        await future
    assert (failed.value.agent, failed.value.reason) == ("billing", "expired-token")
    assert "caller token expired" in str(failed.value)
    assert len(pending) == 0
    assert not pending.refuse(reply(sent), "billing", "expired-token", "again"), "already ended"


async def test_only_the_callee_can_end_it() -> None:
    pending, sent = PendingCalls(), task()
    future = pending.expect(sent)
    with pytest.raises(ForgedReply):
        pending.refuse(reply(sent, sender="kb"), "kb", "expired-token", "")
    with pytest.raises(ForgedReply):
        pending.refuse(reply(sent, step="other"), "billing", "expired-token", "")
    assert not future.done(), "the call keeps waiting for its real answer"
    assert pending.resolve(reply(sent), "billing")
    assert (await asyncio.wait_for(future, 1)).parent == sent.id


def test_nobody_waits() -> None:
    assert not PendingCalls().refuse(reply(task()), "billing", "expired-token", "")
