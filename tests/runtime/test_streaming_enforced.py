"""Streaming on servers that enforce the policy: the callee streams to its caller, and a
compromised role (one role's secrets, connected as that role) cannot feed chunks into
another role's call, neither live nor through the workflow's log."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest
from nats.js.errors import NotFoundError

from jetmesh import Agent, Context
from jetmesh import events as ev
from jetmesh.cli.ingress import admin_client
from jetmesh.dead_letters import REASON_HEADER
from jetmesh.event_log import read_events
from jetmesh.policy import parse_policy
from jetmesh.runtime.streaming import StreamingCall, read_chunks, stream_request
from tests.harness.secured import POLICY, SecuredMesh
from tests.security.compromised import CompromisedRole

pytestmark = pytest.mark.integration


class Ask(msgspec.Struct, frozen=True):
    __mesh_type__ = "test.Ask/1"

    text: str


class Answer(msgspec.Struct, frozen=True):
    __mesh_type__ = "test.Answer/1"

    words: int


class Planner:
    """``planner`` streams its first word, waits to be released, streams the rest."""

    def __init__(self) -> None:
        self.agent = Agent("planner")
        self.tasks: list[str] = []
        self.release = asyncio.Event()

        @self.agent.handler
        async def plan(ask: Ask, ctx: Context) -> Answer:
            self.tasks.append(ctx.task.id)
            words = ask.text.split()
            await ctx.stream(words[0])
            await self.release.wait()
            for word in words[1:]:
                await ctx.stream(word)
            return Answer(len(words))


@pytest.fixture
async def both_called(tmp_path: Path) -> AsyncIterator[SecuredMesh]:
    """Enforced servers where the ``cli`` calls ``counter`` too: ``counter`` may publish
    on the ``cli``'s reply subjects."""
    roles = {**POLICY["roles"], "cli": {"ingress": True, "calls": ["planner", "counter"]}}
    built = await asyncio.to_thread(
        SecuredMesh(tmp_path / "state", parse_policy({"roles": roles})).up
    )
    try:
        yield built
    finally:
        try:
            await built.aclose()
        finally:
            await asyncio.to_thread(built.down)


def forged_chunk(task: str, index: int) -> ev.Event:
    return ev.Event(
        kind=ev.CHUNK,
        agent="counter",
        at=0.0,
        task=task,
        step="planner",
        key=str(index),
        body=ev.EventPayload(type="str", value=msgspec.Raw(b'"injected"')),
    )


async def start_call(mesh: SecuredMesh, planner: Planner) -> tuple[StreamingCall[Answer], str]:
    await mesh.start_replicas(planner.agent)
    cli = await mesh.ingress()
    token = cli.mint_token("alice")
    call = stream_request(cli, "planner", Ask("one two three"), token=token, returns=Answer)
    first = await anext(aiter(call))
    assert (first.index, first.value) == (0, "one")
    return call, token


async def inject(
    attacker: CompromisedRole, call: StreamingCall[Answer], task: str, to: str, token: str
) -> None:
    """Send a chunk of the call as ``counter`` to the cli's reply subject ``to``, and store
    one in the workflow's log naming the planner's step (with the caller's own token: the
    strongest attacker, one that saw a task of the workflow)."""
    live = attacker.mesh.envelope(
        kind="reply",
        workflow=call.workflow,
        to="cli",
        body=forged_chunk(task, 1),
        caller=token,
        parent=task,
        step="planner",
        type_=ev.EVENT_TYPE,
    )
    await attacker.mesh.send_reply(live, to)
    await attacker.mesh.emit(call.workflow, forged_chunk(task, 2), caller=token, parent=task)
    assert await attacker.mesh.flush_events()


async def finish(mesh: SecuredMesh, planner: Planner, call: StreamingCall[Answer]) -> None:
    planner.release.set()
    rest = [(c.index, c.value) async for c in call]
    assert rest == [(1, "two"), (2, "three")]
    assert await call.result() == Answer(3)
    cli = mesh.clients[0]
    logged = await read_events(cli, call.workflow)
    injected = [e for e in logged if e.event.kind == ev.CHUNK and e.signer == "counter"]
    assert [e.event.key for e in injected] == ["2"]  # stored: the log takes any role's events
    stored = await read_chunks(cli, call.workflow, step="planner", agent="planner")
    assert [c.value for c in stored] == ["one", "two", "three"]  # but only the callee's count


async def test_the_servers_refuse_a_role_the_callers_reply_subject(
    secured: SecuredMesh, tmp_path: Path
) -> None:
    planner = Planner()
    call, token = await start_call(secured, planner)
    attacker = CompromisedRole.steal(
        "counter", secured.keys.directory, tmp_path / "stolen", secured.settings
    )
    await attacker.start()
    try:
        errors: list[Exception] = []
        attacker.mesh.error_listeners.append(errors.append)
        reply_subject = secured.clients[0].reply_subject
        await inject(attacker, call, planner.tasks[0], reply_subject, token)
        for _ in range(200):
            if any("permissions violation" in str(e).lower() for e in errors):
                break
            await asyncio.sleep(0.02)
        else:
            raise AssertionError(f"no permissions violation for {reply_subject}: {errors}")
    finally:
        await attacker.aclose()
    await finish(secured, planner, call)


async def test_a_role_that_may_answer_the_caller_cannot_feed_another_roles_call(
    both_called: SecuredMesh, tmp_path: Path
) -> None:
    """``counter`` may reply to the ``cli`` (the cli calls it): its chunk for the call to
    ``planner`` reaches the cli, is refused by its verified signer and dead-lettered."""
    planner = Planner()
    call, token = await start_call(both_called, planner)
    attacker = CompromisedRole.steal(
        "counter", both_called.keys.directory, tmp_path / "stolen", both_called.settings
    )
    await attacker.start()
    try:
        cli = both_called.clients[0]
        await inject(attacker, call, planner.tasks[0], cli.reply_subject, token)
        for _ in range(200):
            letters = await dlq_reasons(both_called)
            if letters:
                break
            await asyncio.sleep(0.02)
        assert letters == ["forged-reply"]
    finally:
        await attacker.aclose()
    await finish(both_called, planner, call)


async def dlq_reasons(mesh: SecuredMesh) -> list[str]:
    """The reasons of the cli's dead letters, read as the admin (roles may not)."""
    out = []
    async with admin_client(mesh.settings) as admin:
        seq = 1
        while True:
            try:
                raw = await admin.js.get_msg(
                    mesh.settings.dlq_stream, seq=seq, subject=admin.subjects.dlq("cli"), next=True
                )
            except NotFoundError:
                return out
            out.append(dict(raw.headers or {}).get(REASON_HEADER, ""))
            assert raw.seq is not None
            seq = raw.seq + 1
