"""The gateway in process on servers that enforce a policy: ``gateway`` (an ingress that
calls ``echo``), ``echo`` and ``other`` (which the gateway may not call), each connected
as its role; an httpx client on the app through ASGITransport."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from jetmesh.policy import parse_policy
from services.gateway import ApiKey, GatewaySettings, create_app
from services.gateway.gateway import Gateway
from services.gateway.settings import key_hash
from tests.harness.secured import SecuredMesh
from tests.services.gateway.agents import echo_agent, other_agent

POLICY = {
    "roles": {
        "gateway": {"ingress": True, "calls": ["echo"]},
        "echo": {},
        "other": {},
    }
}
ALICE_KEY = "jmk_alice_0123456789"
BOB_KEY = "jmk_bob_9876543210"
API_KEYS = (
    ApiKey(sha256=key_hash(ALICE_KEY), subject="alice", tenant="acme", scopes=("kb:read",)),
    ApiKey(sha256=key_hash(BOB_KEY), subject="bob", tenant="acme"),
)


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@dataclass
class Served:
    """A running gateway and what it runs on."""

    secured: SecuredMesh
    gateway: Gateway
    http: httpx.AsyncClient

    async def post(self, agent: str, body: Any, key: str = ALICE_KEY, **kw: Any) -> httpx.Response:
        headers = auth(key) | kw.pop("headers", {})
        return await self.http.post(f"/v1/agents/{agent}/tasks", json=body, headers=headers, **kw)


@pytest.fixture
async def enforced(tmp_path: Path) -> AsyncIterator[SecuredMesh]:
    """Servers that enforce :data:`POLICY`, with ``echo`` and ``other`` running."""
    built = SecuredMesh(tmp_path / "state", parse_policy(POLICY))
    await asyncio.to_thread(built.up)
    try:
        await built.start_replicas(echo_agent(), other_agent())
        yield built
    finally:
        try:
            await built.aclose()
        finally:
            await asyncio.to_thread(built.down)


async def serve(secured: SecuredMesh, settings: GatewaySettings, **kw: Any) -> Served:
    gateway = await Gateway(settings, secured.settings, **kw).start()
    app = create_app(gateway)
    transport = httpx.ASGITransport(app=app)
    http = httpx.AsyncClient(transport=transport, base_url="http://gateway.test")
    return Served(secured, gateway, http)


@pytest.fixture
async def served(enforced: SecuredMesh) -> AsyncIterator[Served]:
    """The gateway in process with API keys for alice and bob (tenant acme)."""
    s = await serve(enforced, GatewaySettings(api_keys=API_KEYS))
    try:
        yield s
    finally:
        await s.http.aclose()
        await s.gateway.close()
