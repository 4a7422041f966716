"""The mesh client: one connection's worth of signed sending and verified receiving.

Agents, ingresses (the CLI, a gateway) and load harnesses all use a :class:`MeshClient`.
It is the one boundary layer where signing, verification, tracing, dead-lettering and
event emission happen; handlers never see raw bytes.

Example:
    >>> store = KeyStore(settings.resolved_keys_dir)                  # doctest: +SKIP
    >>> identity = store.ensure("gateway", subjects=Subjects(), ttl_s=86400, ingress=True)
    >>> async with MeshClient(settings, identity, roots=store.roots()) as mesh:
    ...     token = mesh.mint_token("alice", tenant="acme", scopes=["kb:read"])
    ...     answer = await mesh.request("echo", Echo(text="hi"), token=token, returns=Echo)
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Self, TypeVar

import msgspec
from nats.aio.msg import Msg

from . import events as ev
from ._exceptions import ConfigError, MeshTimeout, PublishFailed, RejectedMessage
from .bus.tracing import TRACEPARENT_HEADER, traceparent
from .calls import PendingCalls, decode_reply
from .dead_letters import reject
from .envelope import (
    Envelope,
    Kind,
    encode,
    encode_envelope,
    exceeds,
    new_id,
    type_name,
)
from .envelope import now as clock
from .identity.delegation import LinkSigner, digest, mint_link
from .identity.keystore import Identity
from .identity.signing import BatchSigner, Signer
from .identity.tokens import mint_token
from .identity.verifier import MSG_ID_HEADER
from .ingress import record_accepted, start_chain
from .logins import ServerLogin
from .lost_replies import await_reply
from .mesh_connection import MeshConnection
from .settings import MeshSettings
from .signals import send_signal, waiting_step
from .telemetry import traces

log = logging.getLogger("jetmesh.client")

T = TypeVar("T")


_NULL = msgspec.Raw(b"null")


class MeshClient(MeshConnection):
    """A connection to the mesh under one identity (an agent role or an ingress) that
    signs what it sends and waits for replies (see :class:`MeshConnection` for the
    servers, the registry and verification)."""

    def __init__(
        self,
        settings: MeshSettings,
        identity: Identity,
        *,
        roots: Mapping[str, bytes],
        instance: str | None = None,
        login: ServerLogin | None = None,
    ) -> None:
        """
        Args:
            login: who to be on the servers; by default the role's own when the keys
                directory holds them (``nats/<name>.nk``, ``redis/<name>.pass``), else the
                servers' default user (open servers).
        """
        super().__init__(settings, identity, roots=roots, instance=instance, login=login)
        self.signer = Signer(identity.key)
        self.batch_signer = BatchSigner(self.signer) if settings.batch_signing else None
        self._links = LinkSigner(identity.key)
        self.reply_subject = self.subjects.reply(self.name, self.instance)
        self.pending = PendingCalls()
        self.reply_listeners: list[Callable[[Envelope], None]] = []
        """Called with every verified reply on this client's reply subject (replies and
        streamed chunks, expected or not) before it is matched to its call: a load
        generator counts second replies to one task there (:mod:`jetmesh.load.doors`). One
        that raises is logged; the reply still goes to its call."""

    async def start(self) -> Self:
        """Connect and listen for replies; returns self (see
        :meth:`MeshConnection.start`). The first client of a process installs its tracer
        provider when the ``OTEL_*`` variables ask for traces
        (:func:`~jetmesh.telemetry.traces.install_tracing`)."""
        traces.install_tracing(self.name, self.instance)
        await super().start()
        await self.nc.subscribe(self.reply_subject, cb=self._on_reply)
        await self.nc.flush()
        return self

    async def close(self) -> None:
        """Cancel the calls still waiting, then close (safe to call twice)."""
        self.pending.cancel_all()
        await super().close()

    # -- building and sending --------------------------------------------------------------

    def envelope(
        self,
        *,
        kind: Kind,
        workflow: str,
        to: str,
        body: Any,
        caller: str,
        parent: str | None = None,
        step: str = "",
        reply_to: str | None = None,
        deadline: float | None = None,
        type_: str | None = None,
        chain: tuple[str, ...] = (),
    ) -> Envelope:
        raw = body if isinstance(body, msgspec.Raw) else msgspec.Raw(encode(body))
        return Envelope(
            id=new_id(),
            kind=kind,
            workflow=workflow,
            sender=self.name,
            to=to,
            created=clock(),
            type=type_ if type_ is not None else type_name(type(body)),
            parent=parent,
            step=step,
            reply_to=reply_to,
            caller=caller,
            chain=chain,
            deadline=deadline,
            body=raw,
        )

    def delegate(
        self,
        after: str,
        *,
        to: str,
        workflow: str,
        step: str,
        scopes: Iterable[str],
        expires: float,
    ) -> str:
        """Sign the delegation link that hands ``to`` the authority this process holds:
        ``after`` is the last link of the task being handled, or the caller token when an
        ingress starts a workflow (see :mod:`jetmesh.identity.delegation` and
        :mod:`jetmesh.ingress`)."""
        return mint_link(
            self._links,
            to=to,
            workflow=workflow,
            step=step,
            scopes=scopes,
            expires=expires,
            prev=digest(after),
        )

    def seal(self, envelope: Envelope, span_id: str | None = None) -> tuple[bytes, dict[str, str]]:
        """Encode and sign ``envelope``: the exact bytes to publish and their headers."""
        data = encode_envelope(envelope)
        headers = self.signer.headers(data)
        headers[MSG_ID_HEADER] = envelope.id
        headers[TRACEPARENT_HEADER] = traceparent(envelope.workflow, span_id)
        return data, headers

    async def seal_batched(self, envelope: Envelope) -> tuple[bytes, dict[str, str]]:
        """Like :meth:`seal`, but signed together with whatever else this process seals in
        the same turn of the event loop (one signature over a Merkle root)."""
        if self.batch_signer is None:
            return self.seal(envelope)
        data = encode_envelope(envelope)
        headers = await self.batch_signer.sign(data)
        headers[MSG_ID_HEADER] = envelope.id
        headers[TRACEPARENT_HEADER] = traceparent(envelope.workflow)
        return data, headers

    async def send_task(self, envelope: Envelope) -> None:
        """Publish a task to its agent's subject and wait for the stream's ack (in a
        ``send`` span, tracing on)."""
        subject = self.subjects.task(envelope.to)
        with traces.sending(subject, envelope.id, envelope.workflow):
            data, headers = await self.seal_batched(envelope)
            await self.publisher.publish(subject, data, headers)

    async def send_reply(self, envelope: Envelope, subject: str) -> None:
        data, headers = await self.seal_batched(envelope)
        await self.nc.publish(subject, data, headers=headers)

    async def store_sealed(self, subject: str, envelope: Envelope) -> None:
        """Sign ``envelope`` on its own (:meth:`seal`), publish it on ``subject`` and wait
        until a stream stored it."""
        await self.store(subject, *self.seal(envelope))

    def event_envelope(
        self, workflow: str, event: ev.Event, *, caller: str, parent: str | None = None
    ) -> Envelope:
        """The envelope of an event of ``workflow``. An event whose recorded ``body`` would
        take it over ``max_payload_bytes`` goes without the body's value, marked
        ``omitted``."""
        envelope = self.envelope(
            kind="event",
            workflow=workflow,
            to="events",
            body=event,
            caller=caller,
            parent=parent,
            step=event.step,
            type_=ev.EVENT_TYPE,
        )
        if event.body is not None and exceeds(envelope, self.settings.max_payload_bytes):
            event = msgspec.structs.replace(
                event, body=ev.EventPayload(type=event.body.type, value=_NULL, omitted=True)
            )
            envelope = msgspec.structs.replace(envelope, body=msgspec.Raw(encode(event)))
        return envelope

    async def emit(
        self,
        workflow: str,
        event: ev.Event,
        *,
        caller: str,
        parent: str | None = None,
        stored: bool = False,
    ) -> str | None:
        """Publish a signed event to the workflow's log, acknowledged in the background (its
        id returned, for :meth:`~jetmesh.bus.publisher.StreamPublisher.stored`) or,
        ``stored``, before this returns (None); see :meth:`event_envelope`.

        Args:
            stored: Return once the stream has stored it: the event that says how a task
                ended, before its delivery is settled (a process killed after the ack
                must not take the event with it: events go through the group commit's
                queue, the ack straight to the socket). An event the stream refuses is
                then retried in the background, as any other (its id returned).
        """
        envelope = self.event_envelope(workflow, event, caller=caller, parent=parent)
        data, headers = await self.seal_batched(envelope)
        subject = self.subjects.event(workflow, event.kind)
        if stored:
            try:
                await self.publisher.publish(subject, data, headers)
                return None
            except PublishFailed as exc:
                log.warning("event %s not stored (%s): retried in the background", envelope.id, exc)
        await self.publisher.publish_later(envelope.id, subject, data, headers)
        return envelope.id

    async def flush_events(self, timeout: float = 10.0) -> bool:
        """Wait until every event this client emitted is stored; False on timeout."""
        return await self._publisher.flush(timeout) if self._publisher is not None else True

    # -- calls -----------------------------------------------------------------------------

    async def call(
        self,
        agent: str,
        body: Any,
        *,
        returns: type[T],
        workflow: str,
        caller: str,
        parent: str | None = None,
        step: str = "",
        timeout: float | None = None,
        type_: str | None = None,
    ) -> T:
        """Send a task to ``agent`` and wait for its reply, decoded as ``returns``.

        Raises:
            MeshTimeout: no reply before the deadline.
            CallFailed: the agent replied with an error.
            SchemaViolation: the reply's body is not a ``returns``.
        """
        reply = await self.call_envelope(
            agent,
            body,
            workflow=workflow,
            caller=caller,
            parent=parent,
            step=step,
            timeout=timeout,
            type_=type_,
        )
        return decode_reply(agent, reply, returns)

    async def call_envelope(
        self,
        agent: str,
        body: Any,
        *,
        workflow: str,
        caller: str,
        parent: str | None = None,
        step: str = "",
        timeout: float | None = None,
        type_: str | None = None,
        chain: tuple[str, ...] | None = None,
        on_chunk: Callable[[Envelope], None] | None = None,
    ) -> Envelope:
        """Like :meth:`call`, but return the verified reply envelope (``reply`` or
        ``error``) undecoded, for callers that record it.

        ``chain`` is the task's delegation chain; None starts one here, which only an
        ingress may (see :meth:`delegate`). ``on_chunk`` takes the chunks the callee
        streams meanwhile (:mod:`jetmesh.runtime.streaming`), checked as replies are.

        Raises:
            MeshTimeout: no reply before the deadline.
        """
        timeout = timeout if timeout is not None else self.settings.call_timeout_s
        if chain is None:  # a workflow starts here: bind the caller token to it
            chain = await start_chain(self, caller, to=agent, workflow=workflow, step=step)
        task = self.envelope(
            kind="task",
            workflow=workflow,
            to=agent,
            body=body,
            caller=caller,
            parent=parent,
            step=step,
            reply_to=self.reply_subject,
            deadline=clock() + timeout,
            type_=type_,
            chain=chain,
        )
        future = self.pending.expect(task, on_chunk)
        try:
            async with asyncio.timeout(timeout):
                await self.send_task(task)
                return await await_reply(self, task, future)
        except TimeoutError:
            raise MeshTimeout(f"no reply from {agent} within {timeout:.1f}s") from None
        finally:
            self.pending.forget(task.id)

    async def _on_reply(self, msg: Msg) -> None:
        try:
            verified = await self.verify(msg, stored_at=None)
        except RejectedMessage as exc:
            try:
                await reject(self, msg.subject, msg.data, msg.headers, exc)
            except Exception as dl_exc:  # a reply is not redelivered: say so loudly
                log.error("refused reply on %s not dead-lettered: %s", msg.subject, dl_exc)
            try:  # a reply refused for its caller token ends its call now
                self.pending.refuse(exc)
            except RejectedMessage as forged:  # not the answer of the call it names
                log.warning("refused reply on %s: %s", msg.subject, forged)
            return
        envelope, signer = verified.envelope, verified.certificate.name
        for listener in self.reply_listeners:
            try:
                listener(envelope)
            except Exception:  # an observer's bug must not cost the call its reply
                log.exception("reply listener %r failed on %s", listener, envelope.id)
        try:
            if envelope.type == ev.EVENT_TYPE and envelope.kind == "reply":  # a streamed chunk
                self.pending.chunk(envelope, signer)
            elif not self.pending.resolve(envelope, signer):
                log.debug("late or unexpected reply %s", envelope.id)
        except RejectedMessage as exc:  # forged, or no chunk of the call it names
            exc.envelope = verified.envelope  # type: ignore[attr-defined]
            try:
                await reject(self, msg.subject, msg.data, msg.headers, exc)
            except Exception as dl_exc:
                log.error("forged reply on %s not dead-lettered: %s", msg.subject, dl_exc)

    # -- ingress ---------------------------------------------------------------------------

    def mint_token(
        self,
        subject: str,
        *,
        tenant: str = "default",
        scopes: Sequence[str] = (),
        ttl_s: float | None = None,
    ) -> str:
        """Mint a caller token (this identity's certificate must be an ingress one).

        Raises:
            ConfigError: this identity may not mint tokens.
        """
        if not self.certificate.ingress:
            raise ConfigError(f"{self.name} is not an ingress; it cannot mint caller tokens")
        return mint_token(
            self.identity.key,
            subject=subject,
            tenant=tenant,
            scopes=scopes,
            ttl_s=ttl_s if ttl_s is not None else self.settings.token_ttl_s,
        )

    async def signal(
        self, workflow: str, name: str, value: Any, *, token: str, step: str | None = None
    ) -> None:
        """Send signal ``name`` with ``value`` to the step of ``workflow`` that waits for it
        (``ctx.wait_for(name)``), for the caller of ``token`` (see :mod:`jetmesh.signals`).

        Args:
            step: the waiting task's step key; by default the one step whose ``waiting``
                event for ``name`` is in the log (a signal sent before its step waits
                must name the step).

        Raises:
            InvalidToken: ``token`` is not a valid caller token.
            ConfigError: ``step`` is not given and not exactly one step waits for ``name``.
            PublishFailed: the stream did not store it.
        """
        if step is None:
            step = await waiting_step(self, workflow, name)
        await send_signal(self, workflow, name, value, token=token, step=step)

    async def request(
        self,
        agent: str,
        body: Any,
        *,
        token: str,
        returns: type[T],
        timeout: float | None = None,
        workflow: str | None = None,
        type_: str | None = None,
    ) -> T:
        """Start a workflow at ``agent`` as the caller of ``token`` and wait for the result.

        Args:
            agent: the agent role that receives the first task.
            body: the task body (a msgspec Struct, or ``msgspec.Raw`` JSON).
            token: the caller token (see :meth:`mint_token`).
            returns: the type to decode the reply into (``msgspec.Raw`` for raw JSON).
            timeout: seconds to wait (default ``call_timeout_s``).
            workflow: the workflow id (default: a new one).
            type_: the payload type name (default: the body's type name).

        Raises:
            MeshTimeout, CallFailed, RejectedMessage: as :meth:`call`; the token is verified
                here first, so a bad token fails before anything is sent.
        """
        workflow = workflow or new_id()
        type_ = type_ if type_ is not None else type_name(type(body))
        raw = body if isinstance(body, msgspec.Raw) else msgspec.Raw(encode(body))
        await record_accepted(self, workflow, agent, raw, type_=type_, token=token)
        return await self.call(
            agent,
            raw,
            returns=returns,
            workflow=workflow,
            caller=token,
            step=agent,
            timeout=timeout,
            type_=type_,
        )
