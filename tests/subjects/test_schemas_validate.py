"""The committed JSON Schemas, checked by a real validator (``jsonschema``): each is a valid
schema of the draft it declares; the README's worked example, the accepted conformance
vectors, a sample of every catalogued type and the messages of real support and research
workflows validate against them; wrong instances are refused, each with its reason."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import jsonschema
import jwt
import msgspec
import pytest
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7

from jetmesh import Credentials
from jetmesh.bus.direct import read_from
from jetmesh.envelope import new_id
from jetmesh.event_log import read_settled
from jetmesh.toolgate import write_secrets
from services.research import orchestrator, researcher, reviewer, writer
from services.research.settings import ResearchSettings
from services.research.wire import Question, Report
from services.support import POLICY, TOOL_CREDENTIALS, billing, critic, escalation, kb, triage
from services.support.settings import SupportSettings
from services.support.systems import Desk
from services.support.teams import team_agent
from services.support.toolgate import build as toolgate
from services.support.tools import support_tools
from services.support.wire import Resolution, Ticket
from subjects import vectors
from subjects.asyncapi import ASYNCAPI_FILE
from subjects.catalogue import CATALOGUE, SCHEMA_TYPES, mesh_type
from subjects.generate import SUBJECTS_DIR
from tests.harness.mesh import Mesh
from tests.subjects.test_schemas import SAMPLES

SCHEMAS = {spec.name: SUBJECTS_DIR / spec.schema for spec in CATALOGUE.types}
README = SUBJECTS_DIR / "README.md"
ENVELOPE = "mesh.Envelope/1"
EVENT = "mesh.Event/1"
CALLER_TOKEN = "mesh.CallerTokenClaims/1"
CERTIFICATE = "mesh.CertificateClaims/1"


def validator(name: str) -> jsonschema.protocols.Validator:
    """A validator of the draft the schema of ``name`` declares."""
    schema = json.loads(SCHEMAS[name].read_text(encoding="utf-8"))
    cls = jsonschema.validators.validator_for(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def problems(name: str, instance: Any) -> list[str]:
    return [
        f"{'/'.join(map(str, e.absolute_path)) or '.'}: {e.message}"
        for e in validator(name).iter_errors(instance)
    ]


def envelope_problems(envelope: dict[str, Any]) -> list[str]:
    """The envelope against its schema and, when its ``type`` is catalogued, its body
    against the schema of that type."""
    found = problems(ENVELOPE, envelope)
    if envelope.get("type") in SCHEMAS:
        found += [f"body: {p}" for p in problems(envelope["type"], envelope.get("body"))]
    return found


@pytest.mark.parametrize("path", sorted(SCHEMAS.values()), ids=lambda p: p.name)
def test_each_schema_is_valid_in_the_draft_it_declares(path: Path) -> None:
    schema = json.loads(path.read_text(encoding="utf-8"))
    cls = jsonschema.validators.validator_for(schema, default=None)
    assert cls is jsonschema.Draft202012Validator, schema.get("$schema")
    cls.check_schema(schema)


def test_every_committed_schema_is_a_catalogued_type() -> None:
    on_disk = sorted(p.name for p in (SUBJECTS_DIR / "schemas").glob("*.json"))
    assert on_disk == sorted(p.name for p in SCHEMAS.values())


def test_a_schema_that_is_not_one_is_refused() -> None:
    schema = json.loads(SCHEMAS["support.Ticket/1"].read_text(encoding="utf-8"))
    schema["$defs"]["Ticket"]["required"] = "id"
    with pytest.raises(jsonschema.SchemaError, match="'id' is not of type 'array'"):
        jsonschema.Draft202012Validator.check_schema(schema)


def readme_envelope() -> dict[str, Any]:
    (line,) = re.findall(r"^bytes: (.+)$", README.read_text(encoding="utf-8"), re.MULTILINE)
    envelope: dict[str, Any] = json.loads(line)
    return envelope


def test_the_readme_example_validates() -> None:
    envelope = readme_envelope()
    assert envelope["type"] == mesh_type(Ticket)
    assert envelope_problems(envelope) == []
    claims = jwt.decode(envelope["caller"], options={"verify_signature": False})
    assert problems(CALLER_TOKEN, claims) == []


ACCEPTED = [
    pytest.param(case, id=f"{path.stem}:{case['name']}")
    for path in sorted(vectors.VECTORS_DIR.glob("*.json"))
    for case in json.loads(path.read_text(encoding="utf-8"))["cases"]
    if case["verdict"] == "accept"
]


def test_there_are_accepted_vectors_of_each_kind() -> None:
    kinds = {json.loads(p.values[0]["message"])["kind"] for p in ACCEPTED}
    assert kinds >= {"task", "event"}


@pytest.mark.parametrize("case", ACCEPTED)
def test_an_accepted_conformance_vector_validates(case: dict[str, Any]) -> None:
    envelope = json.loads(case["message"])
    assert envelope_problems(envelope) == []
    if envelope.get("caller"):
        claims = jwt.decode(envelope["caller"], options={"verify_signature": False})
        assert problems(CALLER_TOKEN, claims) == []


@pytest.mark.parametrize("tp", [tp for tp, _ in SCHEMA_TYPES], ids=mesh_type)
def test_a_sample_of_each_type_validates(tp: type[Any]) -> None:
    assert problems(mesh_type(tp), json.loads(msgspec.json.encode(SAMPLES[tp]))) == []


# Wrong instances are refused, with the reason.


def ticket_envelope(**changes: Any) -> dict[str, Any]:
    envelope = readme_envelope()
    for path, value in changes.items():
        *parents, last = path.split("__")
        node = envelope
        for key in parents:
            node = node[key]
        if value is ...:
            del node[last]
        else:
            node[last] = value
    return envelope


@pytest.mark.parametrize(
    ("envelope", "reason"),
    [
        (ticket_envelope(created="2025-11-24"), "created: '2025-11-24' is not of type 'number'"),
        (ticket_envelope(sender=...), ".: 'sender' is a required property"),
        (ticket_envelope(kind="request"), "kind: 'request' is not one of"),
        (ticket_envelope(chain="link"), "chain: 'link' is not of type 'array'"),
        (ticket_envelope(body__customer=42), "body: customer: 42 is not of type 'string'"),
        (ticket_envelope(body__text=...), "body: .: 'text' is a required property"),
        (ticket_envelope(body__id=""), "body: id: '' should be non-empty"),
    ],
    ids=[
        "field-type",
        "missing-field",
        "unknown-kind",
        "chain-type",
        "body-type",
        "body-missing",
        "body-constraint",
    ],
)
def test_a_wrong_envelope_is_refused_with_its_reason(envelope: dict[str, Any], reason: str) -> None:
    found = envelope_problems(envelope)
    assert any(line.startswith(reason) for line in found), found


def test_wrong_jwt_claims_are_refused() -> None:
    claims = jwt.decode(readme_envelope()["caller"], options={"verify_signature": False})
    assert problems(CALLER_TOKEN, claims | {"jti": "not-a-ulid"})
    assert problems(CALLER_TOKEN, {k: v for k, v in claims.items() if k != "exp"})
    assert problems(CALLER_TOKEN, claims | {"scopes": "kb:read"})


# Messages of real workflows: the support and research meshes on real servers.

SUPPORT = SupportSettings(approval_timeout_s=3.0, call_timeout_s=20.0)
RESEARCH = ResearchSettings(research_timeout_s=20.0, call_timeout_s=20.0)
TICKET = Ticket(
    id="T-1",
    customer="alice",
    text="I was charged twice for my subscription this month. When will I get my money back?",
)
QUESTION = Question(text="How do NATS JetStream and Kafka compare for agent messaging?")


class Captured(msgspec.Struct):
    """What the event logs of the runs held: raw envelopes and headers, and the payloads
    the events recorded, by type."""

    envelopes: list[dict[str, Any]] = msgspec.field(default_factory=list)
    headers: list[dict[str, str]] = msgspec.field(default_factory=list)
    payloads: dict[str, list[Any]] = msgspec.field(default_factory=dict)
    certificates: list[str] = msgspec.field(default_factory=list)


@pytest.fixture
async def captured(mesh: Mesh) -> AsyncIterator[Captured]:
    secrets = write_secrets(mesh.settings.state_dir / "secrets" / "tools.toml", TOOL_CREDENTIALS)
    mesh.configure(retry_backoff_s=(0.1,), policy_file=POLICY, tool_secrets_file=secrets)
    desk = Desk(mesh.settings.redis_url, namespace=f"desk-{mesh.settings.subject_prefix}")
    try:
        agents = [
            triage.build(SUPPORT),
            billing.build(SUPPORT),
            team_agent("technical", SUPPORT),
            team_agent("product", SUPPORT),
            kb.build(),
            critic.build(),
            escalation.build(),
            toolgate(
                mesh.settings,
                tools=support_tools(desk),
                credentials=Credentials(mesh.settings.tool_secrets_file),
            ),
            orchestrator.build(RESEARCH),
            researcher.build(RESEARCH),
            writer.build(),
            reviewer.build(),
        ]
        for agent in agents:
            await mesh.start_replicas(agent)
        client = await mesh.ingress()
        runs = [new_id(), new_id()]
        await client.request(
            "triage",
            TICKET,
            token=mesh.token("alice", scopes=["kb:read", "refund:write", "handoff:write"]),
            returns=Resolution,
            workflow=runs[0],
            timeout=30,
        )
        await client.request(
            "orchestrator",
            QUESTION,
            token=mesh.token("alice", scopes=["corpus:read"]),
            returns=Report,
            workflow=runs[1],
            timeout=40,
        )
        got = Captured()
        for workflow in runs:
            await read_settled(client, workflow)  # every event of the run is stored
            subject = client.subjects.workflow_events(workflow)
            async for stored in read_from(client, mesh.settings.events_stream, subject):
                envelope = json.loads(stored.data)
                got.envelopes.append(envelope)
                got.headers.append(stored.headers)
                recorded = (envelope.get("body") or {}).get("body")
                if recorded and not recorded.get("omitted"):
                    got.payloads.setdefault(recorded["type"], []).append(recorded["value"])
        got.certificates = [mesh.identity(a.name).certificate for a in agents]
        yield got
    finally:
        await desk.aclose()


ROLE_TYPES = {t for role in CATALOGUE.roles for t in (role.accepts, role.returns)}
"""Every type a role of the meshes accepts or returns: the runs carry each of them."""


@pytest.mark.integration
async def test_the_messages_of_real_workflows_validate(captured: Captured) -> None:
    assert len(captured.envelopes) > 20
    for envelope in captured.envelopes:
        assert envelope["type"] == EVENT
        assert envelope_problems(envelope) == [], envelope
        claims = jwt.decode(envelope["caller"], options={"verify_signature": False})
        assert problems(CALLER_TOKEN, claims) == []
    assert set(captured.payloads) >= ROLE_TYPES, sorted(ROLE_TYPES - set(captured.payloads))
    for name, values in captured.payloads.items():
        if name in SCHEMAS:
            for value in values:
                assert problems(name, value) == [], (name, value)
    for certificate in captured.certificates:
        claims = jwt.decode(certificate, options={"verify_signature": False})
        assert problems(CERTIFICATE, claims) == []
    kinds = {e["body"]["kind"] for e in captured.envelopes}
    assert kinds >= {"accepted", "call", "completed"}


@pytest.mark.integration
async def test_real_events_are_the_asyncapi_documents_event_messages(captured: Captured) -> None:
    doc = json.loads((SUBJECTS_DIR / ASYNCAPI_FILE).read_text(encoding="utf-8"))
    registry: Registry[Any] = Registry().with_resource(
        "urn:asyncapi", Resource.from_contents(doc, default_specification=DRAFT7)
    )
    (key,) = doc["channels"]["event"]["messages"]

    def check(part: str, instance: Any) -> None:
        schema = {"$ref": f"urn:asyncapi#/components/messages/{key}/{part}"}
        jsonschema.Draft7Validator(schema, registry=registry).validate(instance)

    for envelope, headers in zip(captured.envelopes, captured.headers, strict=True):
        check("payload", envelope)
        check("headers", headers)
