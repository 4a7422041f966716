"""An in-process mesh on the session servers: keys, replicas, an ingress, an attacker, and
readers for dead letters and audit events.

Everything a :class:`Mesh` starts is stopped by :meth:`Mesh.aclose` (the ``mesh`` fixture
calls it), replicas first so that their last events reach the stream.

Example:
    >>> replicas = await mesh.start_replicas(echo.agent, count=3)     # doctest: +SKIP
    >>> client = await mesh.ingress()                                 # doctest: +SKIP
    >>> await client.request("echo", Echo("hi"), token=mesh.token(), returns=Echo)  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import jwt
import msgspec
from nats.aio.client import Client as NATS
from nats.js.api import PubAck
from nats.js.errors import NotFoundError

from jetmesh import (
    Agent,
    Context,
    Envelope,
    Identity,
    KeyStore,
    MeshClient,
    MeshSettings,
    Replica,
    Subjects,
)
from jetmesh.bus.nats_client import MeshNatsClient
from jetmesh.dead_letters import DETAIL_HEADER, REASON_HEADER, SUBJECT_HEADER, UNVERIFIED_WORKFLOW
from jetmesh.envelope import new_id
from jetmesh.event_log import LoggedEvent, TaskNode, build_tree, read_events, read_settled
from jetmesh.identity.keys import KeyPair
from jetmesh.identity.signing import Signer
from jetmesh.processes import AgentProcess, settings_env

REPO_ROOT = Path(__file__).resolve().parents[2]
"""Where ``jetmesh run`` must start for ``tests.harness.agents`` to import."""

CERT_TTL_S = 86400.0
"""Long enough that `jetmesh run` keeps a pre-issued certificate instead of renewing it."""
WAIT_S = 10.0
"""How long helpers wait for something asynchronous (a dead letter, an event) to appear."""


AgentProcesses = Callable[[str, int], Awaitable[list[AgentProcess]]]
"""The ``agent_processes`` fixture: ``await start(target, count)`` -> started processes."""


class Echo(msgspec.Struct, frozen=True):
    """The payload of the test agents."""

    __mesh_type__ = "test.Echo/1"

    text: str


class EchoAgent:
    """An ``echo``-style agent that records the text of every task its handler ran for."""

    def __init__(self, name: str = "echo", *, concurrency: int | None = None) -> None:
        self.agent = Agent(name, concurrency=concurrency)
        self.seen: list[str] = []

        @self.agent.handler
        async def echo(msg: Echo, ctx: Context) -> Echo:
            self.seen.append(msg.text)
            return Echo(text=msg.text.upper())


class Sealed(NamedTuple):
    """A signed task: the envelope, the exact bytes and the headers to publish."""

    envelope: Envelope
    data: bytes
    headers: dict[str, str]


class DeadLetter(NamedTuple):
    seq: int
    subject: str
    reason: str
    detail: str
    original_subject: str
    data: bytes
    headers: dict[str, str]


class Mesh:
    """Builds and tears down a mesh in this process, on one test's isolated settings."""

    def __init__(self, settings: MeshSettings) -> None:
        self.settings = settings
        self.keys = KeyStore(settings.resolved_keys_dir)
        self.root = self.keys.init_root()
        self.replicas: list[Replica] = []
        self._client: MeshClient | None = None
        self._started = False
        self._connections: list[NATS] = []
        self._identities: dict[str, Identity] = {}

    # -- configuration ---------------------------------------------------------------------

    def configure(self, **updates: Any) -> MeshSettings:
        """Change settings (validated) before anything is started; returns them."""
        assert not self._started, "configure the mesh before starting anything"
        self.settings = MeshSettings(**{**self.settings.model_dump(), **updates})
        return self.settings

    @property
    def subjects(self) -> Subjects:
        return Subjects(self.settings.subject_prefix)

    @property
    def roots(self) -> dict[str, bytes]:
        return self.keys.roots()

    def identity(self, name: str, *, ingress: bool = False, scopes: Sequence[str] = ()) -> Identity:
        """``name``'s key and certificate, issued by the root on first use (once: every
        replica of a role shares them, as processes sharing a keys directory do)."""
        if name not in self._identities:
            self._identities[name] = self.keys.issue(
                name, subjects=self.subjects, ttl_s=CERT_TTL_S, ingress=ingress, scopes=scopes
            )
        return self._identities[name]

    # -- running ---------------------------------------------------------------------------

    async def start_replicas(self, agent: Agent, count: int = 1) -> list[Replica]:
        """Start ``count`` replicas of ``agent`` (one identity, like processes of one role)."""
        self._started = True
        identity = self.identity(agent.name, scopes=agent.scopes)
        started = []
        for _ in range(count):
            replica = Replica(agent, self.settings, identity, roots=self.roots)
            self.replicas.append(replica)
            await replica.start()
            started.append(replica)
        return started

    async def ingress(self) -> MeshClient:
        """The ``cli`` ingress client (started on first use), which mints caller tokens."""
        if self._client is None:
            self._started = True
            identity = self.identity("cli", ingress=True)
            self._client = MeshClient(self.settings, identity, roots=self.roots)
            await self._client.start()
        return self._client

    def token(
        self,
        subject: str = "alice",
        *,
        scopes: Sequence[str] = (),
        ttl_s: float | None = None,
        tenant: str = "acme",
    ) -> str:
        """A caller token minted by the ingress (start it first with :meth:`ingress`)."""
        assert self._client is not None, "await mesh.ingress() first"
        return self._client.mint_token(subject, tenant=tenant, scopes=scopes, ttl_s=ttl_s)

    async def attacker(self) -> Attacker:
        """A connection with no identity that publishes whatever it likes (nats-py, as the
        mesh's own client: its ``flush()`` returns once the server has the subscriptions
        made before it, so a listener it sets up is there when the test goes on)."""
        self._started = True
        nc = MeshNatsClient()
        await nc.connect(self.settings.nats_url, name="attacker")
        self._connections.append(nc)
        return Attacker(nc)

    async def aclose(self) -> None:
        """Drain every replica, close the ingress and raw connections. Idempotent."""
        replicas, self.replicas = self.replicas, []
        connections, self._connections = self._connections, []
        try:
            drained = await asyncio.gather(
                *(r.drain(timeout=5.0) for r in replicas), return_exceptions=True
            )
        finally:
            if self._client is not None:
                await self._client.close()
            for nc in connections:
                if not nc.is_closed:
                    await nc.close()
        for outcome in drained:
            if isinstance(outcome, BaseException):
                raise outcome

    # -- building signed messages ----------------------------------------------------------

    def seal(
        self,
        body: Any,
        *,
        to: str = "echo",
        token: str,
        workflow: str | None = None,
        type_: str | None = None,
        **changes: Any,
    ) -> Sealed:
        """A task signed by the ingress and replying to it, with the delegation chain an
        ingress starts; ``changes`` replace envelope fields before signing
        (``created=...``, ``sender=...``; the chain is made for the changed envelope
        unless ``chain=...`` is among them)."""
        client = self._client
        assert client is not None, "await mesh.ingress() first"
        envelope = client.envelope(
            kind="task",
            workflow=workflow or new_id(),
            to=to,
            body=body,
            caller=token,
            step=to,
            reply_to=client.reply_subject,
            deadline=time.time() + WAIT_S,
            type_=type_,
        )
        if changes:
            envelope = msgspec.structs.replace(envelope, **changes)
        if "chain" not in changes:
            envelope = msgspec.structs.replace(envelope, chain=(self.root_link(envelope),))
        data, headers = client.seal(envelope)
        return Sealed(envelope, data, headers)

    def root_link(self, envelope: Envelope, **changes: Any) -> str:
        """The first link of ``envelope``'s chain, as the ingress would sign it (its
        ``to``, ``workflow`` and ``step``, the token's scopes and expiry), with ``changes``
        (``scopes=...``, ``expires=...``, ``workflow=...``)."""
        assert self._client is not None, "await mesh.ingress() first"
        claims = jwt.decode(envelope.caller, options={"verify_signature": False})
        fields: dict[str, Any] = {
            "to": envelope.to,
            "workflow": envelope.workflow,
            "step": envelope.step,
            "scopes": claims.get("scopes", []),
            "expires": float(claims["exp"]),
        }
        fields.update(changes)
        return self._client.delegate(envelope.caller, **fields)

    async def register_certificate(self, kid: str, certificate: str) -> None:
        """Put a certificate into the registry bucket under ``kid``, as an agent would."""
        kv = await (await self.ingress()).js.key_value(self.settings.registry_bucket)
        await kv.put(kid, certificate.encode())

    def expect_reply(
        self, envelope: Envelope, *, answered_by: str | None = None
    ) -> asyncio.Future[Envelope]:
        """A future for the reply to ``envelope`` (register it before publishing), signed
        by its addressee or by ``answered_by`` (a role it was sent to by mistake)."""
        assert self._client is not None, "await mesh.ingress() first"
        if answered_by is not None:
            envelope = msgspec.structs.replace(envelope, to=answered_by)
        return self._client.pending.expect(envelope)

    # -- reading back ----------------------------------------------------------------------

    async def dead_letters(self, agent: str) -> list[DeadLetter]:
        """Every dead letter of ``agent`` so far, in stream order (``js.get_msg`` by seq)."""
        js = (await self.ingress()).js
        stream, subject = self.settings.dlq_stream, self.subjects.dlq(agent)
        out: list[DeadLetter] = []
        seq = 1
        while True:
            try:
                raw = await js.get_msg(stream, seq=seq, subject=subject, next=True)
            except NotFoundError:
                return out
            assert raw.seq is not None
            headers = dict(raw.headers or {})
            out.append(
                DeadLetter(
                    seq=raw.seq,
                    subject=raw.subject or "",
                    reason=headers.get(REASON_HEADER, ""),
                    detail=headers.get(DETAIL_HEADER, ""),
                    original_subject=headers.get(SUBJECT_HEADER, ""),
                    data=raw.data or b"",
                    headers=headers,
                )
            )
            seq = raw.seq + 1

    async def wait_dead_letters(
        self, agent: str, reason: str, *, count: int = 1, timeout: float = WAIT_S
    ) -> list[DeadLetter]:
        """Dead letters of ``agent`` with ``reason``, once at least ``count`` exist (or the
        timeout passes: the caller asserts on what it gets)."""
        deadline = time.monotonic() + timeout
        while True:
            found = [d for d in await self.dead_letters(agent) if d.reason == reason]
            if len(found) >= count or time.monotonic() > deadline:
                return found
            await asyncio.sleep(0.02)

    async def events(self, workflow: str) -> list[LoggedEvent]:
        """A workflow's audit events, each verified, in stream order (read within the
        library's default bound: on two loaded cores a read of a few dozen events, each
        verified, once took longer than half a second)."""
        return await read_events(await self.ingress(), workflow)

    async def unverified_events(self) -> list[LoggedEvent]:
        """Audit events of messages refused before their envelope could be read."""
        return await self.events(UNVERIFIED_WORKFLOW)

    async def wait_events(
        self,
        workflow: str,
        until: Callable[[list[LoggedEvent]], bool],
        *,
        timeout: float = WAIT_S,
    ) -> list[LoggedEvent]:
        """Re-read a workflow's events until ``until`` holds or the timeout passes."""
        deadline = time.monotonic() + timeout
        while True:
            logged = await self.events(workflow)
            if until(logged) or time.monotonic() > deadline:
                return logged
            await asyncio.sleep(0.05)

    async def settled(self, agent: str, *, timeout: float = WAIT_S, poll_s: float = 0.05) -> None:
        """Wait until ``agent``'s consumer has nothing left to deliver and nothing delivered
        unacknowledged: after that no late redelivery can run a handler again, so a count
        of effects taken now is final ("exactly once" checks that do not stop at the
        first sighting)."""
        js = (await self.ingress()).js
        deadline = time.monotonic() + timeout
        while True:
            info = await js.consumer_info(self.settings.tasks_stream, agent)
            if info.num_pending == 0 and info.num_ack_pending == 0:
                return
            assert time.monotonic() < deadline, f"{agent} still has deliveries out: {info}"
            await asyncio.sleep(poll_s)

    async def tree(self, workflow: str, *, hops: int, timeout: float = WAIT_S) -> list[TaskNode]:
        """The workflow's task tree once it has ``hops`` tasks and none is still running.

        ``read_settled`` alone can return early: agents publish events asynchronously, so a
        finished callee whose events are not stored yet is simply absent from the tree.
        """
        client = await self.ingress()
        deadline = time.monotonic() + timeout
        while True:
            roots = build_tree(await read_settled(client, workflow, timeout=timeout))
            if count_tasks(roots) >= hops or time.monotonic() > deadline:
                return roots
            await asyncio.sleep(0.05)


class Attacker:
    """Publishes raw bytes and headers, bypassing every check of the library."""

    def __init__(self, nc: NATS) -> None:
        self.nc = nc
        self.js = nc.jetstream()

    async def publish(
        self, subject: str, data: bytes, headers: dict[str, str] | None = None
    ) -> PubAck:
        """Publish into JetStream; returns the stream's ack."""
        return await self.js.publish(subject, data, headers=headers)


def count_tasks(nodes: list[TaskNode]) -> int:
    """Task nodes in a tree (the ``accepted`` roots of ingress are not tasks)."""
    return sum((n.task is not None) + count_tasks(n.children) for n in nodes)


async def until(done: Callable[[], bool], what: str, timeout: float = WAIT_S) -> None:
    """Wait until ``done()`` holds, e.g. a replica's count of tasks settled: a caller has
    its reply before the replica has stored the task's ``completed`` event and acked it."""
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, f"never: {what}"
        await asyncio.sleep(0.01)


def kinds(logged: list[LoggedEvent], kind: str) -> list[LoggedEvent]:
    return [e for e in logged if e.event.kind == kind]


def rejected(logged: list[LoggedEvent], reason: str, agent: str | None = None) -> list[LoggedEvent]:
    """The ``rejected`` events with ``reason`` (emitted by ``agent``, when given)."""
    return [
        e
        for e in kinds(logged, "rejected")
        if e.event.reason == reason and agent in (None, e.event.agent)
    ]


def signed_by(key: KeyPair, sealed: Sealed) -> dict[str, str]:
    """``sealed``'s headers with its signature replaced by one from ``key``."""
    return {**sealed.headers, **Signer(key).headers(sealed.data)}


async def jetmesh(mesh: Mesh, *args: str) -> tuple[int, str, str]:
    """Run ``jetmesh ARGS`` as a process on the mesh's settings: (exit code, out, err)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "jetmesh.cli",
        *args,
        env=settings_env(mesh.settings),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 60)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()
