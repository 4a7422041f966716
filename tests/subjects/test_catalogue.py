"""The catalogue agrees with the code it describes: builders, streams, kinds, headers, roles."""

from __future__ import annotations

import re
from typing import Any

import jwt
import pytest

from jetmesh import MeshSettings, Subjects
from jetmesh.addresses import expected_kinds, subject_matches
from jetmesh.bus.streams import stream_configs
from jetmesh.envelope import type_name
from jetmesh.identity.certificates import CERT_TYP, issue_certificate
from jetmesh.identity.keys import KeyPair
from jetmesh.identity.signing import KEY_HEADER, SCHEME_HEADER, SIGNATURE_HEADER
from jetmesh.identity.tokens import mint_token
from jetmesh.runtime.runner import load_agent
from subjects.catalogue import (
    CATALOGUE,
    HEADERS,
    ROLES,
    SCHEMA_TYPES,
    SUBJECTS,
    TOKENS,
    mesh_type,
    schema_file,
)
from subjects.identity import CALLER_TOKEN_HEADER, CERTIFICATE_HEADER

S = Subjects("mesh")
SAMPLE_TOKENS = {"<agent>": "billing", "<instance>": "i1", "<workflow>": "wf1", "<kind>": "done"}
BUILT = {
    "task": S.task("billing"),
    "reply": S.reply("billing", "i1"),
    "event": S.event("wf1", "done"),
    "dlq": S.dlq("billing"),
}
SPECS = [pytest.param(spec, id=spec.name) for spec in SUBJECTS]


def example(pattern: str) -> str:
    return re.sub(r"<[a-z]+>", lambda m: SAMPLE_TOKENS[m.group(0)], pattern)


def test_subjects_are_the_wire_contract() -> None:
    assert [s.name for s in SUBJECTS] == ["task", "reply", "event", "dlq"]
    assert CATALOGUE.prefix == S.prefix


@pytest.mark.parametrize("spec", SPECS)
def test_pattern_agrees_with_the_builder(spec: Any) -> None:
    assert example(spec.pattern) == BUILT[spec.name]


@pytest.mark.parametrize("spec", SPECS)
def test_transport_agrees_with_the_streams(spec: Any) -> None:
    streams = {c.name: c.subjects for c in stream_configs(MeshSettings())}
    subject = example(spec.pattern)
    holding = [
        name
        for name, patterns in streams.items()
        if any(subject_matches(p, subject) for p in patterns or [])
    ]
    if spec.transport == "jetstream":
        assert holding == [spec.stream]
    else:
        assert spec.stream is None
        assert holding == [], "a core subject must not be captured by a stream"


@pytest.mark.parametrize("spec", SPECS)
def test_kinds_agree_with_the_verifier(spec: Any) -> None:
    enforced = expected_kinds(example(spec.pattern))
    assert set(spec.kinds) == (enforced or {"task", "reply", "error", "event"})


@pytest.mark.parametrize("spec", SPECS)
def test_headers_are_documented(spec: Any) -> None:
    documented = {h.name for h in HEADERS}
    assert set(spec.headers) <= documented
    assert len(set(spec.headers)) == len(spec.headers)
    if spec.name != "dlq":
        assert {SCHEME_HEADER, KEY_HEADER, SIGNATURE_HEADER, "traceparent"} <= set(spec.headers)
    assert ("Nats-Msg-Id" in spec.headers) == (spec.transport == "jetstream")


def test_every_payload_on_a_subject_is_catalogued_and_vice_versa() -> None:
    names = {mesh_type(tp): role for tp, role in SCHEMA_TYPES}
    carried = {p for spec in SUBJECTS for p in spec.payloads}
    assert carried <= set(names)
    assert {n for n, role in names.items() if role == "payload"} == carried
    assert {n for n, role in names.items() if role == "jwt-claims"} == {t.claims for t in TOKENS}


def test_names_and_files_are_unique() -> None:
    names = [mesh_type(tp) for tp, _ in SCHEMA_TYPES]
    assert len(set(names)) == len(names)
    assert len({schema_file(n) for n in names}) == len(names)
    assert [t.name for t in CATALOGUE.types] == names
    assert all(t.schema == f"schemas/{schema_file(t.name)}" for t in CATALOGUE.types)


@pytest.mark.parametrize(
    ("name", "expected"),
    [("support.Ticket/1", "support.Ticket.v1.json"), ("mesh.Event/12", "mesh.Event.v12.json")],
)
def test_schema_file(name: str, expected: str) -> None:
    assert schema_file(name) == expected


@pytest.mark.parametrize("name", ["Ticket", "a/b/1", "../x/1", "x/", "x y/1", "x/1\n"])
def test_schema_file_rejects_bad_names(name: str) -> None:
    with pytest.raises(ValueError, match="is not <dotted name>/<version>"):
        schema_file(name)


@pytest.mark.parametrize(
    "tp",
    [pytest.param(tp, id=mesh_type(tp)) for tp, _ in SCHEMA_TYPES],
)
def test_catalogued_name_is_what_the_library_writes(tp: type[Any]) -> None:
    assert type_name(tp) == mesh_type(tp)


def test_roles_agree_with_the_reference_services() -> None:
    for role in ROLES:
        agent = load_agent(f"services.{role.mesh}.{role.agent}:agent")
        assert agent.name == role.agent
        assert role.subject == S.task(role.agent)
        (handler,) = agent.handlers.values()
        assert role.accepts == handler.input_name
        assert role.returns == type_name(handler.output_type)


def test_jwt_headers_agree_with_the_library() -> None:
    key, root = KeyPair.generate("gateway"), KeyPair.generate("root")
    token = mint_token(key, subject="alice", tenant="t", scopes=[], ttl_s=60)
    cert = issue_certificate(root, key, publish=[], subscribe=[], ttl_s=60)
    assert jwt.get_unverified_header(token) == CALLER_TOKEN_HEADER | {"kid": key.kid}
    assert jwt.get_unverified_header(cert) == CERTIFICATE_HEADER | {"kid": root.kid}
    assert CERTIFICATE_HEADER["typ"] == CERT_TYP


def test_meshes_are_gathered_from_services() -> None:
    from services import demo, research, support
    from subjects.meshes import meshes

    found = {mesh.name: mesh for mesh in meshes()}
    assert set(found) == {"research", "support"}, "the demo declares no wire types"
    assert [r.agent for r in found["support"].roles] == list(support.ROLES)
    assert [r.agent for r in found["research"].roles] == list(research.ROLES)
    assert demo.MESHES == ("services.support", "services.research")
    catalogued = {t.name for t in CATALOGUE.types}
    for mesh in found.values():
        assert {mesh_type(tp) for tp in mesh.types} <= catalogued
        assert {(mesh.name, r.agent) for r in mesh.roles} <= {(r.mesh, r.agent) for r in ROLES}
