"""Handlers that fail or steer delivery: retries up to ``max_deliver``, ``Reject`` and
``Retry(delay)``, with their dead letters, audit events and the caller's view."""

from __future__ import annotations

import asyncio
import time

import msgspec
import pytest

from jetmesh import Agent, CallFailed, Context, Reject, Retry
from jetmesh.envelope import decode_envelope, new_id
from tests.harness.mesh import Echo, Mesh, kinds

pytestmark = pytest.mark.integration


class Boom(msgspec.Struct, frozen=True):
    __mesh_type__ = "test.Boom/1"

    n: int


class Refuse(msgspec.Struct, frozen=True):
    __mesh_type__ = "test.Refuse/1"

    why: str


class Later(msgspec.Struct, frozen=True):
    __mesh_type__ = "test.Later/1"

    delay: float


class Attempt(msgspec.Struct, frozen=True):
    __mesh_type__ = "test.Attempt/1"

    n: int


class Flaky:
    """An agent with one well-behaved handler and three that fail in different ways; it
    logs every handler run as ``(what, attempt, monotonic time)``."""

    def __init__(self, *, concurrency: int | None = None) -> None:
        self.agent = Agent("flaky", concurrency=concurrency)
        self.runs: list[tuple[str, int, float]] = []
        self.boomed = asyncio.Event()
        agent = self.agent

        @agent.handler
        async def echo(msg: Echo, ctx: Context) -> Echo:
            self._ran(msg.text, ctx)
            return Echo(msg.text.upper())

        @agent.handler
        async def boom(msg: Boom, ctx: Context) -> Echo:
            self._ran("boom", ctx)
            self.boomed.set()
            raise RuntimeError(f"boom {msg.n}")

        @agent.handler
        async def refuse(msg: Refuse, ctx: Context) -> Echo:
            self._ran("refuse", ctx)
            raise Reject(msg.why)

        @agent.handler
        async def later(msg: Later, ctx: Context) -> Attempt:
            self._ran("later", ctx)
            if ctx.attempt == 1:
                raise Retry(delay=msg.delay, reason="not yet")
            return Attempt(ctx.attempt)

    def _ran(self, what: str, ctx: Context) -> None:
        self.runs.append((what, ctx.attempt, time.monotonic()))

    def attempts(self, what: str) -> list[int]:
        return [attempt for name, attempt, _ in self.runs if name == what]


async def test_failing_handler_is_retried_then_dead_lettered(mesh: Mesh) -> None:
    mesh.configure(max_deliver=3, retry_backoff_s=(0.05,))
    flaky = Flaky(concurrency=1)  # one slot: a retrying task must not hold it
    await mesh.start_replicas(flaky.agent)
    client = await mesh.ingress()
    token = mesh.token()
    workflow = new_id()
    failing = asyncio.create_task(
        client.request("flaky", Boom(1), token=token, returns=Echo, workflow=workflow)
    )
    await asyncio.wait_for(flaky.boomed.wait(), 10)
    others = await asyncio.gather(
        *(client.request("flaky", Echo(f"ok{i}"), token=token, returns=Echo) for i in range(20))
    )
    assert others == [Echo(f"OK{i}") for i in range(20)]
    with pytest.raises(CallFailed) as failure:
        await failing
    assert failure.value.agent == "flaky"
    assert failure.value.error_type == "RuntimeError"
    assert "boom 1" in failure.value.message
    assert flaky.attempts("boom") == [1, 2, 3]
    last_boom = max(t for name, _, t in flaky.runs if name == "boom")
    assert any(name.startswith("ok") and t < last_boom for name, _, t in flaky.runs), (
        "no other task ran while the failing one waited for its redeliveries"
    )

    dead = await mesh.wait_dead_letters("flaky", "max-deliveries")
    assert len(dead) == 1
    assert decode_envelope(dead[0].data).workflow == workflow
    assert "boom 1" in dead[0].detail
    assert [d.reason for d in await mesh.dead_letters("flaky")] == ["max-deliveries"]

    logged = await mesh.wait_events(workflow, lambda got: bool(kinds(got, "failed")))
    retried = kinds(logged, "retried")
    assert [(e.event.attempt, e.event.reason) for e in retried] == [
        (1, "RuntimeError"),
        (2, "RuntimeError"),
    ]
    failed = kinds(logged, "failed")
    assert len(failed) == 1
    assert failed[0].event.reason == "max-deliveries"
    assert failed[0].event.attempt == 3
    assert kinds(logged, "completed") == []
    assert all(e.verified for e in logged)


async def test_handler_reject_dead_letters_at_once(mesh: Mesh) -> None:
    flaky = Flaky()
    await mesh.start_replicas(flaky.agent)
    client = await mesh.ingress()
    token = mesh.token()
    workflow = new_id()
    with pytest.raises(CallFailed) as failure:
        await client.request(
            "flaky", Refuse("not my job"), token=token, returns=Echo, workflow=workflow
        )
    assert failure.value.error_type == "Reject"
    assert failure.value.message == "not my job"
    assert flaky.attempts("refuse") == [1]

    dead = await mesh.wait_dead_letters("flaky", "rejected-by-handler")
    assert len(dead) == 1
    assert dead[0].detail == "not my job"
    assert decode_envelope(dead[0].data).workflow == workflow

    logged = await mesh.wait_events(workflow, lambda got: bool(kinds(got, "failed")))
    assert kinds(logged, "retried") == []
    failed = kinds(logged, "failed")
    assert [(e.event.reason, e.event.detail) for e in failed] == [
        ("rejected-by-handler", "not my job")
    ]
    assert await client.request("flaky", Echo("next"), token=token, returns=Echo) == Echo("NEXT")
    assert flaky.attempts("refuse") == [1], "a rejected task is not delivered again"


async def test_handler_retry_redelivers_after_its_delay(mesh: Mesh) -> None:
    flaky = Flaky()
    await mesh.start_replicas(flaky.agent)
    client = await mesh.ingress()
    workflow = new_id()
    result = await client.request(
        "flaky", Later(delay=0.3), token=mesh.token(), returns=Attempt, workflow=workflow
    )
    assert result == Attempt(2)
    runs = [t for name, _, t in flaky.runs if name == "later"]
    assert flaky.attempts("later") == [1, 2]
    assert runs[1] - runs[0] >= 0.25, "redelivered before the requested delay"

    logged = await mesh.wait_events(workflow, lambda got: bool(kinds(got, "completed")))
    assert [(e.event.reason, e.event.attempt) for e in kinds(logged, "retried")] == [("not yet", 1)]
    assert [e.event.attempt for e in kinds(logged, "completed")] == [2]
    assert kinds(logged, "failed") == []
    assert await mesh.dead_letters("flaky") == []
    (accepted,) = await mesh.tree(workflow, hops=1)
    (node,) = accepted.children
    assert (node.agent, node.status, node.attempts) == ("flaky", "completed", 2)
