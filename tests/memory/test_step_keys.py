"""Steps outside the documented set (1 to 1024 of ``A-Z a-z 0-9 _ - . /``), on a real
mesh: each task is refused as ``malformed`` before its handler runs, dead-lettered, its
caller told why, and the consumer goes on."""

from __future__ import annotations

import asyncio

import pytest

from jetmesh import ErrorBody
from jetmesh.envelope import MAX_STEP_CHARS, decode_body
from tests.harness.mesh import WAIT_S, Echo, EchoAgent, Mesh

pytestmark = pytest.mark.integration

BAD_STEPS = {
    "newline": "echo\n",
    "star": "echo/*",
    "non-ascii": "\u00e9cho",
    "space": "echo x",
    "too-long": "e" * (MAX_STEP_CHARS + 1),
    "colon": "echo:kb:x",
}


async def test_tasks_with_steps_outside_the_set_are_malformed(mesh: Mesh, echo: EchoAgent) -> None:
    await mesh.start_replicas(echo.agent)
    await mesh.ingress()
    token = mesh.token()
    attacker = await mesh.attacker()
    replies = {}
    for name, step in BAD_STEPS.items():
        sealed = mesh.seal(Echo(name), token=token, step=step)
        replies[name] = mesh.expect_reply(sealed.envelope)
        await attacker.publish(mesh.subjects.task("echo"), sealed.data, sealed.headers)
    for name, reply in replies.items():
        envelope = await asyncio.wait_for(reply, WAIT_S)
        assert envelope.kind == "error", name
        assert decode_body(envelope, ErrorBody).reason == "malformed", name
    dead = await mesh.wait_dead_letters("echo", "malformed", count=len(BAD_STEPS))
    assert len(dead) == len(BAD_STEPS)
    assert all(len(letter.detail) < 300 for letter in dead)
    assert echo.seen == []
    client = await mesh.ingress()
    after = await client.request("echo", Echo("after"), token=token, returns=Echo, timeout=WAIT_S)
    assert after == Echo("AFTER")
    assert echo.seen == ["after"]
