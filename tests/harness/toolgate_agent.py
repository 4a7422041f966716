"""A tool gateway for tests that run it as its own process (``jetmesh run
tests.harness.toolgate_agent:agent``), with three tools on the loopback API of
:mod:`tests.harness.keyed_tool_api` (its URL in ``KEYED_TOOL_API_URL``), one per kind
of declaration:

- ``pay``: declares nothing: a run left in doubt is refused, not run again;
- ``refund``: declares ``find`` (asks the API by the idempotency key);
- ``send``: declares ``idempotent`` (the API de-duplicates by the key).

Every tool passes the call's idempotency key to the API.
"""

from __future__ import annotations

import os
from typing import Any

import httpx

from jetmesh import Credentials, MeshSettings, ToolCall, Toolgate, ToolRegistry
from jetmesh.policy import load_policy
from tests.harness.keyed_tool_api import URL_ENV

TIMEOUT_S = 60.0


def _url(call: ToolCall) -> str:
    return f"{os.environ[URL_ENV]}/{call.tool}"


async def post(call: ToolCall) -> Any:
    async with httpx.AsyncClient(timeout=TIMEOUT_S) as http:
        answer = await http.post(_url(call), json=call.args, headers={"Idempotency-Key": call.key})
    answer.raise_for_status()
    return answer.json()


async def find(call: ToolCall) -> Any | None:
    async with httpx.AsyncClient(timeout=TIMEOUT_S) as http:
        answer = await http.get(_url(call), headers={"Idempotency-Key": call.key})
    if answer.status_code == 404:
        return None
    answer.raise_for_status()
    return answer.json()


def tools() -> ToolRegistry:
    registry = ToolRegistry()
    registry.add("pay", post, needs_credential=False)
    registry.add("refund", post, needs_credential=False, find=find)
    registry.add("send", post, needs_credential=False, idempotent=True)
    return registry


def build() -> Any:
    settings = MeshSettings()
    assert settings.policy_file is not None, "the test gives the gateway a policy file"
    return Toolgate(load_policy(settings.policy_file), tools(), Credentials(None)).agent()


agent = build()
