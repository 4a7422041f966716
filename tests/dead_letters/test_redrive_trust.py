"""``jetmesh dlq redrive`` on servers that enforce the policy: a real dead letter is
verified, sent by the ``cli`` ingress and served; one that a role planted on its own
dead-letter subject (with only its own credentials) is refused, audited, and nothing is
sent."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator

import msgspec
import pytest

from jetmesh import Agent, CallFailed, Context, MeshClient, MeshSettings, Reject
from jetmesh.cli.ingress import admin_client
from jetmesh.dead_letters import (
    REDRIVE_REFUSED,
    REDRIVEN,
    UNVERIFIED_WORKFLOW,
    DeadLetter,
    list_dead_letters,
)
from jetmesh.envelope import new_id
from jetmesh.event_log import LoggedEvent, read_events
from jetmesh.processes import settings_env
from tests.harness.secured import SecuredMesh

pytestmark = pytest.mark.integration


class Order(msgspec.Struct, frozen=True):
    __mesh_type__ = "test.RedriveOrder/1"

    n: int


def picky_planner(fixed: list[bool], runs: list[int]) -> Agent:
    """A ``planner`` that refuses orders until it is fixed."""
    agent = Agent("planner")

    @agent.handler
    async def take(order: Order, ctx: Context) -> Order:
        runs.append(order.n)
        if not fixed:
            raise Reject("not configured yet")
        return order

    return agent


async def jetmesh(s: MeshSettings, *args: str) -> tuple[int, str, str]:
    """Run ``jetmesh ARGS`` as a process on ``s``: (exit code, out, err)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "jetmesh.cli",
        *args,
        env={**settings_env(s), "COLUMNS": "400"},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest.fixture
async def admin(secured: SecuredMesh) -> AsyncIterator[MeshClient]:
    """The operator's connection, as the ``admin`` user."""
    async with admin_client(secured.settings) as client:
        assert client.login.user == "admin"
        yield client


async def _letters(admin: MeshClient, agent: str) -> list[DeadLetter]:
    s = admin.settings
    return await list_dead_letters(admin.js, s.dlq_stream, f"{s.subject_prefix}.dlq.{agent}")


async def _events(
    client: MeshClient, workflow: str, kind: str, count: int = 1
) -> list[LoggedEvent]:
    for _ in range(100):
        found = [e for e in await read_events(client, workflow) if e.event.kind == kind]
        if len(found) >= count:
            return found
        await asyncio.sleep(0.05)
    return found


async def test_a_real_dead_letter_is_redriven_and_served(
    secured: SecuredMesh, admin: MeshClient
) -> None:
    fixed: list[bool] = []
    runs: list[int] = []
    await secured.start_replicas(picky_planner(fixed, runs))
    cli = await secured.ingress()
    workflow = new_id()
    with pytest.raises(CallFailed, match="not configured yet"):
        await cli.request(
            "planner", Order(7), token=cli.mint_token("alice"), returns=Order, workflow=workflow
        )
    (letter,) = await _letters(admin, "planner")
    assert (letter.owner, letter.reason) == ("planner", "rejected-by-handler")

    fixed.append(True)
    code, out, err = await jetmesh(secured.settings, "dlq", "redrive", str(letter.seq))
    assert code == 0, err
    assert "sent again as task" in out
    (redriven,) = await _events(cli, workflow, REDRIVEN)
    assert (redriven.event.agent, redriven.signer, redriven.verified) == ("cli", "cli", True)
    completed = await _events(cli, workflow, "completed")
    assert [e.event.agent for e in completed] == ["planner"]
    assert runs == [7, 7], "the handler ran again (the recorded error was cleared)"
    assert await _letters(admin, "planner") == []


def _planted(counter: MeshClient, token: str, variant: str) -> tuple[bytes, dict[str, str]]:
    """A dead letter the ``counter`` role makes for its own dead-letter subject, with headers
    that name another role and call it safe to redrive."""
    claims = {
        "Mesh-Dlq-Agent": "planner",
        "Mesh-Dlq-Reason": "max-deliveries",
        "Mesh-Dlq-Detail": "safe to redrive",
        "Mesh-Dlq-Subject": counter.subjects.task("planner"),
    }
    if variant == "not-a-task":
        return b"redrive me, I am fine", {**claims, "Nats-Msg-Id": new_id()}
    to = "planner" if variant == "misfiled" else "counter"
    envelope = counter.envelope(
        kind="task", workflow=new_id(), to=to, body=Order(99), caller=token, step=to
    )
    if variant == "forged-sender":
        envelope = msgspec.structs.replace(envelope, sender="planner")
    data, headers = counter.seal(envelope)
    return data, {**headers, **claims}


@pytest.mark.parametrize(
    ("variant", "reason", "error"),
    [
        ("misfiled", "misfiled", "RedriveRefused"),
        ("forged-sender", "misaddressed", "RedriveRefused"),
        ("self-addressed", "misaddressed", "RedriveRefused"),
        ("not-a-task", "not-a-task", "NotATask"),
    ],
)
async def test_a_planted_dead_letter_is_refused_and_nothing_is_sent(
    secured: SecuredMesh, admin: MeshClient, variant: str, reason: str, error: str
) -> None:
    runs: list[int] = []
    await secured.start_replicas(picky_planner([True], runs))
    cli = await secured.ingress()
    token = cli.mint_token("alice")  # as a role sees in the tasks it is sent
    counter = MeshClient(
        secured.settings, secured.keys.identity("counter"), roots=secured.keys.roots()
    )
    secured.clients.append(counter)
    await counter.start()
    assert counter.login.user == "counter"  # its own credentials, nothing else
    data, headers = _planted(counter, token, variant)
    await counter.publisher.publish(counter.subjects.dlq("counter"), data, headers)
    (letter,) = await _letters(admin, "counter")
    tasks = (await admin.js.stream_info(secured.settings.tasks_stream)).state.messages

    code, out, err = await jetmesh(secured.settings, "dlq", "redrive", str(letter.seq))
    assert code == 1, out
    assert f"error: {error}: dead letter {letter.seq} not sent: {reason}:" in err

    assert (await admin.js.stream_info(secured.settings.tasks_stream)).state.messages == tasks
    assert [d.seq for d in await _letters(admin, "counter")] == [letter.seq], "kept"
    workflow = env.workflow if (env := letter.envelope()) is not None else UNVERIFIED_WORKFLOW
    (refused,) = await _events(cli, workflow, REDRIVE_REFUSED)
    assert (refused.event.reason, refused.signer, refused.verified) == (reason, "cli", True)
    assert refused.event.target == "counter"
    got = await cli.request("planner", Order(1), token=token, returns=Order, timeout=10)
    assert got == Order(1), "the mesh serves on"
    assert runs == [1], "nothing planted ran"


async def test_a_dead_letter_of_a_role_the_ingress_does_not_call_is_not_sent(
    secured: SecuredMesh, admin: MeshClient
) -> None:
    """A real dead letter of ``counter`` (called by the planner, not by the cli): it
    verifies, but the ``cli`` ingress may not send to counter, so it is refused
    ``not-permitted`` before anything is sent, and kept."""
    planner = Agent("planner")
    counter = Agent("counter")
    runs: list[int] = []

    @planner.handler
    async def plan(order: Order, ctx: Context) -> Order:
        try:
            return await ctx.call("counter", order, returns=Order)
        except CallFailed as exc:
            raise Reject(str(exc)) from None  # no retries: fail at once

    @counter.handler
    async def count(order: Order, ctx: Context) -> Order:
        runs.append(order.n)
        raise Reject("counting is off")

    await secured.start_replicas(counter, planner)
    cli = await secured.ingress()
    workflow = new_id()
    with pytest.raises(CallFailed):
        await cli.request(
            "planner", Order(3), token=cli.mint_token("alice"), returns=Order, workflow=workflow
        )
    (letter,) = await _letters(admin, "counter")
    tasks = (await admin.js.stream_info(secured.settings.tasks_stream)).state.messages

    code, _, err = await jetmesh(secured.settings, "dlq", "redrive", str(letter.seq))
    assert code == 1
    assert "not sent: not-permitted: cli may not send tasks to counter" in err
    assert (await admin.js.stream_info(secured.settings.tasks_stream)).state.messages == tasks
    assert [d.seq for d in await _letters(admin, "counter")] == [letter.seq]
    (refused,) = await _events(cli, workflow, REDRIVE_REFUSED)
    assert (refused.event.reason, refused.verified) == ("not-permitted", True)
    assert runs == [3]
