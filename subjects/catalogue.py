"""The catalogue: every subject of the wire contract, what travels on it, and how.

This is the source of ``subjects/catalogue.json`` and of the JSON Schemas in
``subjects/schemas/`` (``python -m subjects.generate``). Subjects are shown with the default
prefix ``mesh``; a deployment may configure another (``JETMESH_SUBJECT_PREFIX``).

Example:
    >>> [s.pattern for s in SUBJECTS]  # doctest: +NORMALIZE_WHITESPACE
    ['mesh.agent.<agent>.task', 'mesh.agent.<agent>.reply.<instance>',
     'mesh.event.<workflow>.<kind>', 'mesh.dlq.<agent>']
    >>> schema_file("support.Ticket/1")
    'support.Ticket.v1.json'

The meshes' types and roles are gathered from the meshes under ``services/``
(:mod:`subjects.meshes`), not listed here.
"""

from __future__ import annotations

import re
from typing import Any, Final, Literal

import msgspec

from jetmesh import dead_letters as dlq
from jetmesh.bus import TRACEPARENT_HEADER
from jetmesh.envelope import ENVELOPE_VERSION, Envelope, ErrorBody, Kind
from jetmesh.events import EVENT_TYPE, Event
from jetmesh.identity import KEY_HEADER, MSG_ID_HEADER, PATH_HEADER, SCHEME_HEADER, SIGNATURE_HEADER
from jetmesh.patterns import (
    ApprovalRequest,
    Draft,
    DraftRequest,
    Review,
    ReviewRequest,
    Verdict,
)
from jetmesh.toolgate import ToolApprovalAsk, ToolRecord, ToolRequest, ToolResult

from .identity import (
    CALLER_TOKEN_HEADER,
    CERTIFICATE_HEADER,
    CallerTokenClaims,
    CertificateClaims,
)
from .meshes import MeshContract, meshes

CATALOGUE_VERSION: Final = 1
DEFAULT_PREFIX: Final = "mesh"

Transport = Literal["jetstream", "core"]
TypeRole = Literal["envelope", "payload", "event-body", "jwt-claims"]

_MESH_TYPE_RE = re.compile(r"[A-Za-z][A-Za-z0-9_.]*/[0-9]+")

_LIBRARY_TYPE_NAMES: Final[dict[type[Any], str]] = {
    Envelope: f"mesh.Envelope/{ENVELOPE_VERSION}",
    ErrorBody: "mesh.ErrorBody/1",
    Event: EVENT_TYPE,
}
"""Names of library types that do not (yet) declare ``__mesh_type__`` themselves."""


def mesh_type(tp: type[Any]) -> str:
    """The catalogued name of ``tp``: its ``__mesh_type__``, e.g. ``support.Ticket/1``.

    Raises:
        KeyError: ``tp`` has no ``__mesh_type__`` and is not a known library type.
    """
    explicit = getattr(tp, "__mesh_type__", None)
    return explicit if isinstance(explicit, str) else _LIBRARY_TYPE_NAMES[tp]


def schema_file(name: str) -> str:
    """The schema file of a mesh type: ``support.Ticket/1`` -> ``support.Ticket.v1.json``.

    Raises:
        ValueError: ``name`` is not ``<dotted name>/<version>``.
    """
    if not _MESH_TYPE_RE.fullmatch(name):
        raise ValueError(f"mesh type name {name!r} is not <dotted name>/<version>")
    base, version = name.rsplit("/", 1)
    return f"{base}.v{version}.json"


class TypeSpec(msgspec.Struct, frozen=True, kw_only=True):
    """A message type with a committed JSON Schema."""

    name: str
    """Its mesh type name: the value of ``Envelope.type`` for payloads."""
    role: TypeRole
    """``envelope``, ``payload`` (an envelope body), ``event-body`` (the ``value`` of an
    event's ``body``, its ``type`` naming it) or ``jwt-claims``."""
    schema: str
    """The schema's path relative to ``subjects/``."""
    description: str


class HeaderSpec(msgspec.Struct, frozen=True, kw_only=True):
    """A NATS header of the wire contract."""

    name: str
    example: str
    description: str


class SubjectSpec(msgspec.Struct, frozen=True, kw_only=True):
    """One subject pattern of the wire contract."""

    name: str
    pattern: str
    """With the default prefix; ``<...>`` is one token of ``[A-Za-z0-9_-]{1,64}``."""
    transport: Transport
    """``jetstream`` (persisted in ``stream``, de-duplicated by ``Nats-Msg-Id``) or ``core``."""
    stream: str | None
    """The JetStream stream that stores it (default name), or None on core NATS."""
    kinds: tuple[Kind, ...]
    """Envelope kinds a receiver accepts on it."""
    payloads: tuple[str, ...]
    """Mesh type names of the bodies that travel on it (for tasks and replies: the reference
    meshes', and the roles of the patterns: docs/patterns.md)."""
    headers: tuple[str, ...]
    """Headers every message on it must carry."""
    description: str


class RoleSpec(msgspec.Struct, frozen=True, kw_only=True):
    """An agent role of a reference mesh (services/): what it takes and what it answers."""

    mesh: str
    """The mesh it belongs to: its package under ``services/`` (docs/services.md)."""
    agent: str
    subject: str
    accepts: str
    returns: str
    description: str


class TokenSpec(msgspec.Struct, frozen=True, kw_only=True):
    """One of the two JWTs: where it travels, its JOSE header and its claims' schema."""

    name: str
    header: dict[str, str]
    claims: str
    """Mesh type name of its claims (see ``types``)."""
    carried_in: str
    description: str


class Catalogue(msgspec.Struct, frozen=True, kw_only=True):
    """Everything ``subjects/catalogue.json`` holds."""

    catalogue_version: int
    envelope_version: int
    prefix: str
    subjects: tuple[SubjectSpec, ...]
    headers: tuple[HeaderSpec, ...]
    types: tuple[TypeSpec, ...]
    tokens: tuple[TokenSpec, ...]
    roles: tuple[RoleSpec, ...]


MESHES: Final[tuple[MeshContract, ...]] = tuple(meshes())
"""The meshes under ``services/`` that declare a contract, by name."""

_MESH_TYPES = tuple(tp for mesh in MESHES for tp in mesh.types)

SCHEMA_TYPES: Final[tuple[tuple[type[Any], TypeRole], ...]] = (
    (Envelope, "envelope"),
    (ErrorBody, "payload"),
    (Event, "payload"),
    *((tp, "payload") for tp in _MESH_TYPES),
    (DraftRequest, "payload"),
    (Draft, "payload"),
    (ReviewRequest, "payload"),
    (Review, "payload"),
    (ApprovalRequest, "payload"),
    (Verdict, "payload"),
    (ToolRequest, "payload"),
    (ToolResult, "payload"),
    (ToolApprovalAsk, "event-body"),
    (ToolRecord, "event-body"),
    (CallerTokenClaims, "jwt-claims"),
    (CertificateClaims, "jwt-claims"),
)
"""Every type with a committed schema, and its role: the library's, and each mesh's."""

_SIGNED = (SCHEME_HEADER, KEY_HEADER, SIGNATURE_HEADER)
_ERROR, _EVENT = mesh_type(ErrorBody), mesh_type(Event)
_MESH_TASKS = tuple(
    dict.fromkeys(
        mesh_type(role.accepts)
        for mesh in MESHES
        for role in mesh.roles
        if role.accepts in mesh.types
    )
)
_MESH_REPLIES = tuple(
    dict.fromkeys(
        mesh_type(role.returns)
        for mesh in MESHES
        for role in mesh.roles
        if role.returns in mesh.types
    )
)
_PATTERN_TASKS = tuple(mesh_type(tp) for tp in (DraftRequest, ReviewRequest, ApprovalRequest))
_PATTERN_REPLIES = tuple(mesh_type(tp) for tp in (Draft, Review, Verdict))
_TOOL_TASK, _TOOL_RESULT = mesh_type(ToolRequest), mesh_type(ToolResult)
"""What the tool gateway (``toolgate``, docs/toolgate.md) takes and answers."""

SUBJECTS: Final = (
    SubjectSpec(
        name="task",
        pattern="mesh.agent.<agent>.task",
        transport="jetstream",
        stream="MESH_TASKS",
        kinds=("task",),
        payloads=(*_MESH_TASKS, *_PATTERN_TASKS, _TOOL_TASK),
        headers=(*_SIGNED, MSG_ID_HEADER, TRACEPARENT_HEADER),
        description="Work for an agent role; its replicas share one durable pull consumer.",
    ),
    SubjectSpec(
        name="reply",
        pattern="mesh.agent.<agent>.reply.<instance>",
        transport="core",
        stream=None,
        kinds=("reply", "error"),
        payloads=(*_MESH_REPLIES, *_PATTERN_REPLIES, _TOOL_RESULT, _ERROR, _EVENT),
        headers=(*_SIGNED, TRACEPARENT_HEADER),
        description=(
            "Replies to one process of the role that sent a task (the task's reply_to); "
            "meanwhile the chunks its callee streams, as reply envelopes of type "
            "mesh.Event/1 whose body is the chunk event."
        ),
    ),
    SubjectSpec(
        name="event",
        pattern="mesh.event.<workflow>.<kind>",
        transport="jetstream",
        stream="MESH_EVENTS",
        kinds=("event",),
        payloads=(_EVENT,),
        headers=(*_SIGNED, MSG_ID_HEADER, TRACEPARENT_HEADER),
        description="A workflow's event log, the audit trail; <kind> may be two tokens.",
    ),
    SubjectSpec(
        name="dlq",
        pattern="mesh.dlq.<agent>",
        transport="jetstream",
        stream="MESH_DLQ",
        kinds=("task", "reply", "error", "event"),
        payloads=(),
        headers=(
            MSG_ID_HEADER,
            dlq.REASON_HEADER,
            dlq.DETAIL_HEADER,
            dlq.SUBJECT_HEADER,
            dlq.AGENT_HEADER,
            dlq.TIME_HEADER,
        ),
        description="Dead letters of a role: the refused message's bytes and headers, unchanged.",
    ),
)
"""The four subject patterns, in the order of the wire contract."""

HEADERS: Final = (
    HeaderSpec(
        name=SCHEME_HEADER,
        example="ed25519",
        description=(
            "Signature scheme: ed25519 (one message) or ed25519-merkle-sha256 (a batch); "
            "receivers reject schemes they do not know."
        ),
    ),
    HeaderSpec(
        name=KEY_HEADER,
        example="billing-3fa2c19e07b4d5a1",
        description="Key id of the signer; its certificate is in the MESH_KEYS bucket under it.",
    ),
    HeaderSpec(
        name=SIGNATURE_HEADER,
        example="<86 characters>",
        description=(
            "Ed25519 signature, base64url without padding: of the exact message bytes "
            "(ed25519), or of 'jetmesh/merkle/v1\\0' + the batch's Merkle root (merkle)."
        ),
    ),
    HeaderSpec(
        name=PATH_HEADER,
        example="2/5/<base64url of 32-byte sibling hashes>",
        description=(
            "Batch scheme only: leaf index / leaf count / sibling hashes from the leaf up; "
            "leaves are SHA-256(0x00 || bytes), nodes SHA-256(0x01 || left || right)."
        ),
    ),
    HeaderSpec(
        name=MSG_ID_HEADER,
        example="01JD3Q5Z8X7W6V5T4S3R2Q1P0N",
        description="The envelope id; JetStream de-duplicates on it, receivers check it.",
    ),
    HeaderSpec(
        name=TRACEPARENT_HEADER,
        example="00-0192f3a5c1e04b7d8e9f0a1b2c3d4e5f-a1b2c3d4e5f60718-01",
        description="W3C trace context; the trace id is the workflow's ULID in hex.",
    ),
    HeaderSpec(
        name=dlq.REASON_HEADER,
        example="bad-signature",
        description="Dead letters: the stable code of why the message was refused or failed.",
    ),
    HeaderSpec(
        name=dlq.DETAIL_HEADER,
        example="signature by billing-3fa2c19e07b4d5a1 does not match the message",
        description="Dead letters: a human-readable detail, at most 1024 characters.",
    ),
    HeaderSpec(
        name=dlq.SUBJECT_HEADER,
        example="mesh.agent.billing.task",
        description="Dead letters: the subject the message arrived on.",
    ),
    HeaderSpec(
        name=dlq.AGENT_HEADER,
        example="billing",
        description="Dead letters: the role that refused it.",
    ),
    HeaderSpec(
        name=dlq.TIME_HEADER,
        example="1764000000.123456",
        description="Dead letters: Unix time of the refusal.",
    ),
)

TOKENS: Final = (
    TokenSpec(
        name="caller-token",
        header=dict(CALLER_TOKEN_HEADER),
        claims=mesh_type(CallerTokenClaims),
        carried_in="Envelope.caller",
        description="Who a workflow runs for; minted once at ingress, never widened.",
    ),
    TokenSpec(
        name="certificate",
        header=dict(CERTIFICATE_HEADER),
        claims=mesh_type(CertificateClaims),
        carried_in="the MESH_KEYS key-value bucket, under the certified key id",
        description="The mesh root vouches for an agent key's name, subjects and scopes.",
    ),
)

ROLES: Final = tuple(
    RoleSpec(
        mesh=mesh.name,
        agent=role.agent,
        subject=f"{DEFAULT_PREFIX}.agent.{role.agent}.task",
        accepts=mesh_type(role.accepts),
        returns=mesh_type(role.returns),
        description=role.description,
    )
    for mesh in MESHES
    for role in mesh.roles
)
"""Every role of the meshes, with what it accepts and returns."""


def _type_spec(tp: type[Any], role: TypeRole) -> TypeSpec:
    name = mesh_type(tp)
    doc = (tp.__doc__ or "").strip().splitlines()
    return TypeSpec(
        name=name,
        role=role,
        schema=f"schemas/{schema_file(name)}",
        description=doc[0] if doc else "",
    )


CATALOGUE: Final = Catalogue(
    catalogue_version=CATALOGUE_VERSION,
    envelope_version=ENVELOPE_VERSION,
    prefix=DEFAULT_PREFIX,
    subjects=SUBJECTS,
    headers=HEADERS,
    types=tuple(_type_spec(tp, role) for tp, role in SCHEMA_TYPES),
    tokens=TOKENS,
    roles=ROLES,
)
