"""The envelope: the one message shape of the wire contract, and its JSON codec.

An envelope is a frozen msgspec Struct encoded as JSON. Its ``body`` stays raw JSON until
the receiver has verified the signature and knows the handler's input type, so a message is
never decoded into user types before it is trusted.

An envelope whose object names a field twice is malformed: JSON parsers disagree on which
value wins (msgspec and Python keep the last, others the first), so two receivers in two
languages could act on two different messages under one signature. The check covers the
envelope's own object, where every field the mesh acts on lives (the other fields are
strings, numbers and lists of strings); objects nested in ``body`` are not checked here,
the body being read once by its handler's type.

Example:
    >>> env = Envelope(id="01J", kind="task", workflow="01J", sender="cli", to="echo",
    ...                created=0.0, body=msgspec.Raw(b'{"text":"hi"}'))
    >>> decode_envelope(encode_envelope(env)).to
    'echo'
"""

from __future__ import annotations

import json
import re
import time
from functools import lru_cache
from typing import Any, Literal, TypeVar

import msgspec

from ._exceptions import Malformed, SchemaViolation
from .ids import new_id

__all__ = [
    "ENVELOPE_VERSION",
    "Envelope",
    "ErrorBody",
    "Kind",
    "decode_body",
    "decode_envelope",
    "encode",
    "new_id",
]

ENVELOPE_VERSION = 1

Kind = Literal["task", "reply", "error", "event"]

T = TypeVar("T")

MAX_STEP_CHARS = 1024
STEP_RE = re.compile(rf"[A-Za-z0-9_./-]{{1,{MAX_STEP_CHARS}}}\Z")
"""A task's step key: 1 to 1024 of the ASCII characters ``A-Z a-z 0-9 _ - . /``. The mesh
makes ``<role>`` at ingress and ``<step>/<role>.<n>`` for each call (``model``,
``approval`` and ``toolgate`` are roles here); no ``:`` (the separator of Redis keys),
glob or subject wildcard (``*``, ``?``, ``[``, ``>``), space, control or non-ASCII
character."""


def is_step(text: str) -> bool:
    """Whether ``text`` is a task's step key (:data:`STEP_RE`)."""
    return STEP_RE.match(text) is not None


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
    """A stable key of this step within the workflow, for idempotency. A task's step is
    part of Redis keys: 1 to 1024 of the ASCII characters A-Z a-z 0-9 _ - . / (a receiver
    refuses a task with any other as malformed)."""
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
_members_decoder = msgspec.json.Decoder(dict[str, msgspec.Raw])


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
        envelope = _envelope_decoder.decode(data)
    except _UNDECODABLE as exc:
        raise Malformed(str(exc)) from None
    # What the mesh's encoders write is the struct encoded again: no member twice, at
    # the cost of one encoding. Anything else (another encoder, spaces, unknown fields)
    # has its members counted.
    if _encoder.encode(envelope) != data and (twice := duplicate_key(data)) is not None:
        raise Malformed(f"the envelope names {twice[:64]!r} twice")
    return envelope


def duplicate_key(data: bytes) -> str | None:
    """A member name that the JSON object ``data`` has twice at its top level, or None.

    The usual case costs one more pass of msgspec: the members it keeps (the last of each
    name) add up to the whole text exactly when the text is compact, names no member twice
    and escapes no name, as compact encoders write it; otherwise each member is counted
    with :mod:`json`.

    Raises:
        Malformed: ``data`` is not a JSON object.
    """
    try:
        members = _members_decoder.decode(data)
    except _UNDECODABLE as exc:
        raise Malformed(str(exc)) from None
    kept = 1 + 4 * len(members) + sum(map(len, members)) + sum(map(len, members.values()))
    # Each kept member counts at most its bytes (a name's escapes and UTF-8 only add to
    # them), so an equal total leaves no room for another member.
    if kept == len(data):
        return None
    try:
        pairs = json.loads(data, object_pairs_hook=_Members)
    except (ValueError, RecursionError) as exc:
        raise Malformed(str(exc)) from None
    if not isinstance(pairs, _Members):
        raise Malformed("not a JSON object")
    return pairs.twice


class _Members(list[tuple[str, Any]]):
    """One JSON object's members in order, and the first name seen twice."""

    def __init__(self, pairs: list[tuple[str, Any]]) -> None:
        super().__init__(pairs)
        seen: set[str] = set()
        self.twice: str | None = None
        for name, _ in pairs:
            if name in seen:
                self.twice = name
                break
            seen.add(name)


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
