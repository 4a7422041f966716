"""Key rotation without downtime, and revocation of the old key id afterwards."""

from __future__ import annotations

import asyncio
import time

import pytest

from jetmesh import ConfigError, Replica
from jetmesh.identity.revocation import lookup_revocation, revoke_key
from jetmesh.identity.trust import REVOCATION_TTL_S
from tests.harness.mesh import WAIT_S, Echo, EchoAgent, Mesh, signed_by, until

pytestmark = pytest.mark.integration


async def test_old_and_new_key_serve_side_by_side_then_old_is_revoked(
    mesh: Mesh, echo: EchoAgent
) -> None:
    [old] = await mesh.start_replicas(echo.agent)
    old_kid = old.mesh.identity.key.kid
    client = await mesh.ingress()
    token = mesh.token()
    assert await client.request("echo", Echo("one"), token=token, returns=Echo) == Echo("ONE")

    new_identity, previous = mesh.keys.rotate("echo", ttl_s=3600)
    assert previous.kid == old_kid != new_identity.key.kid
    new = Replica(echo.agent, mesh.settings, new_identity, roots=mesh.roots)
    mesh.replicas.append(new)
    await new.start()

    # The overlap: both replicas pull from the shared consumer; every reply verifies.
    texts = [f"t{i}" for i in range(30)]
    replies = await asyncio.gather(
        *(client.request("echo", Echo(t), token=token, returns=Echo) for t in texts)
    )
    assert replies == [Echo(t.upper()) for t in texts]
    await until(lambda: old.handled + new.handled >= 31, "every task acked")
    assert old.handled > 1, (old.handled, new.handled)
    assert new.handled > 0, (old.handled, new.handled)

    # Each alone: replies signed by the old key, then by the new one, are accepted.
    await new.drain(timeout=5.0)
    assert await client.request("echo", Echo("old"), token=token, returns=Echo) == Echo("OLD")
    await old.drain(timeout=5.0)
    new = Replica(echo.agent, mesh.settings, new_identity, roots=mesh.roots)
    mesh.replicas.append(new)
    await new.start()
    assert await client.request("echo", Echo("new"), token=token, returns=Echo) == Echo("NEW")

    # Every replica runs on the new key: revoke the old one.
    await revoke_key(client.registry, old_kid, reason="rotated")
    await asyncio.sleep(REVOCATION_TTL_S + 0.2)
    letters_before = len(await mesh.dead_letters("echo"))
    sealed = mesh.seal(Echo("by-old-key"), token=token, sender="echo")
    attacker = await mesh.attacker()
    await attacker.publish(
        mesh.subjects.task("echo"), sealed.data, signed_by(old.mesh.identity.key, sealed)
    )
    deadline = time.monotonic() + WAIT_S
    while len(letters := await mesh.dead_letters("echo")) == letters_before:
        assert time.monotonic() < deadline, "the old key's message was not refused"
        await asyncio.sleep(0.05)
    assert [d.reason for d in letters[letters_before:]] == ["revoked-key"]
    assert "by-old-key" not in echo.seen
    assert await client.request("echo", Echo("after"), token=token, returns=Echo) == Echo("AFTER")

    # A replica that still holds the old key cannot start.
    stale = Replica(echo.agent, mesh.settings, old.mesh.identity, roots=mesh.roots)
    with pytest.raises(ConfigError, match="revoked"):
        await stale.start()
    revocation = await lookup_revocation(client.registry, old_kid)
    assert revocation is not None
    assert revocation.reason == "rotated"
