"""The wire contract as an AsyncAPI 3.0.0 document (``subjects/asyncapi.json``).

Built from the catalogue and the JSON Schemas that ``python -m subjects.generate`` writes
beside it, so it says nothing they do not:

- ``servers``: a NATS server on loopback (the embedded default), with the NATS nkey a role
  logs in with where the servers enforce a policy (``components.securitySchemes``);
- ``channels``: one per subject pattern (``mesh.agent.{agent}.task``,
  ``mesh.agent.{agent}.reply.{instance}``, ``mesh.event.{workflow}.{kind}``,
  ``mesh.dlq.{agent}``), and one per role of the meshes under ``services/``, at its own task
  subject, carrying the type it accepts;
- ``components.messages``: one per subject and payload type, its payload the envelope schema
  with ``kind``, ``type`` and ``body`` narrowed to that type, its headers the subject's
  required headers; signed messages carry the ``signed`` message trait;
- ``operations``: what an outside publisher does: send a task to each role (with the reply it
  gets, at the task's ``reply_to``), receive replies, receive a workflow's events;
- ``components.schemas``: every catalogued type, converted from its JSON Schema (2020-12) to
  an AsyncAPI Schema Object (a superset of draft-07): the same keywords, ``$defs`` moved to
  ``components.schemas`` and the references rewritten. A keyword draft-07 lacks is refused.

Example:
    >>> from subjects.generate import render
    >>> import json
    >>> doc = json.loads(render()[ASYNCAPI_FILE])
    >>> doc["channels"]["task"]["address"]
    'mesh.agent.{agent}.task'
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

from jetmesh.envelope import Envelope, ErrorBody

from .catalogue import Catalogue, HeaderSpec, SubjectSpec, mesh_type, schema_file

ASYNCAPI_VERSION: Final = "3.0.0"
ASYNCAPI_FILE: Final = "asyncapi.json"
SERVER: Final = "embedded"
SIGNED_TRAIT: Final = "signed"
NKEY_SCHEME: Final = "nkey"
SIGNATURE_SCHEMES: Final = ("ed25519", "ed25519-merkle-sha256")
"""Values of ``Mesh-Sig-Scheme`` (subjects/README.md, "Verifying what jetmesh sends")."""
SIGNATURE_HEADERS: Final = ("Mesh-Sig-Scheme", "Mesh-Key", "Mesh-Sig", "Mesh-Sig-Path")
"""The headers of a signature; ``Mesh-Sig-Path`` with the batch scheme only."""

DRAFT_07_KEYWORDS: Final = frozenset(
    {
        *("$id", "$schema", "$ref", "$comment", "title", "description", "default"),
        *("readOnly", "writeOnly", "examples", "multipleOf", "maximum", "exclusiveMaximum"),
        *("minimum", "exclusiveMinimum", "maxLength", "minLength", "pattern"),
        *("additionalItems", "items", "maxItems", "minItems", "uniqueItems", "contains"),
        *("maxProperties", "minProperties", "required", "additionalProperties"),
        *("definitions", "properties", "patternProperties", "dependencies", "propertyNames"),
        *("const", "enum", "type", "format", "contentMediaType", "contentEncoding"),
        *("if", "then", "else", "allOf", "anyOf", "oneOf", "not"),
    }
)
"""What an AsyncAPI Schema Object may hold (besides ``x-`` extensions and AsyncAPI's own
``discriminator``, ``externalDocs`` and ``deprecated``, which the catalogue does not use)."""

_SCHEMA_MAPS = ("properties", "patternProperties", "definitions", "dependencies")
_SCHEMA_LISTS = ("allOf", "anyOf", "oneOf")
_SCHEMA_VALUES = (
    *("items", "additionalItems", "additionalProperties", "not", "contains", "propertyNames"),
    *("if", "then", "else"),
)

_PARAMETER_RE = re.compile(r"<([A-Za-z]+)>")
_TOKEN = "one token of 1-64 characters from A-Z a-z 0-9 _ -"
PARAMETERS: Final = {
    "agent": f"The role: {_TOKEN}.",
    "instance": f"The process of that role that sent the task (its reply_to names it): {_TOKEN}.",
    "workflow": f"The workflow's id (the ULID of its first task): {_TOKEN}.",
    "kind": "The event's kind (accepted, started, call, reply, completed, ...); may be two tokens.",
}
"""What each ``<...>`` of a subject pattern is."""
_LOCATIONS: Final = {
    ("task", "agent"): "$message.payload#/to",
    ("reply", "agent"): "$message.payload#/to",
    ("event", "workflow"): "$message.payload#/workflow",
}
"""Where a message says the value of a parameter, by (subject, parameter)."""
_CORRELATION: Final = {
    "task": {
        "description": "The task's id; its reply (or error) carries it as parent.",
        "location": "$message.payload#/id",
    },
    "reply": {
        "description": "The id of the task it answers.",
        "location": "$message.payload#/parent",
    },
}
"""How a reply is matched to its task, by subject."""

_INFO = """\
The subjects and messages of a jetmesh mesh: agents that talk over NATS with signed JSON
envelopes. Generated from subjects/catalogue.py (`python -m subjects.generate`) with the
JSON Schemas in subjects/schemas/; subjects/README.md is the full contract (the delegation
chain, the checks every receiver makes and the refusals it records).

Subjects are shown with the default prefix `{prefix}`; a deployment may configure another.
Every message but a dead letter is signed with Ed25519 over its exact bytes (the `signed`
message trait); a task carries the caller token and the delegation chain in its envelope."""

_NKEY = """\
NATS nkey authentication: the client proves it holds an Ed25519 nkey seed by signing the
server's nonce. Where the servers enforce a policy (docs/security.md), each role is a NATS
user of its own, an nkey whose publish and subscribe permissions the policy derives; an
outside publisher is a role of the policy with `ingress = true` and uses the inbox prefix
`_INBOX.<role>`. The embedded default (`jetmesh up`) without a policy asks for no login."""

_SIGNED = """\
Signed by its sender: `Mesh-Sig` is the Ed25519 signature (base64url without padding) of
the exact message bytes (`Mesh-Sig-Scheme: ed25519`), or of `jetmesh/merkle/v1\\0` and the
Merkle root of a batch (`ed25519-merkle-sha256`, with `Mesh-Sig-Path`). `Mesh-Key` names
the key; its certificate, signed by a mesh root, is in the `MESH_KEYS` key-value bucket
under that id and must name the envelope's `sender`. Nothing is re-serialised before the
check."""

_DEAD_LETTER = (
    "The refused (or undeliverable) message's bytes and headers, unchanged: usually an "
    "envelope, but a message refused for being malformed need not be JSON."
)


def document(catalogue: Catalogue, schemas: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The AsyncAPI 3.0.0 document of ``catalogue``, whose JSON Schemas, by mesh type name,
    are ``schemas``.

    Raises:
        KeyError: a catalogued type has no schema, or a subject of the contract is missing.
        ValueError: a schema uses a keyword draft-07 lacks, or two different definitions
            would share a component name.
    """
    subjects = {s.name: s for s in catalogue.subjects}
    headers = {h.name: h for h in catalogue.headers}
    messages: dict[str, Any] = {}
    channels: dict[str, Any] = {}
    for name in ("task", "reply", "event", "dlq"):
        subject = subjects[name]
        keys = [_add_message(messages, subject, payload) for payload in subject.payloads]
        if not subject.payloads:
            keys.append(_add_message(messages, subject, None))
        channels[name] = _channel(subject, keys, catalogue.prefix)
    for role in catalogue.roles:
        key = _message_key(subjects["task"], role.accepts)
        if key not in messages:
            raise KeyError(f"{role.agent} accepts {role.accepts}, not a task payload")
        channels[f"task.{role.agent}"] = {
            "address": role.subject,
            "title": f"{role.agent} tasks",
            "summary": role.description,
            "messages": {key: _ref("components", "messages", key)},
            "tags": [{"name": role.mesh}],
            **_extensions(subjects["task"]),
        }
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": "jetmesh wire contract",
            "version": f"{catalogue.catalogue_version}.0.0",
            "description": _INFO.format(prefix=catalogue.prefix),
            "x-envelope-version": catalogue.envelope_version,
            "x-subject-prefix": catalogue.prefix,
        },
        "defaultContentType": "application/json",
        "servers": {
            SERVER: {
                "host": "127.0.0.1:4222",
                "protocol": "nats",
                "title": "Embedded NATS server",
                "description": (
                    "The embedded default on loopback (`jetmesh up`); production points at a "
                    "NATS cluster with JetStream."
                ),
                "security": [_ref("components", "securitySchemes", NKEY_SCHEME)],
            }
        },
        "channels": channels,
        "operations": _operations(catalogue, subjects, channels),
        "components": {
            "schemas": {**_type_schemas(catalogue, schemas), **_header_schemas(subjects, headers)},
            "messages": messages,
            "messageTraits": {
                SIGNED_TRAIT: {
                    "description": _SIGNED,
                    "tags": [{"name": SIGNED_TRAIT}],
                    "x-signature-headers": list(SIGNATURE_HEADERS),
                }
            },
            "securitySchemes": {
                NKEY_SCHEME: {
                    "type": "asymmetricEncryption",
                    "description": _NKEY,
                    "x-nats-auth": "nkey",
                }
            },
        },
    }


def component_key(name: str) -> str:
    """The component name of a catalogued type: ``support.Ticket/1`` -> ``support.Ticket.v1``."""
    return schema_file(name).removesuffix(".json")


def _ref(*path: str) -> dict[str, str]:
    return {"$ref": "#/" + "/".join(p.replace("~", "~0").replace("/", "~1") for p in path)}


def _message_key(subject: SubjectSpec, payload: str | None) -> str:
    return f"{subject.name}.{component_key(payload) if payload else 'dead-letter'}"


def _signed(subject: SubjectSpec) -> bool:
    return "Mesh-Sig" in subject.headers


def _extensions(subject: SubjectSpec) -> dict[str, Any]:
    found: dict[str, Any] = {"x-transport": subject.transport}
    if subject.stream:
        found["x-stream"] = subject.stream
    return found


def _add_message(messages: dict[str, Any], subject: SubjectSpec, payload: str | None) -> str:
    key = _message_key(subject, payload)
    message: dict[str, Any] = {
        "name": key,
        "headers": _ref("components", "schemas", f"headers.{subject.name}"),
    }
    if payload is None:
        message |= {
            "title": f"dead letter on {subject.name}",
            "summary": subject.description,
            "contentType": "application/octet-stream",
            "payload": {"description": _DEAD_LETTER},
        }
    else:
        kind = "error" if payload == mesh_type(ErrorBody) else subject.kinds[0]
        message |= {
            "title": f"{payload} {kind}",
            "summary": f"A {kind} envelope whose body is a {payload}.",
            "payload": {
                "allOf": [_ref("components", "schemas", component_key(mesh_type(Envelope)))],
                "properties": {
                    "kind": {"const": kind},
                    "type": {"const": payload},
                    "body": _ref("components", "schemas", component_key(payload)),
                },
                "required": ["type", "body"],
            },
        }
    correlation = _CORRELATION.get(subject.name)
    if correlation:
        message["correlationId"] = correlation
    if _signed(subject):
        message["traits"] = [_ref("components", "messageTraits", SIGNED_TRAIT)]
    messages[key] = message
    return key


def _channel(subject: SubjectSpec, keys: list[str], prefix: str) -> dict[str, Any]:
    address = _PARAMETER_RE.sub(r"{\1}", subject.pattern)
    if not address.startswith(f"{prefix}."):
        raise ValueError(f"subject {subject.pattern} is not under the prefix {prefix}")
    parameters: dict[str, Any] = {}
    for name in _PARAMETER_RE.findall(subject.pattern):
        parameter = {"description": PARAMETERS[name]}
        location = _LOCATIONS.get((subject.name, name))
        if location:
            parameter["location"] = location
        parameters[name] = parameter
    return {
        "address": address,
        "title": f"{subject.name} subject",
        "summary": subject.description,
        "parameters": parameters,
        "messages": {key: _ref("components", "messages", key) for key in keys},
        **_extensions(subject),
    }


def _operations(
    catalogue: Catalogue, subjects: Mapping[str, SubjectSpec], channels: Mapping[str, Any]
) -> dict[str, Any]:
    task, reply = subjects["task"], subjects["reply"]
    error_key = _message_key(reply, mesh_type(ErrorBody))

    def reply_to(returns: list[str]) -> dict[str, Any]:
        return {
            "channel": _ref("channels", "reply"),
            "address": {
                "location": "$message.payload#/reply_to",
                "description": "The task's reply_to: one of the sender's own reply subjects.",
            },
            "messages": [_ref("channels", "reply", "messages", key) for key in returns],
        }

    operations: dict[str, Any] = {
        "sendTask": {
            "action": "send",
            "channel": _ref("channels", "task"),
            "summary": "Send a task to a role (of the meshes below, or of your own).",
            "messages": [
                _ref("channels", "task", "messages", k) for k in channels["task"]["messages"]
            ],
            "reply": reply_to(list(channels["reply"]["messages"])),
        }
    }
    for role in catalogue.roles:
        returns = _message_key(reply, role.returns)
        if returns not in channels["reply"]["messages"]:
            raise KeyError(f"{role.agent} returns {role.returns}, not a reply payload")
        channel = f"task.{role.agent}"
        operations[f"sendTask.{role.agent}"] = {
            "action": "send",
            "channel": _ref("channels", channel),
            "summary": f"Ask {role.agent} ({role.mesh}): {role.description}.",
            "messages": [_ref("channels", channel, "messages", _message_key(task, role.accepts))],
            "reply": reply_to([returns, error_key]),
            "tags": [{"name": role.mesh}],
        }
    operations["receiveReply"] = {
        "action": "receive",
        "channel": _ref("channels", "reply"),
        "summary": "Receive the reply (or error) to a task this process sent.",
        "messages": [
            _ref("channels", "reply", "messages", k) for k in channels["reply"]["messages"]
        ],
    }
    operations["receiveEvents"] = {
        "action": "receive",
        "channel": _ref("channels", "event"),
        "summary": "Follow a workflow's event log (mesh.event.<workflow>.>).",
        "messages": [
            _ref("channels", "event", "messages", k) for k in channels["event"]["messages"]
        ],
    }
    return operations


def _header_schemas(
    subjects: Mapping[str, SubjectSpec], headers: Mapping[str, HeaderSpec]
) -> dict[str, Any]:
    def header(name: str) -> dict[str, Any]:
        spec = headers[name]
        found: dict[str, Any] = {"type": "string", "description": spec.description}
        if name == "Mesh-Sig-Scheme":
            found["enum"] = list(SIGNATURE_SCHEMES)
        elif "<" not in spec.example:
            found["examples"] = [spec.example]
        return found

    found: dict[str, Any] = {
        "headers.signature": {
            "title": "signature headers",
            "type": "object",
            "properties": {name: header(name) for name in SIGNATURE_HEADERS},
            "required": [n for n in SIGNATURE_HEADERS if n != "Mesh-Sig-Path"],
            "if": {"properties": {"Mesh-Sig-Scheme": {"const": SIGNATURE_SCHEMES[1]}}},
            "then": {"required": ["Mesh-Sig-Path"]},
        }
    }
    for subject in subjects.values():
        others = [n for n in subject.headers if n not in SIGNATURE_HEADERS]
        own = {
            "type": "object",
            "properties": {name: header(name) for name in others},
            "required": others,
        }
        schema = (
            {"allOf": [_ref("components", "schemas", "headers.signature"), own]}
            if _signed(subject)
            else own
        )
        found[f"headers.{subject.name}"] = {"title": f"{subject.name} headers", **schema}
    return found


def _type_schemas(catalogue: Catalogue, schemas: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Every catalogued type's schema, and the definitions they use, by component name."""
    tops: dict[tuple[str, str], str] = {}
    for spec in catalogue.types:
        top = str(schemas[spec.name]["$ref"]).removeprefix("#/$defs/")
        tops[(_namespace(spec.name), top)] = spec.name
    found: dict[str, Any] = {}
    for spec in catalogue.types:
        schema = schemas[spec.name]
        namespace = _namespace(spec.name)
        keys = {
            name: component_key(tops[(namespace, name)])
            if (namespace, name) in tops
            else f"{namespace}.{name}"
            for name in schema.get("$defs", {})
        }
        for name, definition in schema.get("$defs", {}).items():
            converted = _convert(definition, keys, f"{spec.name} $defs/{name}")
            if (namespace, name) in tops:
                converted["title"] = tops[(namespace, name)]
            key = keys[name]
            if found.setdefault(key, converted) != converted:
                raise ValueError(f"two different definitions would be the schema {key}")
    return found


def _namespace(name: str) -> str:
    """``support.Ticket/1`` -> ``support``."""
    return name.rsplit("/", 1)[0].rsplit(".", 1)[0]


def _convert(schema: Any, keys: Mapping[str, str], where: str) -> Any:
    """``schema`` with its ``#/$defs/<name>`` references pointing at ``components.schemas``.

    Raises:
        ValueError: it uses a keyword draft-07 lacks, or a reference other than to ``$defs``.
    """
    if isinstance(schema, bool):
        return schema
    if not isinstance(schema, Mapping):
        raise ValueError(f"{where}: {schema!r} is not a schema")
    converted: dict[str, Any] = {}
    for key, value in schema.items():
        if key not in DRAFT_07_KEYWORDS and not key.startswith("x-"):
            raise ValueError(f"{where}: {key!r} is not a draft-07 keyword")
        if key == "$ref":
            target = str(value).removeprefix("#/$defs/")
            if target not in keys:
                raise ValueError(f"{where}: reference {value!r} is not to one of its $defs")
            converted[key] = _ref("components", "schemas", keys[target])["$ref"]
        elif key in _SCHEMA_MAPS:
            converted[key] = {n: _convert(v, keys, f"{where}/{n}") for n, v in value.items()}
        elif key in _SCHEMA_LISTS or (key == "items" and isinstance(value, list)):
            converted[key] = [_convert(v, keys, f"{where}/{key}") for v in value]
        elif key in _SCHEMA_VALUES:
            converted[key] = _convert(value, keys, f"{where}/{key}")
        else:
            converted[key] = value
    return converted
