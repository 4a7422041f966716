"""An envelope that names a field twice is malformed: parsers in other languages disagree
on which value wins, so one signature would carry two messages. Only the envelope's own
object is checked; objects nested in the body are the handler's to read."""

from __future__ import annotations

import json
import time

import msgspec
import pytest

from jetmesh import Malformed
from jetmesh.addresses import Subjects
from jetmesh.envelope import Envelope, decode_envelope, duplicate_key, encode_envelope, new_id
from jetmesh.identity.keys import KeyPair
from jetmesh.identity.signing import Signer
from jetmesh.identity.verifier import MSG_ID_HEADER, Verifier

TASK = "mesh.agent.billing.task"


def sample() -> Envelope:
    return Envelope(
        id=new_id(),
        kind="task",
        workflow=new_id(),
        sender="gateway",
        to="billing",
        created=time.time(),
        step="billing",
        body=msgspec.Raw(b'{"amount":1,"note":"hi"}'),
    )


def twice(data: bytes, name: str, value: bytes) -> bytes:
    """``data`` with ``name`` given once more, first (a first-wins parser reads ``value``)."""
    return b'{"' + name.encode() + b'":' + value + b"," + data[1:]


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("to", b'"kb"'),
        ("sender", b'"kb"'),
        ("workflow", b'"01JOTHER"'),
        ("step", b'"x"'),
        ("kind", b'"reply"'),
        ("caller", b'""'),
        ("chain", b"[]"),
        ("body", b'{"amount":9999}'),
        ("unknown_field", b"1"),  # an unknown field is ignored, but not twice
    ],
)
def test_a_field_named_twice_is_malformed(name: str, value: bytes) -> None:
    data = encode_envelope(sample())
    if name == "unknown_field":
        data = twice(data, name, b"0")
    with pytest.raises(Malformed, match=f"names '{name}' twice"):
        decode_envelope(twice(data, name, value))


@pytest.mark.parametrize(
    "spelling",
    [
        pytest.param(lambda d: json.dumps(json.loads(d), indent=1).encode(), id="spaces"),
        pytest.param(lambda d: d.replace(b'"to":', b'"\\u0074o":'), id="escaped-name"),
        pytest.param(lambda d: d.replace(b'"v":1,', b""), id="compact-other-encoder"),
    ],
)
def test_other_spellings_are_read_and_still_checked(spelling) -> None:
    """Another encoder's text (spaces, escapes, fields left out) decodes like ours, and a
    duplicate in it is found all the same."""
    env = sample()
    data = spelling(encode_envelope(env))
    assert data != encode_envelope(env)
    assert decode_envelope(data).to == env.to
    with pytest.raises(Malformed, match="names 'to' twice"):
        decode_envelope(twice(data, "to", b'"kb"'))


def test_a_name_spelled_with_an_escape_is_the_same_name() -> None:
    data = encode_envelope(sample())
    with pytest.raises(Malformed, match="names 'to' twice"):
        decode_envelope(b'{"\\u0074o":"kb",' + data[1:])


def test_members_named_twice_inside_the_body_are_not_the_envelopes() -> None:
    """The documented limit: the body is read once, by its handler's type."""
    env = msgspec.structs.replace(sample(), body=msgspec.Raw(b'{"amount":1,"amount":2}'))
    assert bytes(decode_envelope(encode_envelope(env)).body) == b'{"amount":1,"amount":2}'


def test_duplicate_key_finds_the_first_name_repeated() -> None:
    assert duplicate_key(b'{"a":1,"b":2}') is None
    assert duplicate_key(b'{"a":1,"b":2,"a":3}') == "a"
    assert duplicate_key(b'{ "a" : 1 , "b":{"c":1,"c":2} }') is None
    assert duplicate_key(b'{"\xc3\xa9":1,"\xc3\xa9":2}') == "\u00e9"
    with pytest.raises(Malformed):
        duplicate_key(b"[1, 2]")


async def test_the_verifier_refuses_it_under_a_valid_signature(pki, gateway: KeyPair) -> None:
    verifier = Verifier(
        pki.trust(), Subjects("mesh"), max_payload_bytes=1 << 20, max_age_s=110, clock_skew_s=5
    )
    env = sample()
    data = twice(encode_envelope(env), "to", b'"kb"')
    headers = {**Signer(gateway).headers(data), MSG_ID_HEADER: env.id}
    with pytest.raises(Malformed, match="names 'to' twice") as refused:
        await verifier.verify(TASK, data, headers, stored_at=time.time())
    assert refused.value.reason == "malformed"
