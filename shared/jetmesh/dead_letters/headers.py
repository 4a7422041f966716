"""A dead letter's headers: a refused or failed message, kept with its reason on
``<prefix>.dlq.<agent>``.

The original bytes are kept unchanged, so a dead letter can be inspected, verified and sent
back once the cause is fixed. Of the original's headers, a dead letter keeps an allow-list:
the mesh's signature headers (``Mesh-Sig-Scheme``, ``Mesh-Key``, ``Mesh-Sig``,
``Mesh-Sig-Path``: the original verifies again, as ``jetmesh dlq redrive`` checks) and the
trace context (``traceparent``); the original's ``Nats-Msg-Id`` is kept as
``Mesh-Dlq-Msg-Id``. Nothing else of the sender's is copied: a ``Nats-*`` header is an
instruction to the stream that stores the message (``Nats-Expected-Stream: MESH_TASKS``,
``Nats-Expected-Last-Sequence``, ``Nats-Rollup``, ``Nats-TTL``, a batch, a schedule, ...),
and on a dead letter it would make ``MESH_DLQ`` refuse or alter it. The reason travels in
``Mesh-Dlq-*`` headers; the dead letter's own ``Nats-Msg-Id`` is derived from the message
and the reason, so the same message refused twice for the same reason is stored once.

Example:
    >>> headers = dead_letter_headers(                                   # doctest: +SKIP
    ...     msg.headers, subject=msg.subject, data=msg.data, agent="billing",
    ...     reason="bad-signature", detail="...")
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping
from email.header import Header, decode_header

from ..bus.tracing import TRACEPARENT_HEADER
from ..identity.signing import KEY_HEADER, PATH_HEADER, SCHEME_HEADER, SIGNATURE_HEADER

REASON_HEADER = "Mesh-Dlq-Reason"
DETAIL_HEADER = "Mesh-Dlq-Detail"
SUBJECT_HEADER = "Mesh-Dlq-Subject"
AGENT_HEADER = "Mesh-Dlq-Agent"
TIME_HEADER = "Mesh-Dlq-Time"
MSG_ID_HEADER = "Mesh-Dlq-Msg-Id"
"""The original's ``Nats-Msg-Id`` (a stored task's must equal its envelope's id)."""
TASK_SEQ_HEADER = "Mesh-Dlq-Task-Seq"
"""The task's sequence in the tasks stream, when known (max deliveries)."""
MAX_DETAIL = 1024

KEPT_HEADERS = (SCHEME_HEADER, KEY_HEADER, SIGNATURE_HEADER, PATH_HEADER, TRACEPARENT_HEADER)
"""The original's headers a dead letter keeps: all it takes to verify the original again,
and its trace context."""
MAX_KEPT_VALUE = 4096
"""A kept header longer than this is left out (the verifier refuses more than 8 KiB of
headers in all; a message refused for that must still be stored)."""


MAX_MESSAGE_ID = 256
"""The longest ``Nats-Msg-Id`` a refusal's event repeats (:func:`refused_message_id`)."""


def refused_message_id(headers: Mapping[str, object] | None) -> str:
    """A refused message's ``Nats-Msg-Id`` as its sender set it, fit to be written in an
    event: every character that is not printable escaped as ``ascii()`` writes it
    (``\\x00``, ``\\u200b``), a backslash doubled, and cut, at a whole character, to
    :data:`MAX_MESSAGE_ID` characters; ``""`` when it has none. The sender chose it: it
    lets a publisher find its message, and nothing is decided by it.

    Example:
        >>> refused_message_id({"Nats-Msg-Id": "01J\\r\\nX-Evil: 1"})
        '01J\\\\r\\\\nX-Evil: 1'
    """
    raw = (headers or {}).get("Nats-Msg-Id")
    if raw is None:
        return ""
    out: list[str] = []
    size = 0
    for char in header_text(raw):
        if char == "\\":
            piece = "\\\\"
        elif char.isprintable():
            piece = char
        else:
            piece = ascii(char)[1:-1]
        size += len(piece)
        if size > MAX_MESSAGE_ID:
            break
        out.append(piece)
    return "".join(out)


def _one_line(text: str, limit: int) -> str:
    return text.replace("\r", " ").replace("\n", " ")[:limit]


def dead_letter_headers(
    original: Mapping[str, str] | None,
    *,
    subject: str,
    data: bytes,
    agent: str,
    reason: str,
    detail: str,
    task_seq: int | None = None,
) -> dict[str, str]:
    """Headers of a dead letter: the allow-listed original ones (:data:`KEPT_HEADERS`)
    plus the reason.

    The ``Nats-Msg-Id`` is derived from the message and the reason, so the same message
    refused twice for the same reason (a redelivery) is stored once; a dead letter without
    the message's bytes (``task_seq`` only) is keyed by that sequence.
    """
    given = {name: header_text(value) for name, value in (original or {}).items()}
    headers = {
        name: given[name]
        for name in KEPT_HEADERS
        if name in given and len(given[name]) <= MAX_KEPT_VALUE
    }
    msg_id = given.get("Nats-Msg-Id")
    if msg_id and len(msg_id) <= MAX_KEPT_VALUE:
        headers[MSG_ID_HEADER] = _one_line(msg_id, MAX_KEPT_VALUE)
    keyed = data if data or task_seq is None else f"seq:{task_seq}".encode()
    digest = hashlib.sha256(keyed).hexdigest()[:32]
    headers.update(
        {
            REASON_HEADER: _one_line(reason, 128),
            DETAIL_HEADER: _one_line(detail, MAX_DETAIL),
            SUBJECT_HEADER: _one_line(subject, 512),
            AGENT_HEADER: agent,
            TIME_HEADER: f"{time.time():.6f}",
            "Nats-Msg-Id": f"dlq-{agent}-{_one_line(reason, 128)}-{digest}",
        }
    )
    if task_seq is not None:
        headers[TASK_SEQ_HEADER] = str(task_seq)
    return headers


def header_text(value: object) -> str:
    """A header value as text, whatever the NATS client made of it: a ``str``, or (for a
    value with non-ASCII bytes read through the stream API) an ``email.header.Header``,
    decoded as UTF-8 with U+FFFD for bytes that are not."""
    if isinstance(value, str):
        return value
    if isinstance(value, Header):
        parts = decode_header(value)
        return "".join(
            part.decode("utf-8", "replace") if isinstance(part, bytes) else part
            for part, _ in parts
        )
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)
