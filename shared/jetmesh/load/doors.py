"""The doors a load run sends through: ``nats`` (the mesh, as an ingress role, a fresh
workflow per request, as ``jetmesh publish`` does) and ``http`` (the HTTP gateway's
``POST /v1/agents/{agent}/tasks`` with ``Prefer: wait``).

Each is an async context manager that yields a :class:`Door`: its ``send`` for the driver,
its count of duplicated replies and, through ``nats``, each role's share of the time over
the answered workflows (:func:`jetmesh.load.breakdown.role_shares`, read from the event
log after the run; the ``http`` door reads no event log and gives none).

Example:
    >>> async with open_door(scenario) as door:                     # doctest: +SKIP
    ...     report = await run_scenario(scenario, door.send, duplicates=door.duplicates)
    ...     report = msgspec.structs.replace(report, roles=await door.roles())
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import msgspec

from .. import events as ev
from .._exceptions import CallFailed
from ..addresses import Subjects
from ..client import MeshClient
from ..envelope import Envelope, new_id
from ..identity.keystore import KeyStore
from ..settings import MeshSettings
from .breakdown import role_shares
from .report import RoleShare
from .scenario import HttpTarget, NatsTarget, Scenario

__all__ = ["Door", "http_door", "nats_door", "open_door"]


DUPLICATE_WINDOW_S = 60.0
"""A task's first reply is remembered for 60 to 120 s, long enough for the redeliveries
that cause a second one (an AckWait or a few), so a run keeps a bounded number of ids,
not one per request for its whole length."""

BREAKDOWN_SAMPLE = 200
"""At most this many answered workflows are read back for the per-role breakdown (spread
over the run: every k-th answered one once more than this have been answered)."""


async def _no_roles() -> list[RoleShare]:
    return []


@dataclass
class Door:
    """A way in: ``send`` one body and wait for its answer; ``duplicates`` read so far;
    ``roles``, after the run, each role's share of the time."""

    send: Callable[[bytes], Awaitable[None]]
    """Sends one body; raises ``TimeoutError`` (no answer) or another error (an error answer)."""
    duplicates: Callable[[], int]
    """Replies seen for a request already answered."""
    roles: Callable[[], Awaitable[list[RoleShare]]] = _no_roles
    """Each role's queueing, handling and share over a sample of the answered workflows,
    bottleneck first (empty where the door cannot read the event log)."""


class _Sample:
    """Up to ``size`` answered workflows, spread over the run (systematic: every
    ``stride``-th, the stride doubled and the sample halved whenever it is full)."""

    def __init__(self, size: int = BREAKDOWN_SAMPLE) -> None:
        self.size = size
        self.stride = 1
        self.seen = 0
        self.kept: list[str] = []

    def add(self, workflow: str) -> None:
        if self.seen % self.stride == 0:
            self.kept.append(workflow)
            if len(self.kept) >= self.size:
                self.kept = self.kept[::2]
                self.stride *= 2
        self.seen += 1


class _Replies:
    """Counts replies per task, as the client verifies them (``MeshClient.reply_listeners``:
    no second subscription, so each reply is delivered and decoded once); a second one
    within :data:`DUPLICATE_WINDOW_S` (to twice that) of the first is a duplicate. The
    tasks answered are kept in two sets, the newer one started every window, the older
    one dropped then."""

    def __init__(
        self, window_s: float = DUPLICATE_WINDOW_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.answered: set[str] = set()
        """The tasks first answered in the current window."""
        self._before: set[str] = set()
        """Those of the window before."""
        self._window_s = window_s
        self._clock = clock
        self._since = clock()
        self.duplicated = 0

    def on_reply(self, envelope: Envelope) -> None:
        if envelope.kind != "reply" or envelope.type == ev.EVENT_TYPE or not envelope.parent:
            return  # an error, or a streamed chunk
        if (now := self._clock()) - self._since >= self._window_s:
            self._before, self.answered, self._since = self.answered, set(), now
        if envelope.parent in self.answered or envelope.parent in self._before:
            self.duplicated += 1
        else:
            self.answered.add(envelope.parent)


@contextlib.asynccontextmanager
async def nats_door(
    scenario: Scenario, settings: MeshSettings | None = None
) -> AsyncIterator[Door]:
    """Send as the target's ingress role (issued on first use in development).

    Args:
        scenario: Its ``target`` must be a :class:`NatsTarget`.
        settings: The mesh settings; default: from the environment (``JETMESH_*``), with the
            target's ``url`` and ``keys_dir`` when it gives them.

    Raises:
        ConfigError: no identity for the role and no root key to issue one.
    """
    target = scenario.target
    assert isinstance(target, NatsTarget)
    s = settings or MeshSettings()
    changes: dict[str, Any] = {}
    if target.url:
        changes["nats_url"] = target.url
    if target.keys_dir:
        changes["keys_dir"] = target.keys_dir
    s = s.model_copy(update=changes) if changes else s
    store = KeyStore(s.resolved_keys_dir)
    identity = store.ensure(
        target.role, subjects=Subjects(s.subject_prefix), ttl_s=s.cert_ttl_s, ingress=True
    )
    async with MeshClient(s, identity, roots=store.roots()) as mesh:
        replies = _Replies()
        mesh.reply_listeners.append(replies.on_reply)
        token = mesh.mint_token("load", tenant="load", scopes=target.scopes)
        agent, type_, timeout = scenario.agent, scenario.payload.type, scenario.timeout_s

        answered = _Sample()

        async def send(body: bytes) -> None:
            workflow = new_id()
            await mesh.request(
                agent,
                msgspec.Raw(body),
                token=token,
                returns=msgspec.Raw,
                timeout=timeout,
                type_=type_,
                workflow=workflow,
            )
            answered.add(workflow)

        async def roles() -> list[RoleShare]:
            return await role_shares(mesh, answered.kept)

        yield Door(send=send, duplicates=lambda: replies.duplicated, roles=roles)


@contextlib.asynccontextmanager
async def http_door(
    scenario: Scenario, transport: httpx.AsyncBaseTransport | None = None
) -> AsyncIterator[Door]:
    """Send to the gateway with the target's API key; a 200 ``completed`` is an answer, a
    200 ``failed`` or an error status an error, a 202 (not finished within the wait) lost.

    Args:
        scenario: Its ``target`` must be an :class:`HttpTarget`.
        transport: An ``httpx`` transport to send through instead of the network (an ASGI
            app's, in tests).
    """
    target = scenario.target
    assert isinstance(target, HttpTarget)
    agent, timeout = scenario.agent, scenario.timeout_s
    headers = {"Prefer": f"wait={timeout:g}", "Content-Type": "application/json"}
    if key := target.key():
        headers["Authorization"] = f"Bearer {key}"
    params = {"type": scenario.payload.type} if scenario.payload.type else {}
    path = f"/v1/agents/{agent}/tasks"
    limits = httpx.Limits(max_connections=scenario.max_in_flight)
    async with httpx.AsyncClient(
        base_url=target.base_url,
        headers=headers,
        timeout=timeout + 5,
        limits=limits,
        transport=transport,
    ) as client:

        async def send(body: bytes) -> None:
            response = await client.post(path, content=body, params=params)
            if response.status_code == 202:
                raise TimeoutError(f"{agent}: not finished within {timeout:g} s")
            try:
                data = response.json()
            except ValueError:
                data = {}
            if response.status_code != 200:
                reason = str(data.get("type", "")) if isinstance(data, dict) else ""
                raise CallFailed(agent, f"HTTP {response.status_code}", response.text[:200], reason)
            if data.get("status") != "completed":
                error = data.get("error") or {}
                raise CallFailed(
                    agent,
                    error.get("type", "failed"),
                    error.get("message", ""),
                    error.get("reason", ""),
                )

        yield Door(send=send, duplicates=lambda: 0)


def open_door(
    scenario: Scenario, settings: MeshSettings | None = None
) -> contextlib.AbstractAsyncContextManager[Door]:
    """The scenario's door: :func:`nats_door` or :func:`http_door`."""
    if isinstance(scenario.target, HttpTarget):
        return http_door(scenario)
    return nats_door(scenario, settings)
