"""subjects/README.md's worked example is a correct test vector for other languages: its
signature, its caller token and its delegation chain, which jetmesh's own verification
accepts (and refuses once any character of the link changes). Its lists are the code's:
the refusal reasons, the fields of a refusal, and what an ingress role may publish and
subscribe to on servers that enforce a policy."""

from __future__ import annotations

import base64
import hashlib
import re
import tomllib
from pathlib import Path

import msgspec
import pytest

from jetmesh import BadDelegation, FanOutExceeded, PlanLimitExceeded, RejectedMessage
from jetmesh import events as ev
from jetmesh.addresses import Subjects
from jetmesh.bus.tracing import trace_id_of
from jetmesh.dead_letters import DEAD_LETTER_FAILED, MAX_MESSAGE_ID, UNVERIFIED_WORKFLOW
from jetmesh.envelope import decode_body, decode_envelope
from jetmesh.events import Event
from jetmesh.identity.certificates import Certificate, issue_certificate
from jetmesh.identity.delegation import digest, mint_link
from jetmesh.identity.keys import KeyPair, b64d
from jetmesh.identity.signing import Signer
from jetmesh.identity.tokens import token_key_id, verify_token
from jetmesh.identity.trust import TrustStore
from jetmesh.policy import Policy, parse_policy, role_permissions
from jetmesh.settings import MeshSettings
from services.support.wire import Ticket
from subjects.catalogue import mesh_type
from subjects.identity import CallerTokenClaims

README = Path(__file__).resolve().parents[2] / "subjects" / "README.md"


@pytest.fixture(scope="module")
def vector() -> dict[str, str]:
    text = README.read_text(encoding="utf-8")
    fields = dict(
        re.findall(
            r"^(seed \(base64url\)|Mesh-Key|Mesh-Sig|bytes|traceparent|subject"
            r"|link 0 header|link 0 claims): (.+)$",
            text,
            re.MULTILINE,
        )
    )
    assert len(fields) == 8, f"README example lines not found: {sorted(fields)}"
    return fields


@pytest.fixture(scope="module")
def key(vector: dict[str, str]) -> KeyPair:
    return KeyPair("acme-ingest", b64d(vector["seed (base64url)"]))


def test_signature_and_key_id(vector: dict[str, str], key: KeyPair) -> None:
    headers = Signer(key).headers(vector["bytes"].encode())
    assert headers["Mesh-Key"] == vector["Mesh-Key"]
    assert headers["Mesh-Sig"] == vector["Mesh-Sig"]
    assert headers["Mesh-Sig-Scheme"] == "ed25519"


def test_envelope_is_addressed_to_the_subject(vector: dict[str, str]) -> None:
    env = decode_envelope(vector["bytes"].encode())
    assert env.kind == "task"
    assert env.sender == "acme-ingest"
    assert Subjects().task(env.to) == vector["subject"]
    assert env.type == mesh_type(Ticket)
    assert decode_body(env, Ticket).customer == "alice"
    assert vector["traceparent"].startswith(f"00-{trace_id_of(env.workflow)}-")


def test_caller_token_is_valid_and_matches_its_schema(vector: dict[str, str], key: KeyPair) -> None:
    env = decode_envelope(vector["bytes"].encode())
    assert token_key_id(env.caller) == key.kid
    ingress = Certificate(
        name=key.owner,
        kid=key.kid,
        public_key=key.public_key,
        issuer="root",
        publish=(),
        subscribe=(),
        scopes=frozenset(),
        ingress=True,
        issued=0,
        expires=2e9,
        token="",
    )
    claims = msgspec.json.decode(b64d(env.caller.split(".")[1]), type=CallerTokenClaims)
    caller = verify_token(env.caller, ingress, at=claims.iat + 1)
    assert (caller.subject, caller.tenant) == (claims.sub, claims.tenant)


def _caller_claims(token: str) -> CallerTokenClaims:
    return msgspec.json.decode(b64d(token.split(".")[1]), type=CallerTokenClaims)


def test_chain_is_the_link_an_ingress_mints(vector: dict[str, str], key: KeyPair) -> None:
    """The example's chain is exactly what jetmesh's ingress makes for this task (Ed25519 is
    deterministic, so this is also how the example was produced), and the decoded header and
    claims shown next to it are its parts."""
    env = decode_envelope(vector["bytes"].encode())
    token = _caller_claims(env.caller)
    assert env.chain == (
        mint_link(
            key,
            to=env.to,
            workflow=env.workflow,
            step=env.step,
            scopes=token.scopes,
            expires=token.exp,
            prev=digest(env.caller),
            now=token.iat,
        ),
    )
    header, claims, _ = env.chain[0].split(".")
    assert b64d(header).decode() == vector["link 0 header"]
    assert b64d(claims).decode() == vector["link 0 claims"]
    prev = msgspec.json.decode(vector["link 0 claims"])["prev"]
    token_digest = hashlib.sha256(env.caller.encode("ascii")).digest()
    assert prev == base64.urlsafe_b64encode(token_digest).decode().rstrip("=")
    assert len(prev) == 43


def _trust(key: KeyPair) -> TrustStore:
    """A trust store whose registry holds the example key's certificate, an ingress."""
    root = KeyPair("root", bytes(range(32)))
    cert = issue_certificate(
        root,
        key,
        publish=["mesh.agent.*.task"],
        subscribe=[],
        ingress=True,
        ttl_s=4e9 - 1764000000,
        now=1764000000 - 60,
    )

    async def lookup(kid: str) -> str | None:
        return cert if kid == key.kid else None

    return TrustStore({root.kid: root.public_key}, lookup)


async def test_chain_verifies(vector: dict[str, str], key: KeyPair) -> None:
    env = decode_envelope(vector["bytes"].encode())
    trust = _trust(key)
    signer, _ = await trust.certificate(key.kid, at=env.created)
    caller = await trust.caller(env.caller, at=env.created)
    delegation = await trust.delegation(env, caller, signer=signer, at=env.created)
    assert delegation.path == ("acme-ingest", "triage")
    assert delegation.scopes == caller.scopes == frozenset({"kb:read"})
    assert delegation.expires == caller.expires
    link, ingress = await trust.link(env.chain[0], at=env.created)  # its own signature too
    assert ingress
    assert link.prev == digest(env.caller)


async def test_the_task_without_its_chain_is_refused(vector: dict[str, str], key: KeyPair) -> None:
    env = msgspec.structs.replace(decode_envelope(vector["bytes"].encode()), chain=())
    trust = _trust(key)
    signer, _ = await trust.certificate(key.kid, at=env.created)
    caller = await trust.caller(env.caller, at=env.created)
    with pytest.raises(BadDelegation, match="without a delegation chain"):
        await trust.delegation(env, caller, signer=signer, at=env.created)


async def test_chain_is_refused_when_a_character_of_the_link_changes(
    vector: dict[str, str], key: KeyPair
) -> None:
    """Every character of the link counts: changed anywhere (header, claims, signature, a
    dot), the link is refused when verified on its own signature, as every hop after the
    first verifies it."""
    env = decode_envelope(vector["bytes"].encode())
    trust = _trust(key)
    text = env.chain[0]
    for i, c in enumerate(text):
        changed = text[:i] + ("B" if c == "A" else "A") + text[i + 1 :]
        with pytest.raises(RejectedMessage):
            await trust.link(changed, at=env.created)
    await trust.link(text, at=env.created)  # the unchanged one still verifies


def test_envelope_schema_points_at_the_readme_for_the_chain() -> None:
    schema = msgspec.json.decode((README.parent / "schemas" / "mesh.Envelope.v1.json").read_bytes())
    (envelope,) = schema["$defs"].values()
    chain = envelope["properties"]["chain"]["description"]
    assert "subjects/README.md" in chain
    assert ":mod:" not in chain
    assert "### The delegation chain" in README.read_text(encoding="utf-8")


# -- the route on enforced servers, refusals, files --------------------------------------


def _section(title: str) -> str:
    """The text of the README's section ``title`` (to the next heading of its level)."""
    text = README.read_text(encoding="utf-8")
    level = "#" * (len(title) - len(title.lstrip("#")))
    start = text.index(f"\n{title}\n")
    end = text.find(f"\n{level} ", start + len(title) + 2)
    return text[start : end if end >= 0 else len(text)]


def _rejected_codes() -> set[str]:
    """The code of every refusal a receiver can audit as ``rejected``: every
    ``RejectedMessage``, except the base class's and those only a sender raises on its own
    call (``call-refused`` events: ``plan-limit-exceeded`` is their base, ``fan-out-exceeded``
    counts calls made, not links received)."""
    found: set[str] = set()
    todo: list[type[RejectedMessage]] = [RejectedMessage]
    while todo:
        cls = todo.pop()
        found.add(cls.code)
        todo += cls.__subclasses__()
    return found - {RejectedMessage.code, PlanLimitExceeded.code, FanOutExceeded.code}


def test_the_reasons_listed_are_the_codes_receivers_refuse_with() -> None:
    section = _section("## Matching a refusal to your message")
    listed = set(re.findall(r"^\| `([a-z-]+)` \|", section, re.MULTILINE))
    fields = {"reason", "agent", "message", "seq", "task", "detail"}
    assert listed - fields == _rejected_codes()


def test_the_refusal_fields_are_event_fields() -> None:
    section = _section("## Matching a refusal to your message")
    table = section.split("| Field | Value |")[1].split("\n\n")[0]
    named = set(re.findall(r"^\| `([a-z_]+)` \|", table, re.MULTILINE))
    assert named == {"reason", "agent", "message", "seq", "task", "detail"}
    assert named <= set(Event.__struct_fields__)
    assert f"at most {MAX_MESSAGE_ID} characters" in table
    assert f"`{UNVERIFIED_WORKFLOW}`" in section
    assert f"mesh.event.{UNVERIFIED_WORKFLOW}.{ev.REJECTED}" in section
    assert f"`{DEAD_LETTER_FAILED}`" in section


def _readme_policy() -> Policy:
    section = _section("## Publishing on servers that enforce a policy")
    toml = section.split("```toml\n")[1].split("```")[0]
    data = tomllib.loads(toml)
    (name,) = data["roles"]
    for callee in data["roles"][name]["calls"]:
        data["roles"][callee] = {}
    return parse_policy(data)


def test_the_policy_example_is_an_ingress_role() -> None:
    grant = _readme_policy().role("acme-ingest")
    assert grant.ingress
    assert grant.calls == frozenset({"triage"})


def test_the_permissions_listed_are_what_the_servers_allow_an_ingress() -> None:
    section = _section("## Publishing on servers that enforce a policy")
    block = section.split("What the role may do, all of it")[1].split("```\n")[1]
    listed = re.findall(r"^(publish|subscribe) +(\S+)$", block, re.MULTILINE)
    settings = MeshSettings(  # the names the README shows, whatever the environment says
        subject_prefix="mesh",
        events_stream="MESH_EVENTS",
        registry_bucket="MESH_KEYS",
    )
    derived = role_permissions(_readme_policy(), "acme-ingest", settings)

    def rendered(kind: str) -> set[str]:
        return {
            subject.replace("<name>", "acme-ingest").replace("<callee>", "triage")
            for k, subject in listed
            if k == kind
        }

    assert rendered("publish") == set(derived.publish)
    assert rendered("subscribe") == set(derived.subscribe)
    assert derived.inbox_prefix == "_INBOX.acme-ingest"
    assert f"`{derived.inbox_prefix}`" in section
    assert "$JS.API.INFO" not in derived.publish
