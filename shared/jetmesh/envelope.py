"""The envelope: the one message shape of the wire contract, and its JSON codec.

An envelope is a frozen msgspec Struct encoded as JSON. Its ``body`` stays raw JSON until
the receiver has verified the signature and knows the handler's input type, so a message is
never decoded into user types before it is trusted.

Example:
    >>> env = Envelope(id="01J", kind="task", workflow="01J", sender="cli", to="echo",
    ...                created=0.0, body=msgspec.Raw(b'{"text":"hi"}'))
    >>> decode_envelope(encode_envelope(env)).to
    'echo'
"""

from __future__ import annotations

import time
from functools import lru_cache
from typing import Any, Literal, TypeVar

import msgspec

from ._exceptions import Malformed, SchemaViolation
from .ids import new_id

ENVELOPE_VERSION = 1

Kind = Literal["task", "reply", "error", "event"]

T = TypeVar("T")


class Envelope(msgspec.Struct, frozen=True, kw_only=True):
    """One message on the mesh. Unknown fields are ignored, so newer senders can add some."""

    __mesh_type__ = f"mesh.Envelope/{ENVELOPE_VERSION}"

    id: str
    """Sortable unique id (ULID); also the ``Nats-Msg-Id`` used for de-duplication."""
    kind: Kind
    workflow: str
    """The workflow this message belongs to (the ULID of its first task)."""
    sender: str
    """The agent that signed this message; must equal the name in its certificate."""
    to: str
    """The addressee: an agent role for tasks and replies, ``events`` for events."""
    created: float
    """Unix time in seconds when the sender built the message."""
    type: str = ""
    """The body's schema name and version, for example ``support.Ticket/1``."""
    parent: str | None = None
    """The id of the message that caused this one."""
    step: str = ""
    """A stable key of this step within the workflow, for idempotency."""
    reply_to: str | None = None
    """Where the reply goes (tasks only)."""
    caller: str = ""
    """The caller token (an EdDSA JWT), carried unchanged from ingress."""
    chain: tuple[str, ...] = ()
    """Tasks: the delegation chain from ingress to this task, one link signed per hop
    (see :mod:`jetmesh.identity.delegation`)."""
    deadline: float | None = None
    """Unix time after which the result is no longer wanted."""
    v: int = ENVELOPE_VERSION
    body: msgspec.Raw = msgspec.Raw(b"null")


class ErrorBody(msgspec.Struct, frozen=True):
    """The body of a ``kind="error"`` reply."""

    __mesh_type__ = "mesh.ErrorBody/1"

    error_type: str
    message: str
    reason: str = "handler-failed"


_encoder = msgspec.json.Encoder()
_envelope_decoder = msgspec.json.Decoder(Envelope)


__all__ = ["Envelope", "ErrorBody", "decode_body", "decode_envelope", "encode", "new_id", "now"]


def now() -> float:
    return time.time()


def encode(value: Any) -> bytes:
    """Encode any msgspec-supported value as JSON."""
    return _encoder.encode(value)


def encode_envelope(envelope: Envelope) -> bytes:
    return _encoder.encode(envelope)


_UNDECODABLE = (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError, RecursionError)
"""What decoding untrusted JSON raises: besides msgspec's own errors, invalid UTF-8 inside a
string and nesting deeper than the decoder's recursion limit."""


def decode_envelope(data: bytes) -> Envelope:
    """Decode an envelope, leaving the body raw.

    Raises:
        Malformed: when ``data`` is not a valid JSON envelope.
    """
    try:
        return _envelope_decoder.decode(data)
    except _UNDECODABLE as exc:
        raise Malformed(str(exc)) from None


@lru_cache(maxsize=512)
def _decoder_for(tp: Any) -> msgspec.json.Decoder[Any]:
    return msgspec.json.Decoder(tp)


def decode_body(envelope: Envelope, tp: type[T]) -> T:
    """Decode an envelope's body into ``tp``.

    Raises:
        SchemaViolation: when the body does not match ``tp``.
    """
    try:
        decoder: msgspec.json.Decoder[T] = _decoder_for(tp)  # type: ignore[arg-type]
        return decoder.decode(envelope.body)
    except _UNDECODABLE as exc:
        raise SchemaViolation(f"{type_name(tp)}: {exc}") from None


def type_name(tp: Any) -> str:
    """The schema name written into ``Envelope.type``: ``__mesh_type__`` or the class name."""
    explicit = getattr(tp, "__mesh_type__", None)
    if isinstance(explicit, str):
        return explicit
    return getattr(tp, "__name__", repr(tp))


_FIXED_FIELDS = 1024
"""More than the envelope's fields other than body, caller, chain, sender and step take as
JSON."""


def exceeds(envelope: Envelope, limit: int) -> bool:
    """Would ``envelope`` exceed ``limit`` bytes on the wire? Encodes it only when a cheap
    bound (the variable parts plus room for the fixed ones) says it might."""
    variable = len(envelope.body) + len(envelope.caller) + len(envelope.sender) + len(envelope.step)
    variable += sum(len(link) + 3 for link in envelope.chain)
    return variable + _FIXED_FIELDS > limit and len(encode_envelope(envelope)) > limit
