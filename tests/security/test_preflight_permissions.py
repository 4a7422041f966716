"""ctx.call's pre-flight as a compromised role: the permission it needs, ``$SRV.INFO`` of
each role it may call, is all it gets of the service API. With exactly ``planner``'s
secrets (planner calls counter) on servers that enforce the policy, it can ask counter's
replicas and gets their answer; it cannot ask a role it may not call, nor ping, nor ask
STATS, nor ask every service, nor one instance. Only the callee's replicas receive its
request, so only they can answer it: a role may not subscribe to another's
``$SRV.INFO.<role>``."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from nats.errors import NoRespondersError

from jetmesh.policy.derive import role_permissions
from jetmesh.runtime.preflight import Preflight, info_subject
from tests.harness.agents import Job, counter
from tests.harness.secured import SecuredMesh
from tests.security.compromised import CompromisedRole
from tests.security.test_discovery_permissions import violation

pytestmark = pytest.mark.integration


@pytest.fixture
async def planner(secured: SecuredMesh, tmp_path: Path) -> AsyncIterator[CompromisedRole]:
    attacker = CompromisedRole.steal(
        "planner", secured.keys.directory, tmp_path / "stolen", secured.settings
    )
    await attacker.start()
    try:
        yield attacker
    finally:
        await attacker.aclose()


def test_a_role_is_granted_info_of_its_callees_only(secured: SecuredMesh) -> None:
    planner = role_permissions(secured.policy, "planner", secured.settings)
    assert [p for p in planner.publish if p.startswith("$SRV")] == ["$SRV.INFO.counter"]
    lonely = role_permissions(secured.policy, "counter", secured.settings)
    assert not any(p.startswith("$SRV") for p in lonely.publish), "counter calls nobody"


async def test_the_role_asks_its_callee_and_gets_the_callees_answer(
    secured: SecuredMesh, planner: CompromisedRole
) -> None:
    await secured.start_replicas(counter)
    errors: list[Exception] = []
    planner.mesh.error_listeners.append(errors.append)
    answer = None
    for _ in range(50):  # the replica's subscriptions reach the server soon after it starts
        try:
            answer = await planner.mesh.nc.request(info_subject("counter"), b"", timeout=5.0)
            break
        except NoRespondersError:
            await asyncio.sleep(0.1)
    assert answer is not None, "counter's replica never answered its INFO"
    info = json.loads(answer.data)
    assert info["name"] == "counter"
    assert [e["metadata"]["input_type"] for e in info["endpoints"]] == ["test.Job/1"]
    preflight = Preflight(planner.mesh.nc, mode="served")
    assert await preflight.check("counter", Job(1), "test.Job/1") is None
    assert preflight._callees["counter"].served is True
    assert not await violation(errors, "$SRV")


@pytest.mark.parametrize(
    "subject",
    [
        "$SRV.INFO.approver",
        "$SRV.INFO.cli",
        "$SRV.PING.counter",
        "$SRV.STATS.counter",
        "$SRV.INFO",
        "$SRV.PING",
        "$SRV.INFO.counter.x1",
    ],
)
async def test_the_role_cannot_ask_a_role_it_may_not_call_or_ask_more(
    planner: CompromisedRole, subject: str
) -> None:
    errors: list[Exception] = []
    planner.mesh.error_listeners.append(errors.append)
    await planner.mesh.nc.publish(subject, b"", reply=planner.mesh.nc.new_inbox())
    await planner.mesh.nc.flush()
    assert await violation(errors, subject)


async def test_the_role_cannot_listen_for_its_callees_requests(planner: CompromisedRole) -> None:
    """So it cannot answer another caller's pre-flight in its callee's name."""
    errors: list[Exception] = []
    planner.mesh.error_listeners.append(errors.append)
    await planner.mesh.nc.subscribe("$SRV.INFO.counter")
    assert await violation(errors, "$SRV.INFO.counter")
