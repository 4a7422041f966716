"""Streaming partial results: ``ctx.stream(chunk)`` in a handler, ``ctx.call(..., stream=True)``
in its caller.

A chunk is a signed ``chunk`` event (:data:`jetmesh.events.CHUNK`) of the streaming task:
its ``step``, its index in ``key`` (``0``, ``1``, ...), the chunk in ``body``. It is stored
in the events stream under an id made of the task's id and the index
(:func:`chunk_id`), so a chunk sent twice is stored once, and anyone who may read the
workflow's events reads the stream back (:func:`read_chunks`, from any index on: a reader
that reconnects resumes where it was).

While the caller waits, each chunk also goes to the task's reply subject, as a ``reply``
envelope whose type is the event's (``mesh.Event/1``) and whose body is the chunk event.
The caller routes it to the call's stream only when its verified signer is the role called,
for that call's workflow and step (:meth:`jetmesh.calls.PendingCalls.chunk`); anything else
is refused and dead-lettered. The stream orders chunks by index and drops a duplicate.

A task that runs its handler again (a redelivery after a crash or a failure) reads, on its
first chunk, which indexes its step already stored, and neither stores nor sends those
again: the stream a reader sees has each index once. When the re-run produces other chunks
than the first run did, the first run's stay for the indexes it stored and the re-run's
follow from there; the result is the re-run's.

Example:
    >>> @agent.handler                                                    # doctest: +SKIP
    ... async def write(ask: Ask, ctx: Context) -> Answer:
    ...     for word in ("one ", "two "):
    ...         await ctx.stream(word)
    ...     return Answer("one two")
    >>> call = ctx.call("writer", Ask(...), returns=Answer, stream=True)  # doctest: +SKIP
    >>> async for chunk in call:                                          # doctest: +SKIP
    ...     print(chunk.value)
    >>> answer = await call.result()                                      # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import builtins
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final, Generic, Protocol, TypeVar

import msgspec

from .. import events as ev
from .._exceptions import Malformed, Oversized
from ..bus.direct import read_from
from ..calls import decode_reply
from ..envelope import Envelope, encode, exceeds, new_id, type_name
from ..event_log import verify_event
from ..ingress import Ingress, record_accepted
from ..mesh_protocols import EventLogReading, Sending

T = TypeVar("T")
C = TypeVar("C")

log = logging.getLogger("jetmesh.streaming")

MAX_AHEAD: Final = 1024
"""Chunks a stream keeps that arrived before an index it still waits for."""

_event = msgspec.json.Decoder(ev.Event)


def chunk_id(task: str, index: int) -> str:
    """The stored id of chunk ``index`` of ``task`` (its ``Nats-Msg-Id``)."""
    return f"{task}-c{index}"


@dataclass(frozen=True, slots=True)
class Chunk:
    """One chunk of a stream.

    Attributes:
        index: its place in the stream (0, 1, ...).
        type: the type name of its value (``str`` for text).
        raw: its value's JSON, as sent.
        step: the model call that produced it (``<step>/model.<n>``), "" otherwise.
    """

    index: int
    type: str
    raw: msgspec.Raw
    step: str = ""

    @property
    def value(self) -> Any:
        """The value decoded as plain JSON (a ``str`` for a text chunk)."""
        return msgspec.json.decode(self.raw)

    def decode(self, type_: builtins.type[C]) -> C:
        """The value decoded as ``type_``."""
        return msgspec.json.decode(self.raw, type=type_)


def chunk_of(event: ev.Event) -> Chunk:
    """The chunk a ``chunk`` event carries.

    Raises:
        Malformed: it is no chunk event (another kind, no index, no body).
    """
    if event.kind != ev.CHUNK or not event.key.isdigit() or event.body is None:
        raise Malformed(f"not a chunk event (kind {event.kind!r}, index {event.key[:20]!r})")
    return Chunk(int(event.key), event.body.type, event.body.value, event.callee_step)


async def read_chunks(
    mesh: EventLogReading,
    workflow: str,
    *,
    step: str,
    agent: str,
    after: int = -1,
    timeout: float = 5.0,
) -> list[Chunk]:
    """The stored chunks of the task ``step`` of ``workflow`` that ``agent`` ran, from
    index ``after + 1`` on, in index order, each once. Only chunks whose verified signer is
    ``agent`` count; forged or unverified ones are left out."""
    subject = mesh.subjects.event(workflow, ev.CHUNK)
    found: dict[int, Chunk] = {}
    async with asyncio.timeout(timeout):
        async for stored in read_from(mesh, mesh.settings.events_stream, subject):
            logged = await verify_event(mesh, stored)
            e = logged.event
            if not logged.verified or logged.signer != agent or e.step != step:
                continue
            try:
                chunk = chunk_of(e)
            except Malformed:
                continue
            if chunk.index > after:
                found.setdefault(chunk.index, chunk)
    return [found[i] for i in sorted(found)]


class ChunkFeed:
    """The chunks of one call as they arrive: in index order, each once."""

    def __init__(self, *, after: int = -1) -> None:
        self._next = after + 1
        self._ahead: dict[int, Chunk] = {}
        self._ready: deque[Chunk] = deque()
        self._arrived = asyncio.Event()
        self.dropped = 0
        """Chunks dropped: an index already taken, or too far ahead."""

    @property
    def next_index(self) -> int:
        """The index the feed waits for."""
        return self._next

    def add(self, envelope: Envelope) -> None:
        """Take the chunk a verified live envelope of the called role carries.

        Raises:
            Malformed: its body is no chunk event of the task it answers.
        """
        try:
            event = _event.decode(envelope.body)
        except msgspec.DecodeError as exc:
            raise Malformed(f"chunk body is not an event: {exc}") from None
        if event.task != envelope.parent:
            raise Malformed(f"chunk of task {event.task} sent for task {envelope.parent}")
        self.put(chunk_of(event))

    def put(self, chunk: Chunk) -> bool:
        """Queue ``chunk`` in its place; False (dropped) for an index seen or too far."""
        if (
            chunk.index < self._next
            or chunk.index in self._ahead
            or chunk.index >= self._next + MAX_AHEAD
        ):
            self.dropped += 1
            return False
        self._ahead[chunk.index] = chunk
        while self._next in self._ahead:
            self._ready.append(self._ahead.pop(self._next))
            self._next += 1
        if self._ready:
            self._arrived.set()
        return True

    def finish(self) -> None:
        """The call ended: hand on the chunks still waiting for a missing index, in order."""
        for index in sorted(self._ahead):
            self._ready.append(self._ahead.pop(index))
            self._next = index + 1
        if self._ready:
            self._arrived.set()

    def take(self) -> Chunk | None:
        """The next chunk in order, if one is ready."""
        if not self._ready:
            self._arrived.clear()
            return None
        return self._ready.popleft()

    async def arrived(self) -> None:
        """Until a chunk is ready."""
        await self._arrived.wait()


class StreamingCall(Generic[T]):
    """A call whose callee streams: ``async for chunk in call`` yields its chunks
    (:class:`Chunk`) as they arrive, then ``await call.result()`` gives the reply, typed.

    The call is sent on the first iteration or on :meth:`result`. When the call fails
    (a timeout, the callee's error), the iteration ends by raising that error after the
    chunks that came before it.
    """

    def __init__(
        self, agent: str, step: str, start: Callable[[], Awaitable[T]], feed: ChunkFeed
    ) -> None:
        self.agent = agent
        self.step = step
        self.feed = feed
        self.workflow = ""
        """The workflow it belongs to, when it starts one (:func:`stream_request`)."""
        self._start = start
        self._task: asyncio.Future[T] | None = None

    def _started(self) -> asyncio.Future[T]:
        if self._task is None:

            async def run() -> T:
                return await self._start()

            self._task = asyncio.ensure_future(run())
        return self._task

    def __aiter__(self) -> AsyncIterator[Chunk]:
        return self._chunks()

    async def _chunks(self) -> AsyncIterator[Chunk]:
        task = self._started()
        while True:
            chunk = self.feed.take()
            if chunk is not None:
                yield chunk
                continue
            if task.done():
                self.feed.finish()
                while (chunk := self.feed.take()) is not None:
                    yield chunk
                task.result()  # the call's error, if it failed
                return
            waiting = asyncio.ensure_future(self.feed.arrived())
            either: list[asyncio.Future[Any]] = [task, waiting]
            try:
                await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
            finally:
                waiting.cancel()

    async def result(self) -> T:
        """The call's reply, as ``returns``.

        Raises:
            MeshTimeout, CallFailed, ...: as ``ctx.call``.
        """
        return await self._started()

    def __repr__(self) -> str:
        return f"<StreamingCall {self.step} -> {self.agent}>"


class StreamCalling(Ingress, Protocol):
    """An ingress that calls and takes the chunks (a :class:`~jetmesh.MeshClient`)."""

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
    ) -> Envelope: ...


def stream_request(
    mesh: StreamCalling,
    agent: str,
    body: Any,
    *,
    token: str,
    returns: type[T],
    timeout: float | None = None,
    workflow: str | None = None,
    type_: str | None = None,
) -> StreamingCall[T]:
    """Start a workflow at ``agent`` as the caller of ``token``, as
    :meth:`~jetmesh.MeshClient.request` does, taking the chunks it streams: ``async for``
    them, then ``await ....result()``. Its ``workflow`` attribute names the workflow.

    Raises (from the iteration and ``result``):
        MeshTimeout, CallFailed, RejectedMessage: as :meth:`~jetmesh.MeshClient.request`.
    """
    workflow = workflow or new_id()
    named = type_ if type_ is not None else type_name(type(body))
    raw = body if isinstance(body, msgspec.Raw) else msgspec.Raw(encode(body))
    feed = ChunkFeed()

    async def run() -> T:
        await record_accepted(mesh, workflow, agent, raw, type_=named, token=token)
        reply = await mesh.call_envelope(
            agent,
            raw,
            workflow=workflow,
            caller=token,
            step=agent,
            timeout=timeout,
            type_=named,
            on_chunk=feed.add,
        )
        return decode_reply(agent, reply, returns)

    call = StreamingCall(agent, agent, run, feed)
    call.workflow = workflow
    return call


class LaterPublishing(Protocol):
    """Publishes to a stream without waiting for the ack (retried until stored)."""

    async def publish_later(
        self, msg_id: str, subject: str, data: bytes, headers: dict[str, str]
    ) -> None: ...


class ChunkSending(Sending, EventLogReading, Protocol):
    """What a :class:`ChunkSink` needs of a mesh client (a :class:`~jetmesh.MeshClient`)."""

    @property
    def publisher(self) -> LaterPublishing: ...

    async def seal_batched(self, envelope: Envelope) -> tuple[bytes, dict[str, str]]: ...

    async def flush_events(self, timeout: float = 10.0) -> bool: ...


class ChunkSink:
    """What ``ctx.stream`` writes with: the mesh, and the task whose chunks it sends."""

    def __init__(
        self,
        mesh: ChunkSending,
        task: Envelope,
        *,
        agent: str,
        caller: str,
        attempt: int,
    ) -> None:
        """
        Args:
            mesh: the replica's mesh client.
            task: the task being handled.
            agent: the role handling it.
            caller: the verified caller's subject.
            attempt: its delivery count; on a later one, the stored chunks are read first.
        """
        self._mesh = mesh
        self._task = task
        self._agent = agent
        self._caller = caller
        self._attempt = attempt
        self._next = 0
        self._stored: list[Chunk] | None = [] if attempt == 1 else None

    @property
    def sent(self) -> int:
        """The index of the next chunk."""
        return self._next

    async def _already(self) -> list[Chunk]:
        """The chunks this step stored before this run (read once, on a later attempt)."""
        if self._stored is None:
            self._stored = await read_chunks(
                self._mesh, self._task.workflow, step=self._task.step, agent=self._agent
            )
        return self._stored

    async def send(self, value: Any, *, step: str = "") -> bool:
        """Store and send the next chunk; False when an earlier run of this step stored
        its index already (then nothing is stored or sent again).

        Raises:
            Oversized: the chunk's event would exceed ``max_payload_bytes``; it takes no
                index.
        """
        index = self._next
        stored = await self._already()
        if any(c.index == index for c in stored):
            self._next += 1
            return False
        type_ = type_name(type(value))
        raw = value if isinstance(value, msgspec.Raw) else msgspec.Raw(encode(value))
        task = self._task
        event = ev.Event(
            kind=ev.CHUNK,
            agent=self._agent,
            at=time.time(),
            instance=self._mesh.instance,
            task=task.id,
            parent=task.parent,
            step=task.step,
            caller=self._caller,
            attempt=self._attempt,
            key=str(index),
            callee_step=step,
            type=type_,
            body=ev.EventPayload(type=type_, value=raw),
        )
        envelope = msgspec.structs.replace(
            self._mesh.envelope(
                kind="event",
                workflow=task.workflow,
                to="events",
                body=event,
                caller=task.caller,
                parent=task.id,
                step=task.step,
                type_=ev.EVENT_TYPE,
            ),
            id=chunk_id(task.id, index),
        )
        limit = self._mesh.settings.max_payload_bytes
        if exceeds(envelope, limit):  # refused: the index stays for the next chunk
            raise Oversized(f"chunk {index} of step {task.step!r} is over {limit} bytes")
        self._next += 1
        data, headers = await self._mesh.seal_batched(envelope)
        await self._mesh.publisher.publish_later(
            envelope.id, self._mesh.subjects.event(task.workflow, ev.CHUNK), data, headers
        )
        if task.reply_to is not None:
            live = self._mesh.envelope(
                kind="reply",
                workflow=task.workflow,
                to=task.sender,
                body=envelope.body,
                caller=task.caller,
                parent=task.id,
                step=task.step,
                type_=ev.EVENT_TYPE,
            )
            await self._mesh.send_reply(live, task.reply_to)
        return True

    async def text(self, text: str, step: str) -> None:
        """A model's output streams: the next chunk, from model call ``step``."""
        await self.send(text, step=step)

    async def flush(self) -> None:
        """Until every chunk sent so far is stored (before a model's reply is journaled:
        a re-run that takes the reply from the journal counts its stored chunks)."""
        await self._mesh.flush_events()

    async def skip(self, step: str) -> None:
        """Model call ``step`` was answered from the journal: it does not stream again,
        and the chunks it stored keep their indexes (the next chunk follows them)."""
        stored = await self._already()
        self._next += sum(1 for c in stored if c.step == step)
