"""The tool gateway runs a tool at most once per request step by its own ledger, counted
by the tool's own API (:mod:`tests.harness.keyed_tool_api`), not by what it paid:

- SIGKILL of the gateway process while the tool's call is in flight (the API has done the
  call and holds its answer), then the task's redelivery to a new gateway process: a tool
  that declares nothing is not run again (``tool-in-doubt``, dead-lettered for a person);
  one that declares ``find`` is settled by asking the API (``reconciled``); one that
  declares ``idempotent`` runs again with the same key (the API does it once);
- the same request step sent again (a caller's re-run whose journal write was lost) after
  the gateway recorded its run: answered from the gateway's record, the tool not run.
- SIGSTOP of the gateway mid-call past AckWait: the next gateway does not run the tool
  alongside it (a tool that declares nothing is refused in doubt).

The gateway is a real process (:mod:`tests.harness.toolgate_agent`); the caller,
``payer``, runs in the test's process.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from redis.asyncio import Redis

from jetmesh import Agent, Context, ToolRefused
from jetmesh.dead_letters import get_dead_letter, settle, with_task
from jetmesh.envelope import new_id
from jetmesh.event_log import LoggedEvent
from jetmesh.processes import AgentProcess
from jetmesh.toolgate import TOOLGATE
from tests.harness.keyed_tool_api import URL_ENV, KeyedToolApi
from tests.harness.mesh import Mesh, kinds, until

pytestmark = [pytest.mark.integration, pytest.mark.fault]

GATEWAY = "tests.harness.toolgate_agent:agent"
POLICY = """
[roles.cli]
ingress = true
calls = ["payer"]

[roles.payer]
calls = ["toolgate"]
scopes = ["pay:write"]
tools.pay = { scope = "pay:write" }
tools.refund = { scope = "pay:write" }
tools.send = { scope = "pay:write" }

[roles.toolgate]
"""
SCOPES = ["pay:write"]


class Pay(msgspec.Struct, frozen=True):
    __mesh_type__ = "test.Pay/1"

    tool: str
    amount: int


class Paid(msgspec.Struct, frozen=True):
    __mesh_type__ = "test.Paid/1"

    outcome: str
    """``ok`` or the refusal's code."""
    value: dict[str, Any] | None = None


def payer() -> Agent:
    agent = Agent("payer", scopes=SCOPES)

    @agent.handler
    async def pay(job: Pay, ctx: Context) -> Paid:
        try:
            value = await ctx.tool(job.tool, {"amount": job.amount}, returns=dict)
        except ToolRefused as exc:
            return Paid(exc.reason)
        return Paid("ok", value)

    return agent


@pytest.fixture
async def api() -> AsyncIterator[KeyedToolApi]:
    started = await KeyedToolApi().start()
    try:
        yield started
    finally:
        await started.aclose()


@pytest.fixture
async def redis(mesh: Mesh) -> AsyncIterator[Redis]:
    client = Redis.from_url(mesh.settings.redis_url)
    try:
        yield client
    finally:
        await client.aclose()


async def start(
    mesh: Mesh,
    api: KeyedToolApi,
    agent_processes: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> AgentProcess:
    """The gateway as a process (AckWait 2 s: a killed one's task comes back soon), the
    caller in this process."""
    policy = tmp_path / "policy.toml"
    policy.write_text(POLICY)
    mesh.configure(ack_wait_s=2.0, policy_file=policy, retry_backoff_s=(0.1,))
    mesh.identity(TOOLGATE)
    monkeypatch.setenv(URL_ENV, api.url)
    (gateway,) = await agent_processes(GATEWAY, 1)
    await mesh.start_replicas(payer())
    return gateway  # type: ignore[no-any-return]


def tool_events(logged: list[LoggedEvent], reason: str) -> list[LoggedEvent]:
    return [e for e in kinds(logged, "tool") if e.event.reason == reason]


@pytest.mark.parametrize("tool", ["pay", "refund", "send"])
async def test_a_gateway_killed_mid_call_does_not_run_the_tool_again_unless_it_says_how(
    tool: str,
    mesh: Mesh,
    api: KeyedToolApi,
    agent_processes: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    doomed = await start(mesh, api, agent_processes, tmp_path, monkeypatch)
    client = await mesh.ingress()
    workflow = new_id()
    api.hold(tool)  # the API does the call, then keeps its answer: the gateway waits
    request = asyncio.create_task(
        client.request(
            "payer",
            Pay(tool, 240),
            token=mesh.token(scopes=SCOPES),
            returns=Paid,
            workflow=workflow,
            timeout=30.0,
        )
    )
    try:
        await until(lambda: api.invocations[tool] == 1, "the tool invoked once")
        doomed.kill()  # between running the tool and recording it
        assert doomed.proc is not None
        assert doomed.proc.returncode == -signal.SIGKILL
        api.release()
        await agent_processes(GATEWAY, 1)  # the task is redelivered to this one
        paid = await asyncio.wait_for(request, 30.0)
    finally:
        request.cancel()

    assert api.effects[tool] == 1
    (key,) = set(api.keys)
    assert key == f"{workflow}/payer/toolgate.1", "the target got the step's idempotency key"
    if tool == "pay":  # declares nothing: not run again, refused in doubt for a person
        assert paid == Paid("tool-in-doubt")
        assert api.invocations[tool] == 1
        assert api.finds[tool] == 0
        logged = await mesh.wait_events(workflow, lambda got: bool(kinds(got, "tool-refused")))
        (refused,) = kinds(logged, "tool-refused")
        assert refused.event.reason == "tool-in-doubt"
        assert "in doubt" in refused.event.detail
        letters = await mesh.wait_dead_letters(TOOLGATE, "tool-in-doubt")
        assert len(letters) == 1, "listed for a person to decide"
        # The person finds the payment at the API under the key: settled as happened.
        stored = await get_dead_letter(client, client.settings.dlq_stream, letters[0].seq)
        letter = await with_task(client, client.settings.tasks_stream, stored)
        done = await settle(client, letter, happened=True, by="ops")
        assert [c.rsplit(":", 1)[1] for c in done.claims] == ["tool-pay"]
        assert done.task is None
        assert await mesh.dead_letters(TOOLGATE) == []
        assert api.invocations[tool] == 1, "settled: the tool is not run again"
    elif tool == "refund":  # declares find: the API says it happened; recorded, not run
        assert paid.outcome == "ok"
        assert paid.value == api.done[f"refund {key}"]
        assert api.invocations[tool] == 1
        assert api.finds[tool] == 1
        logged = await mesh.wait_events(workflow, lambda got: bool(tool_events(got, "reconciled")))
        assert len(tool_events(logged, "reconciled")) == 1
        assert tool_events(logged, "ok") == [], "the killed gateway never recorded a run"
    else:  # idempotent: run again with the same key; the API did it once
        assert paid.outcome == "ok"
        assert paid.value == api.done[f"send {key}"]
        assert api.invocations[tool] == 2
        assert api.keys == [key, key]
        logged = await mesh.wait_events(workflow, lambda got: bool(tool_events(got, "ok")))
        (ran,) = tool_events(logged, "ok")
        assert "run again with the same idempotency key" in ran.event.detail
    assert not kinds(logged, "failed") or tool == "pay"


async def test_a_step_sent_again_gets_the_recorded_result_and_the_tool_runs_once(
    mesh: Mesh,
    api: KeyedToolApi,
    agent_processes: Any,
    redis: Redis,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The caller asks again with the same workflow after losing its journal and its
    result; the gateway's step result is gone as well (it died after recording the run in
    its ledger, before storing the step's result), so only the gateway's own record of the
    run stands between the request and a second call of a tool that declares nothing."""
    await start(mesh, api, agent_processes, tmp_path, monkeypatch)
    client = await mesh.ingress()
    workflow = new_id()

    async def ask() -> Paid:
        return await client.request(
            "payer",
            Pay("pay", 35),
            token=mesh.token(scopes=SCOPES),
            returns=Paid,
            workflow=workflow,
            timeout=20.0,
        )

    first = await ask()
    assert first.outcome == "ok"
    assert api.invocations["pay"] == 1
    prefix = mesh.settings.subject_prefix
    patterns = (f"{prefix}:journal:payer:{workflow}:*", f"{prefix}:result:{workflow}:*")
    lost = [key for pattern in patterns async for key in redis.scan_iter(match=pattern)]
    # payer's journal of its call and its mark of the step begun, payer's and toolgate's
    # results (and beside a result the events its run still had on their way, if any)
    assert len([key for key in lost if not key.endswith(b"#events")]) == 4, lost
    await redis.delete(*lost)

    second = await ask()
    assert second == first, "the recorded result, sent again"
    assert api.invocations["pay"] == 1, "the tool was not run for the step sent again"
    logged = await mesh.wait_events(workflow, lambda got: bool(tool_events(got, "recorded")))
    (recorded,) = tool_events(logged, "recorded")
    assert "from the record" in recorded.event.detail
    assert len(tool_events(logged, "ok")) == 1


async def test_a_gateway_stalled_past_its_lease_is_not_joined_by_a_second_run(
    mesh: Mesh,
    api: KeyedToolApi,
    agent_processes: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """SIGSTOP of the gateway mid-call, past AckWait: the task goes to another gateway
    while the first one's call is still open. For a tool that declares nothing the second
    gateway refuses in doubt instead of running it alongside; the first, resumed, finishes
    its one run."""
    stalled = await start(mesh, api, agent_processes, tmp_path, monkeypatch)
    client = await mesh.ingress()
    workflow = new_id()
    api.hold("pay")
    request = asyncio.create_task(
        client.request(
            "payer",
            Pay("pay", 99),
            token=mesh.token(scopes=SCOPES),
            returns=Paid,
            workflow=workflow,
            timeout=30.0,
        )
    )
    assert stalled.proc is not None
    try:
        await until(lambda: api.invocations["pay"] == 1, "pay invoked once")
        stalled.proc.send_signal(signal.SIGSTOP)
        await agent_processes(GATEWAY, 1)  # takes the redelivery once the lease has lapsed
        paid = await asyncio.wait_for(request, 30.0)
        assert paid == Paid("tool-in-doubt")
        assert api.invocations["pay"] == 1, "not run alongside the stalled gateway's call"
    finally:
        request.cancel()
        stalled.proc.send_signal(signal.SIGCONT)
    api.release()  # the stalled gateway's call completes: its one run is recorded
    logged = await mesh.wait_events(workflow, lambda got: bool(tool_events(got, "ok")))
    assert len(tool_events(logged, "ok")) == 1
    assert api.invocations["pay"] == 1
