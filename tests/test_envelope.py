"""The envelope codec: round trips, rolling upgrades, and the errors of bad input."""

from __future__ import annotations

import json
import re
import time

import msgspec
import pytest

from jetmesh import Envelope, ErrorBody, Malformed, RejectedMessage, SchemaViolation
from jetmesh.envelope import (
    ENVELOPE_VERSION,
    decode_body,
    decode_envelope,
    encode,
    encode_envelope,
    new_id,
    type_name,
)
from services.support.wire import Ticket

BODY = b'{"id":"T-1","customer":"alice","text":"charged twice"}'


def full_envelope() -> Envelope:
    return Envelope(
        id=new_id(),
        kind="task",
        workflow=new_id(),
        sender="gateway",
        to="triage",
        created=1764000000.25,
        type="support.Ticket/1",
        parent=new_id(),
        step="triage",
        reply_to="mesh.agent.gateway.reply.i1",
        caller="a.b.c",
        deadline=1764000030.5,
        body=msgspec.Raw(BODY),
    )


def as_dict(env: Envelope) -> dict[str, object]:
    return json.loads(encode_envelope(env))


def test_round_trip_keeps_every_field() -> None:
    env = full_envelope()
    back = decode_envelope(encode_envelope(env))
    assert msgspec.structs.asdict(back) | {"body": None} == msgspec.structs.asdict(env) | {
        "body": None
    }
    assert bytes(back.body) == BODY


def test_body_stays_raw_bytes_until_decoded() -> None:
    back = decode_envelope(encode_envelope(full_envelope()))
    assert isinstance(back.body, msgspec.Raw)
    assert decode_body(back, Ticket) == Ticket(id="T-1", customer="alice", text="charged twice")


def test_minimal_envelope_gets_defaults() -> None:
    data = b'{"id":"x","kind":"event","workflow":"w","sender":"s","to":"events","created":1}'
    env = decode_envelope(data)
    assert (env.type, env.parent, env.step, env.reply_to, env.caller, env.deadline) == (
        "",
        None,
        "",
        None,
        "",
        None,
    )
    assert env.v == ENVELOPE_VERSION
    assert bytes(env.body) == b"null"


def test_unknown_fields_are_ignored_for_rolling_upgrades() -> None:
    fields = as_dict(full_envelope())
    fields["priority"] = 7
    fields["v"] = ENVELOPE_VERSION + 1
    env = decode_envelope(json.dumps(fields).encode())
    assert env.to == "triage"
    assert env.v == ENVELOPE_VERSION + 1


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"not json", id="not-json"),
        pytest.param(b'{"id": "x"', id="truncated"),
        pytest.param(b"[1, 2]", id="array"),
        pytest.param(b"null", id="null"),
    ],
)
def test_bad_json_is_malformed(data: bytes) -> None:
    with pytest.raises(Malformed) as info:
        decode_envelope(data)
    assert info.value.reason == "malformed"
    assert isinstance(info.value, RejectedMessage)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("created", "yesterday"),
        ("kind", "command"),
        ("id", 42),
        ("parent", 1.5),
        ("deadline", "soon"),
        ("v", "one"),
    ],
)
def test_wrong_types_are_malformed(field: str, value: object) -> None:
    fields = as_dict(full_envelope())
    fields[field] = value
    with pytest.raises(Malformed, match=field):
        decode_envelope(json.dumps(fields).encode())


@pytest.mark.parametrize("field", ["id", "kind", "workflow", "sender", "to", "created"])
def test_missing_required_fields_are_malformed(field: str) -> None:
    fields = as_dict(full_envelope())
    del fields[field]
    with pytest.raises(Malformed, match=f"missing required field `{field}`"):
        decode_envelope(json.dumps(fields).encode())


def test_decode_body_schema_violation_names_type_and_path() -> None:
    env = msgspec.structs.replace(
        full_envelope(), body=msgspec.Raw(b'{"id":"T-1","customer":"alice","text":7}')
    )
    with pytest.raises(SchemaViolation) as info:
        decode_body(env, Ticket)
    assert info.value.reason == "schema-violation"
    assert info.value.detail.startswith("support.Ticket/1: ")
    assert "$.text" in info.value.detail


def test_decode_body_enforces_constraints() -> None:
    env = msgspec.structs.replace(
        full_envelope(), body=msgspec.Raw(b'{"id":"","customer":"alice","text":"x"}')
    )
    with pytest.raises(SchemaViolation, match=r"\$\.id"):
        decode_body(env, Ticket)


def test_decode_body_bad_json_is_schema_violation() -> None:
    env = msgspec.structs.replace(full_envelope(), body=msgspec.Raw(b"{"))
    expected = re.escape(f"schema-violation: {type_name(ErrorBody)}: ")
    with pytest.raises(SchemaViolation, match=f"^{expected}"):
        decode_body(env, ErrorBody)


def test_type_name_prefers_mesh_type() -> None:
    class Plain(msgspec.Struct):
        x: int

    assert type_name(Ticket) == "support.Ticket/1"
    assert type_name(Plain) == "Plain"
    assert type_name(int) == "int"


def test_encode_matches_msgspec_and_ids_are_ulids() -> None:
    assert encode(Ticket(id="T-1", customer="alice", text="hi")) == (
        b'{"id":"T-1","customer":"alice","text":"hi","refund":null}'
    )
    first, second = new_id(), new_id()
    assert len(first) == 26
    assert first != second


def test_ids_are_sortable_ulids_and_decode_back() -> None:
    from jetmesh.ids import id_time, id_value, new_id

    crockford = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
    before = time.time()
    ids = [new_id() for _ in range(2000)]
    assert len(set(ids)) == len(ids)
    for ulid in ids[:50]:
        slow = 0
        for ch in ulid:
            slow = slow * 32 + crockford.index(ch)
        assert id_value(ulid) == slow == id_value(ulid.lower())
        assert abs(id_time(ulid) - before) < 5
    time.sleep(0.002)
    assert new_id() > ids[0]  # later millisecond sorts after


@pytest.mark.parametrize(
    "bad",
    [
        "8" * 26,
        "0" * 25,
        "0" * 25 + "U",
        "0" * 25 + "u",
        "0" * 25 + "!",
        " " + "0" * 25,
        "0" * 25 + "\u0663",
        "0" * 25 + "_",
    ],
)
def test_id_value_refuses_what_is_not_a_ulid(bad: str) -> None:
    from jetmesh.ids import id_value

    with pytest.raises(ValueError, match="ULID"):
        id_value(bad)
