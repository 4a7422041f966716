"""A reply lost on the way (a core NATS message: one in flight when its nats-server dies is
gone) is read back from the callee's signed ``completed`` event once the caller has waited
``reply_lost_after_s``; an error from its ``failed`` event; and never from an event another
role signed."""

from __future__ import annotations

import logging

import msgspec
import pytest

from jetmesh import Agent, CallFailed, Context, MeshClient, MeshTimeout, Reject
from jetmesh import events as ev
from jetmesh.envelope import Envelope, new_id
from jetmesh.lost_replies import recorded_reply
from jetmesh.runtime import failures
from jetmesh.runtime.replica import Replica
from tests.harness.mesh import Mesh

pytestmark = pytest.mark.integration


class Order(msgspec.Struct, frozen=True):
    __mesh_type__ = "test.Order/1"

    n: int


def desk() -> Agent:
    agent = Agent("desk")

    @agent.handler
    async def take(order: Order, ctx: Context) -> Order:
        if order.n < 0:
            raise Reject("no negative orders")
        return Order(order.n * 2)

    return agent


@pytest.fixture
def lost(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every reply a replica sends is lost (as with its server), after the step's end was
    recorded and logged; the ids of the tasks whose reply was dropped."""
    dropped: list[str] = []

    async def drop(self: Replica, task: Envelope, recorded: object) -> None:
        dropped.append(task.id)

    async def drop_error(mesh: object, task: Envelope, *args: object, **kw: object) -> None:
        dropped.append(task.id)

    monkeypatch.setattr(Replica, "_reply", drop)
    monkeypatch.setattr(failures, "error_reply", drop_error)
    return dropped


async def test_a_lost_reply_is_read_from_the_callees_completed_event(
    mesh: Mesh, lost: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    mesh.configure(reply_lost_after_s=0.3)
    await mesh.start_replicas(desk())
    client = await mesh.ingress()
    with caplog.at_level(logging.WARNING, logger="jetmesh.lost_replies"):
        got = await client.request(
            "desk", Order(21), token=mesh.token(), returns=Order, workflow=new_id(), timeout=10
        )
    assert got == Order(42)
    assert len(lost) == 1  # the reply really was dropped
    assert "its recorded answer is read from the log" in caplog.text


async def test_a_lost_error_is_read_from_the_callees_failed_event(
    mesh: Mesh, lost: list[str]
) -> None:
    mesh.configure(reply_lost_after_s=0.3)
    await mesh.start_replicas(desk())
    client = await mesh.ingress()
    with pytest.raises(CallFailed) as failed:
        await client.request(
            "desk", Order(-1), token=mesh.token(), returns=Order, workflow=new_id(), timeout=10
        )
    assert failed.value.reason == "rejected-by-handler"
    assert len(lost) == 1  # the error reply really was dropped


async def test_without_a_record_the_call_times_out(mesh: Mesh, lost: list[str]) -> None:
    """No completed event for the task (the callee never ran it): nothing is made up."""
    mesh.configure(reply_lost_after_s=0.2)
    client = await mesh.ingress()  # no replica of desk runs
    with pytest.raises(MeshTimeout):
        await client.request(
            "desk", Order(1), token=mesh.token(), returns=Order, workflow=new_id(), timeout=1.0
        )


async def test_an_event_another_role_signed_is_not_taken_as_the_reply(mesh: Mesh) -> None:
    """A role that can write the workflow's log (its own events) cannot answer another
    role's call by writing a completed event naming that call's task."""
    client = await mesh.ingress()
    workflow = new_id()
    task = client.envelope(
        kind="task", workflow=workflow, to="desk", body=Order(1), caller="", step="desk"
    )
    forger = await MeshClient(mesh.settings, mesh.identity("kb"), roots=mesh.roots).start()
    await forger.emit(
        workflow,
        ev.Event(
            kind=ev.COMPLETED,
            agent="desk",  # a field naming the callee: not who signed it
            at=0.0,
            task=task.id,
            step="desk",
            body=ev.EventPayload(type="test.Order/1", value=msgspec.Raw(b'{"n":999}')),
        ),
        caller="",
    )
    try:
        assert await forger.flush_events()
        assert await recorded_reply(client, task) is None
    finally:
        await forger.close()
