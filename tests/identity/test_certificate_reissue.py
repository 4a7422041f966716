"""A certificate re-issued for the same key id reaches running processes within
CERTIFICATE_TTL_S (plus one registry read), on real servers: a caller token the agent has
cached, from an ingress that lost its ingress flag, is refused; an ingress whose publish
subjects were narrowed is refused on the subject it lost. And a hostile ``Mesh-Key``
costs a short, escaped refusal."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from jetmesh.identity.certificates import issue_certificate
from jetmesh.identity.trust import CERTIFICATE_TTL_S
from tests.harness.mesh import WAIT_S, Echo, EchoAgent, Mesh

pytestmark = pytest.mark.integration


async def reissue(mesh: Mesh, name: str, *, ingress: bool, publish: list[str]) -> None:
    """A new certificate for ``name``'s current key (the same key id), put in the
    registry in place of the old one, as the admin step would."""
    cert = mesh.keys.certificate(name)
    identity = mesh.identity(name)
    new = issue_certificate(
        mesh.root,
        identity.key,
        publish=publish,
        subscribe=cert.subscribe,
        scopes=sorted(cert.scopes),
        ingress=ingress,
        ttl_s=3600.0,
    )
    await mesh.register_certificate(identity.key.kid, new)


async def accepted_then_refused(
    mesh: Mesh, echo: EchoAgent, reason: str, *, ingress: bool, publish: list[str] | None = None
) -> None:
    await mesh.start_replicas(echo.agent)
    await mesh.ingress()
    token = mesh.token()
    attacker = await mesh.attacker()
    before = mesh.seal(Echo("before"), token=token)
    await attacker.publish(mesh.subjects.task("echo"), before.data, before.headers)
    deadline = time.monotonic() + WAIT_S
    while echo.seen != ["before"]:  # the agent has verified (and cached) the token
        assert time.monotonic() < deadline, echo.seen
        await asyncio.sleep(0.02)

    current = mesh.keys.certificate("cli").publish
    await reissue(
        mesh, "cli", ingress=ingress, publish=list(current if publish is None else publish)
    )
    await asyncio.sleep(CERTIFICATE_TTL_S + 0.2)
    after = mesh.seal(Echo("after"), token=token)
    await attacker.publish(mesh.subjects.task("echo"), after.data, after.headers)
    [dead] = await mesh.wait_dead_letters("echo", reason)
    assert dead.data == after.data
    assert echo.seen == ["before"], "the handler ran after the certificate changed"


async def test_an_ingress_that_lost_its_flag_is_refused_within_the_ttl(
    mesh: Mesh, echo: EchoAgent
) -> None:
    await accepted_then_refused(mesh, echo, "invalid-token", ingress=False)


async def test_narrowed_publish_subjects_take_effect_within_the_ttl(
    mesh: Mesh, echo: EchoAgent
) -> None:
    prefix = mesh.settings.subject_prefix
    await accepted_then_refused(
        mesh, echo, "misaddressed", ingress=True, publish=[f"{prefix}.event.>"]
    )


async def test_a_hostile_mesh_key_costs_a_short_escaped_refusal(
    mesh: Mesh, echo: EchoAgent, caplog: pytest.LogCaptureFixture
) -> None:
    await mesh.start_replicas(echo.agent)
    await mesh.ingress()
    sealed = mesh.seal(Echo("hostile"), token=mesh.token())
    hostile = "\u202e" + "k" * 3000 + "[/dim]"
    attacker = await mesh.attacker()
    with caplog.at_level(logging.WARNING):
        await attacker.publish(
            mesh.subjects.task("echo"), sealed.data, {**sealed.headers, "Mesh-Key": hostile}
        )
        [dead] = await mesh.wait_dead_letters("echo", "unknown-key")
    assert "malformed key id" in dead.detail
    assert len(dead.detail) < 200
    refusals = [r.getMessage() for r in caplog.records if "rejected" in r.getMessage()]
    assert refusals, caplog.text
    assert all(len(line) < 400 and line.isascii() for line in refusals)
    assert echo.seen == []
