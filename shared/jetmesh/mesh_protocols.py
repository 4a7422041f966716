"""What the library's helpers need of a mesh connection, as small protocols.

Dead-lettering, signals, the event log, ingress, the replica's failure paths and the tool
gateway each take a connection to the mesh. They name here only what they use (verify a
message or a caller token, write an event, store bytes on a stream, read a stream's stored
messages) instead of reaching into a :class:`~jetmesh.MeshClient`'s parts (its trust store,
verifier, publisher or JetStream context). :class:`~jetmesh.MeshClient` satisfies every
protocol here structurally; a test or another client can satisfy just the one a helper asks
for.

Every received or stored message is verified through :meth:`Verifying.verify`: the one
verification path of a process (the replica's tasks, replies, the event log, signals,
kept tasks, a dead letter's original).

Example:
    >>> async def first_signer(mesh: EventLogReading, workflow: str) -> str:  # doctest: +SKIP
    ...     subject = mesh.subjects.workflow_events(workflow)
    ...     async for stored in read_from(mesh, mesh.settings.events_stream, subject):
    ...         verified = await mesh.verify(stored, stored_at=stored.stored_at, audit=True)
    ...         return verified.certificate.name
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from .addresses import Subjects
from .bus.direct import MessageStore
from .envelope import Envelope, Kind
from .events import Event
from .identity.certificates import Certificate
from .identity.tokens import Caller
from .identity.verifier import Verified
from .settings import MeshSettings


class Received(Protocol):
    """A message as it came: a NATS message, a stream's stored one, a kept task."""

    @property
    def subject(self) -> str: ...

    @property
    def data(self) -> bytes: ...

    @property
    def headers(self) -> Mapping[str, str] | None: ...


@dataclass(frozen=True)
class Message:
    """A message given by its parts: one judged on another subject than it was stored on
    (a dead letter's original, on its role's task subject)."""

    subject: str
    data: bytes
    headers: Mapping[str, str] | None


class Verifying(Protocol):
    """Checks what others signed: messages, caller tokens, certificates."""

    async def verify(
        self, msg: Received, *, stored_at: float | None, audit: bool = False
    ) -> Verified:
        """Verify ``msg`` (signature, signer, addressing, age, replay, caller, chain)."""
        ...

    async def verify_token(self, token: str) -> Caller:
        """The verified caller of a caller token."""
        ...

    async def certificate_of(self, key_id: str) -> Certificate:
        """The verified certificate of the key ``key_id``."""
        ...


class Member(Protocol):
    """Who speaks: the identity's name, this process's instance, and the mesh it is in."""

    @property
    def name(self) -> str: ...

    @property
    def instance(self) -> str: ...

    @property
    def subjects(self) -> Subjects: ...

    @property
    def settings(self) -> MeshSettings: ...


class EventWriting(Member, Protocol):
    """Writes signed events to a workflow's log."""

    def event_envelope(
        self, workflow: str, event: Event, *, caller: str, parent: str | None = None
    ) -> Envelope: ...

    async def emit(
        self,
        workflow: str,
        event: Event,
        *,
        caller: str,
        parent: str | None = None,
        stored: bool = False,
    ) -> str | None: ...


class Storing(Protocol):
    """Stores messages on streams, waiting for each one's ack."""

    async def store(
        self,
        subject: str,
        data: bytes,
        headers: dict[str, str],
        *,
        no_stream_s: float | None = None,
    ) -> None:
        """Publish ``data`` as it is and wait until a stream stored it."""
        ...

    async def store_sealed(self, subject: str, envelope: Envelope) -> None:
        """Sign ``envelope``, publish it and wait until a stream stored it."""
        ...


class Sending(Member, Protocol):
    """Builds envelopes under this identity and sends tasks and replies."""

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
    ) -> Envelope: ...

    async def send_task(self, envelope: Envelope) -> None: ...

    async def send_reply(self, envelope: Envelope, subject: str) -> None: ...


class EventLogReading(Member, Verifying, MessageStore, Protocol):
    """Reads a workflow's log and verifies what it reads."""
