"""subjects/README.md's worked example is a correct test vector for other languages: its
signature, its caller token and its delegation chain, which jetmesh's own verification
accepts (and refuses once any character of the link changes). Its lists are the code's:
the refusal reasons, the fields of a refusal, and what an ingress role may publish and
subscribe to on servers that enforce a policy."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
import time
import tomllib
from pathlib import Path

import msgspec
import pytest

from jetmesh import (
    BadDelegation,
    FanOutExceeded,
    ForgedReply,
    InvalidToken,
    Oversized,
    PlanLimitExceeded,
    RejectedMessage,
)
from jetmesh import events as ev
from jetmesh.addresses import Subjects
from jetmesh.bus.tracing import trace_id_of
from jetmesh.calls import PendingCalls
from jetmesh.dead_letters import DEAD_LETTER_FAILED, MAX_MESSAGE_ID, UNVERIFIED_WORKFLOW
from jetmesh.envelope import Envelope, decode_body, decode_envelope, encode, encode_envelope, new_id
from jetmesh.event_log import LoggedEvent, build_tree
from jetmesh.events import Event
from jetmesh.identity.certificates import Certificate, issue_certificate
from jetmesh.identity.delegation import digest, mint_link
from jetmesh.identity.keys import KeyPair, b64d
from jetmesh.identity.revocation import Revocation
from jetmesh.identity.signing import Signer
from jetmesh.identity.tokens import mint_token, token_key_id, verify_token
from jetmesh.identity.trust import TrustStore
from jetmesh.identity.verifier import MAX_HEADER_BYTES, Verifier
from jetmesh.policy import Policy, parse_policy, role_permissions
from jetmesh.replay.history import history_of
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
    level = len(title) - len(title.lstrip("#"))
    start = text.index(f"\n{title}\n")
    after = re.compile(rf"^#{{1,{level}}} ", re.MULTILINE)
    end = after.search(text, start + len(title) + 2)
    return text[start : end.start() if end else len(text)]


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


# -- replies, history and the accepted event, as the README gives them ------------------

ACME = KeyPair("acme-ingest", bytes(range(1, 33)))
TRIAGE = KeyPair("triage", bytes(range(2, 34)))
KB = KeyPair("kb", bytes(range(3, 35)))
ROOT = KeyPair("root", bytes(range(32)))
REPLY_TO = "mesh.agent.acme-ingest.reply.web-1"


class Registry:
    """A ``MESH_KEYS`` bucket in memory: certificates by key id, revocations by key id."""

    def __init__(self, *, issued: float, ttl_s: float = 3600.0) -> None:
        self.certs = {
            k.kid: issue_certificate(
                ROOT,
                k,
                publish=["mesh.agent.*.task", "mesh.agent.*.reply.*", "mesh.event.>"],
                subscribe=[],
                ingress=k is ACME,
                ttl_s=ttl_s,
                now=issued,
            )
            for k in (ACME, TRIAGE, KB)
        }
        self.revoked: dict[str, Revocation] = {}

    async def lookup(self, kid: str) -> str | None:
        return self.certs.get(kid)

    async def revocation(self, kid: str) -> Revocation | None:
        return self.revoked.get(kid)

    def verifier(self) -> Verifier:
        """A fresh receiver with the README's defaults (nothing cached, nothing seen)."""
        s = MeshSettings(subject_prefix="mesh")
        trust = TrustStore(
            {ROOT.kid: ROOT.public_key},
            self.lookup,
            leeway_s=s.clock_skew_s,
            revocations=self.revocation,
        )
        return Verifier(
            trust,
            Subjects("mesh"),
            max_payload_bytes=s.max_payload_bytes,
            max_age_s=s.max_message_age_s,
            clock_skew_s=s.clock_skew_s,
        )


def _token(at: float) -> str:
    return mint_token(ACME, subject="alice", tenant="acme", scopes=["kb:read"], ttl_s=600, now=at)


def _envelope(
    kind: str, *, sender: KeyPair, caller: str, created: float, **fields: object
) -> Envelope:
    base: dict[str, object] = {
        "id": new_id(),
        "kind": kind,
        "workflow": "01KB0Y1XR1J8ZQ3V6W9T2M5P7D",
        "sender": sender.owner,
        "to": "acme-ingest",
        "created": created,
        "caller": caller,
        "step": "triage",
        "parent": "01KB0Y1XR1J8ZQ3V6W9T2M5P7D",
        "body": msgspec.Raw(b'{"text":"ok"}'),
    }
    base.update(fields)
    return Envelope(**base)  # type: ignore[arg-type]


def _sealed(env: Envelope, key: KeyPair, **extra: str) -> tuple[bytes, dict[str, str]]:
    data = encode_envelope(env)
    return data, {**Signer(key).headers(data), "Nats-Msg-Id": env.id, **extra}


def _reply(
    caller: str, *, kind: str = "reply", created: float | None = None
) -> tuple[bytes, dict[str, str]]:
    now = time.time() if created is None else created
    return _sealed(_envelope(kind, sender=TRIAGE, caller=caller, created=now), TRIAGE)


def _envelope_row(field: str) -> str:
    section = _section("### The envelope")
    (row,) = [r for r in section.splitlines() if r.startswith(f"| `{field}` |")]
    return row


async def test_a_reply_needs_the_callers_token_only_an_event_or_error_goes_without() -> None:
    """The envelope table: ``caller`` is required on replies (a callee copies its task's);
    an ``error`` or an ``event`` may carry ``""``. jetmesh's verifier agrees."""
    row = _envelope_row("caller")
    assert "yes on `task` and `reply`" in row
    assert 'a `task` or `reply` whose `caller` is `""` is refused (`invalid-token`)' in row
    registry = Registry(issued=time.time() - 60)
    with pytest.raises(InvalidToken) as refused:
        await registry.verifier().verify(REPLY_TO, *_reply(""), stored_at=None)
    assert refused.value.reason == "invalid-token"
    error = await registry.verifier().verify(REPLY_TO, *_reply("", kind="error"), stored_at=None)
    assert error.caller is None
    answered = await registry.verifier().verify(
        REPLY_TO, *_reply(_token(time.time())), stored_at=None
    )
    assert answered.caller is not None
    assert answered.caller.subject == "alice"


async def test_a_reply_on_core_nats_is_judged_by_the_receivers_clock_and_seen_set() -> None:
    """110 + 5 s old at most by the receiver's clock, and an id seen again is a replay."""
    section = _section("#### Freshness on core NATS")
    s = MeshSettings()
    assert (s.max_message_age_s, s.clock_skew_s) == (110.0, 5.0)
    assert "110 + 5 s" in section
    assert "120 s (110 + 2 × 5" in section  # noqa: RUF001
    registry = Registry(issued=time.time() - 600)
    token = _token(time.time())
    fresh = _reply(token, created=time.time() - 105)
    receiver = registry.verifier()
    await receiver.verify(REPLY_TO, *fresh, stored_at=None)
    with pytest.raises(RejectedMessage) as again:
        await receiver.verify(REPLY_TO, *fresh, stored_at=None)
    assert again.value.reason == "replayed"
    with pytest.raises(RejectedMessage) as old:
        await receiver.verify(REPLY_TO, *_reply(token, created=time.time() - 125), stored_at=None)
    assert old.value.reason == "stale"
    with pytest.raises(RejectedMessage) as ahead:
        await receiver.verify(REPLY_TO, *_reply(token, created=time.time() + 30), stored_at=None)
    assert ahead.value.reason == "stale"


def test_a_reply_is_matched_by_parent_workflow_step_and_signer() -> None:
    """Step 6: the reply to a task names it as ``parent``, in its ``workflow`` and ``step``,
    signed by its ``to``; otherwise ``forged-reply`` and the call keeps waiting."""
    section = _section("## Publishing a task")
    for said in ("its `parent` is your", "its `workflow` your task's", "its `step` your task's"):
        assert said in section
    assert "(`forged-reply`) and you keep waiting" in section

    async def run() -> None:
        task = _envelope("task", sender=ACME, caller="t", created=0.0, to="triage", parent=None)
        calls = PendingCalls()
        future = calls.expect(task)
        answer = _envelope(
            "reply", sender=TRIAGE, caller="t", created=0.0, parent=task.id, step=task.step
        )
        with pytest.raises(ForgedReply):
            calls.resolve(answer, "kb")  # another role's key
        for wrong in ({"step": "triage/kb.1"}, {"workflow": "01KB0Y1XR1J8ZQ3V6W9T2M5P7E"}):
            with pytest.raises(ForgedReply):
                calls.resolve(msgspec.structs.replace(answer, **wrong), "triage")
        assert not future.done(), "the call keeps waiting for its real reply"
        late = msgspec.structs.replace(answer, parent=new_id())
        assert not calls.resolve(late, "triage"), "a reply to no waiting call is dropped"
        assert calls.resolve(answer, "triage")
        assert (await future).id == answer.id

    asyncio.run(run())


async def test_the_headers_limit_sums_names_and_values() -> None:
    registry = Registry(issued=time.time() - 60)
    data, headers = _reply(_token(time.time()))
    used = sum(len(k) + len(v) for k, v in headers.items())
    pad = "X-Pad"
    exact = {**headers, pad: "x" * (MAX_HEADER_BYTES - used - len(pad))}
    assert sum(len(k) + len(v) for k, v in exact.items()) == MAX_HEADER_BYTES == 8192
    await registry.verifier().verify(REPLY_TO, data, exact, stored_at=None)
    over = {**exact, pad: exact[pad] + "x"}
    with pytest.raises(Oversized):
        await registry.verifier().verify(REPLY_TO, data, over, stored_at=None)
    assert "the sum over every\nheader received of the length of its name plus the length" in (
        _section("### Checks every receiver makes")
    )


async def test_history_is_judged_at_its_storage_time() -> None:
    """An event stored two hours ago, signed with a certificate that has expired since and
    a key revoked since: accepted as history (at ``Nats-Time-Stamp``), refused as a message
    delivered now would be; one stored after the revocation is refused as history too."""
    stored = time.time() - 7200
    registry = Registry(issued=stored - 60, ttl_s=3600)
    event = _envelope(
        "event",
        sender=TRIAGE,
        caller=_token(stored - 1),
        created=stored - 1,
        to="events",
        body=msgspec.Raw(encode(Event(kind="completed", agent="triage", at=stored - 1))),
    )
    subject = f"mesh.event.{event.workflow}.completed"
    data, headers = _sealed(event, TRIAGE)
    history = await registry.verifier().verify(subject, data, headers, stored_at=stored, audit=True)
    assert history.caller is not None
    assert history.caller.subject == "alice"
    with pytest.raises(RejectedMessage) as now:  # judged now: the certificate has expired
        await registry.verifier().verify(subject, data, headers, stored_at=stored)
    assert now.value.reason == "expired-key"

    registry.revoked[TRIAGE.kid] = Revocation(kid=TRIAGE.kid, at=stored + 10, by="admin")
    await registry.verifier().verify(subject, data, headers, stored_at=stored, audit=True)
    with pytest.raises(RejectedMessage) as after:
        await registry.verifier().verify(subject, data, headers, stored_at=stored + 10, audit=True)
    assert after.value.reason == "revoked-key"
    fresh = Registry(issued=time.time() - 60)
    fresh.revoked[TRIAGE.kid] = Revocation(kid=TRIAGE.kid, at=time.time() + 3600, by="admin")
    with pytest.raises(RejectedMessage) as live:  # delivered now: any record refuses
        await fresh.verifier().verify(REPLY_TO, *_reply(_token(time.time())), stored_at=None)
    assert live.value.reason == "revoked-key"
    section = _section("### Verifying events as history")
    assert "`Nats-Time-Stamp`" in section
    assert "a revocation refuses only the events stored at or after its `at`" in section


async def test_a_certificate_not_yet_valid_is_refused_now_but_vouches_for_history() -> None:
    """``nbf`` (with 5 s of leeway) is checked for a message delivered now, not for history."""
    later = Registry(issued=time.time() + 60)  # issued (nbf) a minute from now
    with pytest.raises(RejectedMessage) as early:
        await later.verifier().verify(REPLY_TO, *_reply(_token(time.time())), stored_at=None)
    assert early.value.reason == "expired-key"
    table = _section("### Checks every receiver makes")
    assert "`nbf` (`iat` when it has no `nbf`) − 5 s ≤ `t`, else `expired-key`" in table  # noqa: RUF001
    assert "`exp` + 5 s ≥ `t` only" in table


def test_without_an_accepted_event_the_first_task_has_no_entry_and_no_input() -> None:
    """The README's `accepted` table is what jetmesh's ingress writes, and what is lost
    without it is lost: the tree's entry, and the first task's input for replay."""
    table = _section("### Starting a workflow: the `accepted` event")
    fields = re.findall(r"^\| `([a-z_]+)` \|", table, re.MULTILINE)
    assert set(fields) <= set(Event.__struct_fields__)
    assert set(fields) == {"kind", "agent", "at", "target", "step", "type", "caller", "body"}
    task_id = "01KB0Y1XR1J8ZQ3V6W9T2M5P7D"
    accepted = Event(
        kind=ev.ACCEPTED,
        agent="acme-ingest",
        at=1.0,
        target="triage",
        step="triage",
        type="support.Ticket/1",
        caller="alice",
        body=ev.EventPayload(type="support.Ticket/1", value=msgspec.Raw(b'{"id":"T-1"}')),
    )
    started = Event(kind=ev.STARTED, agent="triage", at=2.0, task=task_id, step="triage")
    done = Event(kind=ev.COMPLETED, agent="triage", at=3.0, task=task_id, step="triage")

    def logged(*events: Event) -> list[LoggedEvent]:
        return [LoggedEvent(e, task_id, e.agent, True, caller="alice") for e in events]

    (entry,) = build_tree(logged(accepted, started, done))
    assert (entry.task, entry.agent, entry.status) == (None, "acme-ingest", "accepted")
    assert [c.task for c in entry.children] == [task_id]
    (first,) = history_of(task_id, logged(accepted, started, done)).tasks()
    assert first.input is not None
    assert bytes(first.input.body or b"") == b'{"id":"T-1"}'

    (alone,) = build_tree(logged(started, done))
    assert (alone.task, alone.agent, alone.status) == (task_id, "triage", "completed")
    (first,) = history_of(task_id, logged(started, done)).tasks()
    assert first.input is None
    assert "(`input not recorded`" in table
