"""Live discovery as a compromised role: the permissions that let a replica answer the
NATS service API give it nothing else. With exactly ``counter``'s secrets on servers that
enforce the policy, it cannot read a task subject (another role's or its own: tasks come
through the consumer), listen to the service API in another role's name, read or write the
``cli``'s inbox, or ask the service API itself. What it can do, answer a ping in another
role's name, is why discovery is informational only (docs/observability.md)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from jetmesh.runtime.discovery import survey
from tests.harness.secured import SecuredMesh
from tests.security.compromised import CompromisedRole

pytestmark = pytest.mark.integration


@pytest.fixture
async def counter(secured: SecuredMesh, tmp_path: Path) -> AsyncIterator[CompromisedRole]:
    attacker = CompromisedRole.steal(
        "counter", secured.keys.directory, tmp_path / "stolen", secured.settings
    )
    await attacker.start()
    try:
        yield attacker
    finally:
        await attacker.aclose()


async def violation(errors: list[Exception], subject: str) -> bool:
    """Whether the server reported a permissions violation naming ``subject`` (waits a
    little: the server answers a subscription or a publish asynchronously)."""
    for _ in range(100):
        if any(
            "permissions violation" in (t := str(e).lower()) and subject.lower() in t
            for e in errors
        ):
            return True
        await asyncio.sleep(0.02)
    return False


@pytest.mark.parametrize(
    "subject",
    [
        "mesh.agent.planner.task",
        "mesh.agent.counter.task",
        "mesh.agent.>",
        "$SRV.>",
        "$SRV.*",
        "$SRV.PING.planner",
        "$SRV.PING.planner.*",
        "$SRV.INFO.*",
        "_INBOX.cli.>",
    ],
)
async def test_the_discovery_permissions_let_no_other_subject_be_read(
    counter: CompromisedRole, subject: str
) -> None:
    errors: list[Exception] = []
    counter.mesh.error_listeners.append(errors.append)
    await counter.mesh.nc.subscribe(subject)
    assert await violation(errors, subject)


async def test_the_role_may_listen_to_the_service_api_for_itself(
    counter: CompromisedRole,
) -> None:
    """The control: its own service API subjects are allowed (no violation)."""
    errors: list[Exception] = []
    counter.mesh.error_listeners.append(errors.append)
    for subject in ("$SRV.PING", "$SRV.STATS.counter", "$SRV.INFO.counter.x1"):
        await counter.mesh.nc.subscribe(subject)
    await counter.mesh.nc.flush()
    assert not await violation(errors, "$SRV")


@pytest.mark.parametrize("subject", ["_INBOX.cli.forged", "$SRV.PING", "$SRV.INFO.planner"])
async def test_the_role_cannot_publish_to_the_cli_inbox_or_ask(
    counter: CompromisedRole, subject: str
) -> None:
    errors: list[Exception] = []
    counter.mesh.error_listeners.append(errors.append)
    await counter.mesh.nc.publish(subject, b"{}")
    await counter.mesh.nc.flush()
    assert await violation(errors, subject)


async def test_a_role_can_answer_a_ping_in_another_roles_name(
    secured: SecuredMesh, counter: CompromisedRole
) -> None:
    """Why nothing decides on discovery: the answers are claims, unsigned."""
    forged = b'{"type": "io.nats.micro.v1.ping_response", "name": "planner", "id": "x1"}'

    async def answer(msg: object) -> None:
        await msg.respond(forged)  # type: ignore[attr-defined]

    await counter.mesh.nc.subscribe("$SRV.PING", cb=answer)
    await counter.mesh.nc.flush()
    cli = await secured.ingress()
    seen = await survey(cli.nc)
    assert [(s.name, s.id) for s in seen] == [("planner", "x1")]
