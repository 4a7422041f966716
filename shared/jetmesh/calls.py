"""Calls awaiting their replies, keyed by the id of the task that was sent, and what a
reply decodes to.

A reply answers a call only when it is the called role's answer to that call: its verified
signer is the role the task was sent to, and it names the task as its parent, in the same
workflow and step. Anything else that names a waiting call as its parent is refused
(:class:`~jetmesh.ForgedReply`) and leaves the call waiting for its real reply: a role
that may answer this caller (it is called by it for other steps) cannot answer the
caller's calls to other roles.

A call that takes its callee's streamed chunks (:mod:`jetmesh.runtime.streaming`) gets them
by the same rule: a chunk goes to the call only from the role called, for that call.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from ._exceptions import CallFailed, ForgedReply, InvalidToken, RejectedMessage
from .envelope import Envelope, ErrorBody, decode_body
from .events import EVENT_TYPE

T = TypeVar("T")


def decode_reply(agent: str, reply: Envelope, returns: type[T]) -> T:
    """The body of a reply as ``returns``, or the error it carries.

    Raises:
        CallFailed: the reply is an error.
        SchemaViolation: the body is not a ``returns``.
    """
    if reply.kind == "error":
        err = decode_body(reply, ErrorBody)
        raise CallFailed(agent, err.error_type, err.message, err.reason)
    return decode_body(reply, returns)


@dataclass(frozen=True, slots=True)
class _Call:
    """A call in flight: who may answer it, for what, and the future its reply resolves."""

    callee: str
    workflow: str
    step: str
    future: asyncio.Future[Envelope]
    on_chunk: Callable[[Envelope], None] | None = None


class PendingCalls:
    """Futures of calls in flight in one process; a reply resolves the one it answers."""

    def __init__(self) -> None:
        self._waiting: dict[str, _Call] = {}

    def expect(
        self, task: Envelope, on_chunk: Callable[[Envelope], None] | None = None
    ) -> asyncio.Future[Envelope]:
        """Wait for the reply to ``task`` (sent to ``task.to``); ``on_chunk`` takes the
        chunks its callee streams meanwhile (None: they are dropped)."""
        future: asyncio.Future[Envelope] = asyncio.get_running_loop().create_future()
        self._waiting[task.id] = _Call(task.to, task.workflow, task.step, future, on_chunk)
        return future

    def forget(self, task_id: str) -> None:
        self._waiting.pop(task_id, None)

    def _answering(self, reply: Envelope, signer: str, what: str) -> _Call | None:
        """The waiting call ``reply`` answers, checked: None if nobody waits for it.

        Raises:
            ForgedReply: it names a waiting call but is not that call's callee's, for it.
        """
        call = self._waiting.get(reply.parent or "")
        if call is None or call.future.done():
            return None
        if signer != call.callee:
            raise ForgedReply(
                f"{what} to call {reply.parent} ({call.callee}, step {call.step!r}) "
                f"signed by {signer}"
            )
        if reply.workflow != call.workflow or reply.step != call.step:
            raise ForgedReply(
                f"{what} to call {reply.parent} of workflow {call.workflow} step "
                f"{call.step!r} names workflow {reply.workflow} step {reply.step!r}"
            )
        return call

    def chunk(self, chunk: Envelope, signer: str) -> bool:
        """Hand a streamed ``chunk``, verified as signed by ``signer``, to the call it
        belongs to; False if nobody waits for it or the call takes no chunks.

        Raises:
            ForgedReply: as :meth:`resolve`; the call keeps waiting.
            Malformed: its body is no chunk of that call (from the call's ``on_chunk``).
        """
        call = self._answering(chunk, signer, "chunk")
        if call is None or call.on_chunk is None:
            return False
        call.on_chunk(chunk)
        return True

    def resolve(self, reply: Envelope, signer: str) -> bool:
        """Hand ``reply``, verified as signed by ``signer``'s key, to the call it answers;
        False if nobody waits for it (a late reply).

        Raises:
            ForgedReply: it names a waiting call as its parent but is not that call's
                answer (another signer, workflow or step); the call keeps waiting.
        """
        call = self._answering(reply, signer, "reply")
        if call is None:
            return False
        del self._waiting[reply.parent or ""]
        call.future.set_result(reply)
        return True

    def refuse(self, refused: RejectedMessage) -> bool:
        """End the call a refused reply answers with :class:`~jetmesh.CallFailed` and the
        refusal's reason, when it was refused for the caller token it carries (expired or
        revoked since the call was sent: every answer of the callee would carry it) and is
        the callee's own (``refused.envelope`` is set only when the reply's sender signed
        it; checked as :meth:`resolve` does); False otherwise, or if nobody waits for it.

        Raises:
            ForgedReply: as :meth:`resolve`; the call keeps waiting.
        """
        reply: Envelope | None = getattr(refused, "envelope", None)
        if not isinstance(refused, InvalidToken) or reply is None:
            return False
        if reply.kind not in ("reply", "error") or reply.type == EVENT_TYPE:  # not a chunk
            return False
        call = self._answering(reply, reply.sender, "reply")
        if call is None:
            return False
        del self._waiting[reply.parent or ""]
        failed = CallFailed(call.callee, type(refused).__name__, refused.detail, refused.reason)
        call.future.set_exception(failed)
        return True

    def __len__(self) -> int:
        return len(self._waiting)

    def cancel_all(self) -> None:
        for call in self._waiting.values():
            if not call.future.done():
                call.future.cancel()
        self._waiting.clear()
