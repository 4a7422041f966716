"""subjects/asyncapi.json is a valid AsyncAPI 3.0.0 document by the AsyncAPI Initiative's own
JSON Schema (vendored, tests/subjects/vendor/), checked with ``jsonschema``; every reference
in it resolves; it holds every subject, type and role of the catalogue; its message schemas
accept a real envelope and refuse a wrong one; and the validator refuses broken documents."""

from __future__ import annotations

import copy
import hashlib
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7

from subjects import asyncapi, generate
from subjects.catalogue import CATALOGUE

VENDOR = Path(__file__).resolve().parent / "vendor"
SPEC_FILE = VENDOR / "asyncapi-3.0.0.json"
README = Path(__file__).resolve().parents[2] / "subjects" / "README.md"
DOC_URI = "urn:jetmesh:asyncapi"

Document = dict[str, Any]


def load(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    loaded: dict[str, Any] = load(SPEC_FILE)
    return loaded


@pytest.fixture(scope="module")
def validator(spec: dict[str, Any]) -> jsonschema.protocols.Validator:
    cls = jsonschema.validators.validator_for(spec)
    cls.check_schema(spec)
    return cls(spec, format_checker=cls.FORMAT_CHECKER)


@pytest.fixture
def doc() -> Document:
    loaded: Document = load(generate.SUBJECTS_DIR / asyncapi.ASYNCAPI_FILE)
    return loaded


def errors(validator: jsonschema.protocols.Validator, doc: Document) -> list[str]:
    return [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message[:200]}"
        for e in validator.iter_errors(doc)
    ]


def test_the_vendored_schema_is_the_release_its_readme_names(spec: dict[str, Any]) -> None:
    readme = (VENDOR / "README.md").read_text(encoding="utf-8")
    (checksum,) = re.findall(r"sha256\s+([0-9a-f]{64})\s+asyncapi-3\.0\.0\.json", readme)
    assert hashlib.sha256(SPEC_FILE.read_bytes()).hexdigest() == checksum
    assert spec["$schema"] == "http://json-schema.org/draft-07/schema"
    assert spec["properties"]["asyncapi"]["const"] == "3.0.0"


def test_the_validator_is_the_draft_the_schema_declares(
    validator: jsonschema.protocols.Validator,
) -> None:
    assert isinstance(validator, jsonschema.Draft7Validator)


def test_the_committed_document_is_what_the_generator_writes(doc: Document) -> None:
    assert generate.render()[asyncapi.ASYNCAPI_FILE] == generate.dump(doc)


def test_check_finds_the_document_stale_or_missing_and_write_repairs_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert generate.main(["--dir", str(tmp_path)]) == 0
    target = tmp_path / asyncapi.ASYNCAPI_FILE
    assert target.read_text(encoding="utf-8") == generate.render()[asyncapi.ASYNCAPI_FILE]
    target.write_text("{}\n", encoding="utf-8")
    capsys.readouterr()
    assert generate.main(["--check", "--dir", str(tmp_path)]) == 1
    assert "stale:   asyncapi.json" in capsys.readouterr().err
    target.unlink()
    assert generate.main(["--check", "--dir", str(tmp_path)]) == 1
    assert "missing: asyncapi.json" in capsys.readouterr().err
    assert generate.main(["--dir", str(tmp_path)]) == 0
    assert "written: asyncapi.json" in capsys.readouterr().out
    assert generate.problems(tmp_path) == []


@pytest.mark.parametrize("check", [[], ["--check"]], ids=["write", "check"])
def test_a_generator_renders_its_files_once(tmp_path: Path, check: list[str]) -> None:
    calls: list[int] = []

    def output() -> generate.Output:
        calls.append(1)
        return generate.Output({"a.json": "{}\n", "b/c.json": "[]\n"}, owned=("*.json",))

    args = dict(prog="gen", doc=None, root=tmp_path, output=output, noun="files", hint="")
    (tmp_path / "old.json").write_text("{}\n", encoding="utf-8")
    assert generate.run([*check, "--dir", str(tmp_path)], **args) == (1 if check else 0)
    assert calls == [1]
    assert (tmp_path / "old.json").exists() == bool(check)
    assert (tmp_path / "b" / "c.json").exists() != bool(check)


def test_the_document_is_valid_asyncapi_3(
    validator: jsonschema.protocols.Validator, doc: Document
) -> None:
    assert doc["asyncapi"] == "3.0.0"
    assert errors(validator, doc) == []


def refs(node: Any, path: str = "#") -> Iterator[tuple[str, str]]:
    """Every ``$ref`` in ``node``, with where it is."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield path, value
            else:
                yield from refs(value, f"{path}/{key}")
    elif isinstance(node, list):
        for n, value in enumerate(node):
            yield from refs(value, f"{path}/{n}")


def resolve(doc: Document, ref: str) -> Any:
    assert ref.startswith("#/"), f"{ref} is not a reference inside the document"
    node: Any = doc
    for part in ref[2:].split("/"):
        key = part.replace("~1", "/").replace("~0", "~")
        assert isinstance(node, dict), f"{ref}: {key!r} is under a non-object"
        assert key in node, f"{ref}: no {key!r}"
        node = node[key]
    return node


def deref(doc: Document, ref: str) -> Any:
    """What ``ref`` points at, following references to references."""
    node = resolve(doc, ref)
    while isinstance(node, dict) and set(node) == {"$ref"}:
        node = resolve(doc, node["$ref"])
    return node


def test_every_reference_resolves_inside_the_document(doc: Document) -> None:
    found = list(refs(doc))
    assert len(found) > 100
    for where, ref in found:
        assert resolve(doc, ref) is not None, where


def test_every_channel_message_is_a_message_and_operations_use_their_channels(
    doc: Document,
) -> None:
    for name, channel in doc["channels"].items():
        assert channel["messages"], name
        for key, ref in channel["messages"].items():
            assert ref == {"$ref": f"#/components/messages/{key}"}
            assert "payload" in resolve(doc, ref["$ref"])
    for name, operation in doc["operations"].items():
        channel = operation["channel"]["$ref"]
        for message in operation["messages"]:
            assert message["$ref"].startswith(f"{channel}/messages/"), name
            resolve(doc, message["$ref"])
        if "reply" in operation:
            reply = operation["reply"]
            for message in reply["messages"]:
                assert message["$ref"].startswith(f"{reply['channel']['$ref']}/messages/")


def required_headers(doc: Document, schema: dict[str, Any]) -> set[str]:
    if "$ref" in schema:
        return required_headers(doc, resolve(doc, schema["$ref"]))
    found = set(schema.get("required", []))
    for part in schema.get("allOf", []):
        found |= required_headers(doc, part)
    return found


def test_every_catalogue_subject_type_and_role_is_in_it(doc: Document) -> None:
    addresses = {c["address"]: c for c in doc["channels"].values()}
    for subject in CATALOGUE.subjects:
        address = re.sub(r"<(\w+)>", r"{\1}", subject.pattern)
        channel = addresses[address]
        assert set(channel["parameters"]) == set(re.findall(r"<(\w+)>", subject.pattern))
        assert channel["x-transport"] == subject.transport
        messages = [resolve(doc, ref["$ref"]) for ref in channel["messages"].values()]
        if subject.payloads:
            carried = [m["payload"]["properties"]["type"]["const"] for m in messages]
            assert sorted(carried) == sorted(subject.payloads)
        else:
            assert [m["name"] for m in messages] == [f"{subject.name}.dead-letter"]
        for message in messages:
            assert required_headers(doc, message["headers"]) == set(subject.headers)
            signed = {"$ref": "#/components/messageTraits/signed"} in message.get("traits", [])
            assert signed == ("Mesh-Sig" in subject.headers)
    schemas = doc["components"]["schemas"]
    for spec in CATALOGUE.types:
        assert schemas[asyncapi.component_key(spec.name)]["title"] == spec.name
    for role in CATALOGUE.roles:
        channel = addresses[role.subject]
        (message,) = (resolve(doc, r["$ref"]) for r in channel["messages"].values())
        assert message["payload"]["properties"]["type"]["const"] == role.accepts
        assert message["correlationId"]["location"] == "$message.payload#/id"
        operation = doc["operations"][f"sendTask.{role.agent}"]
        assert operation["action"] == "send"
        replies = [deref(doc, r["$ref"]) for r in operation["reply"]["messages"]]
        assert [m["payload"]["properties"]["type"]["const"] for m in replies] == [
            role.returns,
            "mesh.ErrorBody/1",
        ]
        assert {m["correlationId"]["location"] for m in replies} == {"$message.payload#/parent"}
    assert {o["action"] for o in doc["operations"].values()} == {"send", "receive"}
    assert doc["servers"]["embedded"]["protocol"] == "nats"


def test_component_schemas_are_the_committed_schemas(doc: Document) -> None:
    """The same keywords as subjects/schemas/*.json: only the references move."""
    for spec in CATALOGUE.types:
        committed = load(generate.SUBJECTS_DIR / spec.schema)
        top = committed["$ref"].removeprefix("#/$defs/")
        converted = doc["components"]["schemas"][asyncapi.component_key(spec.name)]
        expected = json.dumps(committed["$defs"][top] | {"title": spec.name}, sort_keys=True)
        got = re.sub(
            r'"#/components/schemas/(?:\w+\.)*?(\w+)(?:\.v\d+)?"',
            r'"#/$defs/\1"',
            json.dumps(converted, sort_keys=True),
        )
        assert got == expected, spec.name


def test_a_keyword_draft_07_lacks_is_refused() -> None:
    schemas = {s.name: load(generate.SUBJECTS_DIR / s.schema) for s in CATALOGUE.types}
    envelope = schemas["mesh.Envelope/1"]
    envelope["$defs"]["Envelope"]["properties"]["chain"]["prefixItems"] = [{"type": "string"}]
    with pytest.raises(ValueError, match="'prefixItems' is not a draft-07 keyword"):
        asyncapi.document(CATALOGUE, schemas)


# Message schemas: a real envelope passes, a wrong one does not.


def message_validator(doc: Document, message: str, part: str) -> jsonschema.Draft7Validator:
    registry: Registry[Any] = Registry().with_resource(
        DOC_URI, Resource.from_contents(doc, default_specification=DRAFT7)
    )
    schema = {"$ref": f"{DOC_URI}#/components/messages/{message}/{part}"}
    return jsonschema.Draft7Validator(schema, registry=registry)


def readme_example() -> tuple[dict[str, Any], dict[str, str]]:
    text = README.read_text(encoding="utf-8")
    lines = dict(re.findall(r"^(bytes|Mesh-Key|Mesh-Sig|traceparent): (.+)$", text, re.MULTILINE))
    envelope = json.loads(lines["bytes"])
    headers = {
        "Mesh-Sig-Scheme": "ed25519",
        "Mesh-Key": lines["Mesh-Key"],
        "Mesh-Sig": lines["Mesh-Sig"],
        "Nats-Msg-Id": envelope["id"],
        "traceparent": lines["traceparent"],
    }
    return envelope, headers


def test_the_readme_example_is_a_ticket_task_message(doc: Document) -> None:
    envelope, headers = readme_example()
    assert envelope["type"] == "support.Ticket/1"
    message_validator(doc, "task.support.Ticket.v1", "payload").validate(envelope)
    message_validator(doc, "task.support.Ticket.v1", "headers").validate(headers)


def edit(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def apply(target: dict[str, Any]) -> None:
        *parents, last = path.split("/")
        node = target
        for key in parents:
            node = node[key]
        if value is None:
            del node[last]
        else:
            node[last] = value

    return apply


@pytest.mark.parametrize(
    ("message", "change"),
    [
        pytest.param("task.support.Ticket.v1", edit("body/customer", 7), id="body-field-type"),
        pytest.param("task.support.Ticket.v1", edit("body/text", None), id="body-field-missing"),
        pytest.param("task.support.Ticket.v1", edit("created", "now"), id="envelope-field-type"),
        pytest.param("task.support.Ticket.v1", edit("sender", None), id="envelope-field-missing"),
        pytest.param("task.support.Case.v1", edit("kind", "task"), id="other-type"),
        pytest.param("reply.support.Resolution.v1", edit("kind", "reply"), id="not-a-reply"),
    ],
)
def test_a_wrong_envelope_is_refused(
    doc: Document, message: str, change: Callable[[dict[str, Any]], None]
) -> None:
    envelope, _ = readme_example()
    change(envelope)
    with pytest.raises(jsonschema.ValidationError):
        message_validator(doc, message, "payload").validate(envelope)


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(edit("Mesh-Sig", None), id="no-signature"),
        pytest.param(edit("Mesh-Sig-Scheme", "rsa"), id="unknown-scheme"),
        pytest.param(edit("Mesh-Sig-Scheme", "ed25519-merkle-sha256"), id="merkle-without-path"),
        pytest.param(edit("Nats-Msg-Id", None), id="no-msg-id"),
    ],
)
def test_wrong_headers_are_refused(doc: Document, change: Callable[[dict[str, Any]], None]) -> None:
    _, headers = readme_example()
    change(headers)
    with pytest.raises(jsonschema.ValidationError):
        message_validator(doc, "task.support.Ticket.v1", "headers").validate(headers)


# The validator bites: broken documents are refused, each at the part that is broken.


BROKEN = [
    pytest.param(edit("channels/task/address", 7), "channels/task", id="address-not-a-string"),
    pytest.param(
        edit("components/messages/task.support.Ticket.v1/payload", "support.Ticket/1"),
        "components/messages/task.support.Ticket.v1",
        id="payload-not-a-schema",
    ),
    pytest.param(
        edit("components/schemas/support.Ticket.v1/required", "id"),
        "components/schemas/support.Ticket.v1",
        id="required-not-a-list",
    ),
    pytest.param(
        edit("operations/receiveEvents/action", "subscribe"),
        "operations/receiveEvents",
        id="asyncapi-2-action",
    ),
    pytest.param(
        edit("operations/receiveEvents/channel", None),
        "operations/receiveEvents",
        id="operation-without-channel",
    ),
    pytest.param(edit("servers/embedded/protocol", None), "servers/embedded", id="no-protocol"),
    pytest.param(
        edit("components/securitySchemes/nkey/type", "nkey"),
        "components/securitySchemes/nkey",
        id="unknown-security-type",
    ),
    pytest.param(
        edit("channels/task/parameters/agent/location", "to"),
        "channels/task",
        id="parameter-location-not-an-expression",
    ),
    pytest.param(edit("asyncapi", "2.6.0"), "asyncapi", id="other-version"),
    pytest.param(edit("info", None), "", id="no-info"),
]


@pytest.mark.parametrize(("change", "where"), BROKEN)
def test_a_broken_document_is_refused_where_it_is_broken(
    validator: jsonschema.protocols.Validator,
    doc: Document,
    change: Callable[[dict[str, Any]], None],
    where: str,
) -> None:
    broken = copy.deepcopy(doc)
    change(broken)
    found = errors(validator, broken)
    assert found, "the validator accepted a broken document"
    assert all(line.startswith(where) for line in found), found
