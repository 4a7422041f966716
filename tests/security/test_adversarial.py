"""The adversarial suite of the identity checks: one table of attacks on a real replica.

Each case builds an attack with the library's own pieces (envelopes, signers, certificates,
tokens) or by hand, publishes it with a bare connection onto the task subject of a replica
of ``echo`` (whose handler records every run: the side effect), and asserts:

(a) the dead letter carries the specific reason, the ``code`` of a ``RejectedMessage``
    subclass;
(b) the handler did not run;
(c) exactly one ``rejected`` audit event with that reason (in the envelope's workflow when
    the envelope is authentic and readable, else in ``_unverified``) and one dead letter;
(d) the replica still serves a valid task afterwards.

One mesh and one replica serve every case (a module fixture); counts are taken before and
after each case. The mesh runs with test-sized windows (``max_message_age_s=1``,
``clock_skew_s=0.5``, ``duplicate_window_s=2``) so that a replay after the de-duplication
window takes two seconds, and ``max_payload_bytes=4096``.

Covered elsewhere: the exact replay inside the window (same ``Nats-Msg-Id``) is dropped by
the stream itself, stored once and never delivered twice, so there is nothing to refuse or
audit (``tests/runtime/test_bad_input.py::test_replay_with_same_msg_id_is_...``); a
certificate from another root (``untrusted-certificate``), unsigned messages and schema
violations are in the same module.

Delegation chains are built hop by hop with registered agent keys (``relay``, ``hand``):
the ingress hands the task to ``relay``, ``relay`` to ``hand``, ``hand`` to ``echo``; each
attack changes one link. Not covered here: an agent publishing outside its subjects *at the
server* (``tests/policy/test_server_enforcement.py``: the generated users).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import jwt
import msgspec
import pytest

from jetmesh import MeshSettings
from jetmesh.envelope import Envelope, decode_body, encode_envelope, new_id
from jetmesh.identity.certificates import default_permissions, issue_certificate
from jetmesh.identity.delegation import LinkSigner, digest, mint_link
from jetmesh.identity.keys import KeyPair, b64d, b64e
from jetmesh.identity.revocation import revoke_key
from jetmesh.identity.signing import KEY_HEADER, SIGNATURE_HEADER, Signer
from jetmesh.identity.tokens import mint_token
from jetmesh.identity.trust import REVOCATION_TTL_S
from jetmesh.identity.verifier import MSG_ID_HEADER
from tests.conftest import isolated_settings
from tests.harness.mesh import WAIT_S, Echo, EchoAgent, Mesh, Sealed, rejected, signed_by

pytestmark = pytest.mark.integration

MAX_AGE_S = 1.0
SKEW_S = 0.5
WINDOW_S = 2.0
MAX_PAYLOAD = 4096


@dataclass
class Arena:
    mesh: Mesh
    echo: EchoAgent
    token: str
    _hops: tuple[KeyPair, KeyPair] | None = None

    @property
    def subject(self) -> str:
        return self.mesh.subjects.task("echo")

    def seal(self, text: str, body: object = None, **changes: object) -> Sealed:
        return self.mesh.seal(Echo(text) if body is None else body, token=self.token, **changes)

    def reseal(self, sealed: Sealed, **changes: object) -> Sealed:
        """``sealed``'s envelope with ``changes`` (any field, unchecked), signed by the ingress."""
        client = self.mesh._client
        assert client is not None
        envelope = msgspec.structs.replace(sealed.envelope, **changes)
        data, headers = client.seal(envelope)
        return Sealed(envelope, data, headers)

    async def relayed(
        self,
        text: str,
        *,
        scopes: tuple[tuple[str, ...], ...] | None = None,
        expires: tuple[float, ...] | None = None,
        tamper: Callable[[list[str]], list[str]] | None = None,
        **changes: object,
    ) -> Attack:
        """A task for ``echo`` that went ingress -> relay -> hand -> echo, each link signed by
        its hop (``scopes``/``expires`` per link, default the token's), the envelope sent
        and signed by ``hand``; ``tamper`` rewrites the list of links, ``changes`` the
        envelope."""
        client = self.mesh._client
        assert client is not None
        relay, hand = await self.hop_keys()
        base = self.seal(text).envelope
        claims = jwt.decode(base.caller, options={"verify_signature": False})
        hops = [
            (None, "relay", "plan"),
            (relay, "hand", "plan/hand.1"),
            (hand, "echo", "plan/hand.1/echo.1"),
        ]
        links: list[str] = []
        after = base.caller
        for n, (key, to, step) in enumerate(hops):
            fields = {
                "to": to,
                "workflow": base.workflow,
                "step": step,
                "scopes": (scopes or (tuple(claims["scopes"]),) * 3)[n],
                "expires": (expires or (float(claims["exp"]),) * 3)[n],
                "prev": digest(after),
            }
            if key is None:
                fields.pop("prev")
                link = client.delegate(after, **fields)  # type: ignore[arg-type]
            else:
                link = mint_link(key, **fields)  # type: ignore[arg-type]
            links.append(link)
            after = link
        envelope = msgspec.structs.replace(
            base,
            sender="hand",
            step=hops[-1][2],
            reply_to=self.mesh.subjects.reply("hand", "h1"),
            chain=tuple(tamper(links) if tamper else links),
            **changes,
        )
        data = encode_envelope(envelope)
        headers = {MSG_ID_HEADER: envelope.id, **Signer(hand).headers(data)}
        return Attack(data, headers, Sealed(envelope, data, headers))

    async def hop_keys(self) -> tuple[KeyPair, KeyPair]:
        """The registered keys of ``relay`` and ``hand`` (made once)."""
        if self._hops is None:
            self._hops = (await self.agent_key("relay"), await self.agent_key("hand"))
        return self._hops

    @property
    def ingress_key(self) -> KeyPair:
        client = self.mesh._client
        assert client is not None
        return client.identity.key

    async def agent_key(
        self, name: str, publish: list[str] | None = None, *, ingress: bool = False
    ) -> KeyPair:
        """A registered agent ``name`` (a certificate from the mesh's root)."""
        key = KeyPair.generate(name)
        default_publish, subscribe = default_permissions(self.mesh.subjects, name)
        certificate = issue_certificate(
            self.mesh.root,
            key,
            publish=default_publish if publish is None else publish,
            subscribe=subscribe,
            ingress=ingress,
            ttl_s=3600,
        )
        await self.mesh.register_certificate(key.kid, certificate)
        return key


@dataclass
class Attack:
    data: bytes
    headers: dict[str, str]
    readable: Sealed | None = None
    """The envelope the receiver can read and trust to name the audit's workflow."""


@pytest.fixture(scope="module")
async def arena(
    nats_server: object, redis_server: object, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Arena]:
    settings: MeshSettings = isolated_settings(
        nats_server.url,  # type: ignore[attr-defined]
        redis_server.url,  # type: ignore[attr-defined]
        Path(tmp_path_factory.mktemp("adversarial")),
    )
    mesh = Mesh(settings)
    mesh.configure(
        max_message_age_s=MAX_AGE_S,
        clock_skew_s=SKEW_S,
        duplicate_window_s=WINDOW_S,
        max_payload_bytes=MAX_PAYLOAD,
    )
    echo = EchoAgent("echo")
    try:
        await mesh.start_replicas(echo.agent)
        await mesh.ingress()
        yield Arena(mesh, echo, mesh.token())
    finally:
        await mesh.aclose()


def flip(text: str, index: int) -> str:
    """``text`` with one bit of its character at ``index`` flipped (staying printable)."""
    return text[:index] + chr(ord(text[index]) ^ 0x01) + text[index + 1 :]


def jwt_by_hand(header: dict[str, object], claims: dict[str, object], key: bytes | None) -> str:
    def part(value: dict[str, object]) -> str:
        return b64e(json.dumps(value, separators=(",", ":")).encode())

    signing_input = f"{part(header)}.{part(claims)}"
    signature = b"" if key is None else hmac.new(key, signing_input.encode(), "sha256").digest()
    return f"{signing_input}.{b64e(signature)}"


def claims_now(issuer: str) -> dict[str, object]:
    now = int(time.time())
    return {
        "iss": issuer,
        "sub": "mallory",
        "tenant": "acme",
        "scopes": ["refund:write"],
        "iat": now,
        "nbf": now,
        "exp": now + 600,
        "jti": "forged",
    }


# -- the attacks ------------------------------------------------------------------------------


async def forged_signature(a: Arena, text: str) -> Attack:
    sealed = a.seal(text)
    forged = Signer(KeyPair.generate("cli")).headers(sealed.data)
    return Attack(sealed.data, {**sealed.headers, **forged, KEY_HEADER: a.ingress_key.kid})


async def flipped_bit_in_body(a: Arena, text: str) -> Attack:
    sealed = a.seal(text)
    data = bytearray(sealed.data)
    data[sealed.data.index(text.encode())] ^= 0x01
    return Attack(bytes(data), sealed.headers)


async def flipped_bit_in_signature(a: Arena, text: str) -> Attack:
    sealed = a.seal(text)
    signature = bytearray(b64d(sealed.headers[SIGNATURE_HEADER]))
    signature[5] ^= 0x01
    return Attack(sealed.data, {**sealed.headers, SIGNATURE_HEADER: b64e(bytes(signature))})


async def flipped_bit_in_key_id(a: Arena, text: str) -> Attack:
    sealed = a.seal(text)
    kid = sealed.headers[KEY_HEADER]
    return Attack(sealed.data, {**sealed.headers, KEY_HEADER: flip(kid, len(kid) - 1)})


async def flipped_bit_in_msg_id(a: Arena, text: str) -> Attack:
    sealed = a.seal(text)
    msg_id = sealed.headers[MSG_ID_HEADER]
    return Attack(sealed.data, {**sealed.headers, MSG_ID_HEADER: flip(msg_id, 3)}, sealed)


async def unknown_key_id(a: Arena, text: str) -> Attack:
    sealed = a.seal(text, sender="ghost")
    return Attack(sealed.data, signed_by(KeyPair.generate("ghost"), sealed))


async def expired_certificate(a: Arena, text: str) -> Attack:
    relic = KeyPair.generate("relic")
    publish, subscribe = default_permissions(a.mesh.subjects, "relic")
    certificate = issue_certificate(
        a.mesh.root, relic, publish=publish, subscribe=subscribe, ttl_s=60, now=time.time() - 3600
    )
    await a.mesh.register_certificate(relic.kid, certificate)
    sealed = a.seal(text, sender="relic")
    return Attack(sealed.data, signed_by(relic, sealed))


async def revoke(a: Arena, kid: str) -> None:
    """Revoke ``kid`` and wait until every process must have learnt it."""
    await revoke_key((await a.mesh.ingress()).registry, kid, reason="test", by="adversarial")
    await asyncio.sleep(REVOCATION_TTL_S + 0.2)


async def revoked_key_id(a: Arena, text: str) -> Attack:
    outcast = await a.agent_key("outcast")
    await revoke(a, outcast.kid)
    sealed = a.seal(text, sender="outcast")
    return Attack(sealed.data, signed_by(outcast, sealed))


async def revoked_key_id_cached(a: Arena, text: str) -> Attack:
    """The replica verified (and cached) the certificate before the revocation."""
    exile = await a.agent_key("exile")
    reply_to = a.mesh.subjects.reply("exile", "x1")
    first = a.seal("first-" + text, sender="exile", reply_to=reply_to, step="x/echo.1")
    first = a.reseal(first, chain=via(a, first.envelope, exile))
    attacker = await a.mesh.attacker()
    await attacker.publish(a.subject, first.data, signed_by(exile, first))
    deadline = time.monotonic() + WAIT_S
    while "first-" + text not in a.echo.seen:  # served: the certificate is cached
        assert time.monotonic() < deadline, "the valid message was not served"
        await asyncio.sleep(0.02)
    await revoke(a, exile.kid)
    sealed = a.seal(text, sender="exile", reply_to=reply_to, step="x/echo.1")
    sealed = a.reseal(sealed, chain=via(a, sealed.envelope, exile))
    return Attack(sealed.data, signed_by(exile, sealed))


def via(a: Arena, envelope: Envelope, agent: KeyPair) -> tuple[str, str]:
    """The chain of ``envelope`` (step ``x/<to>.1``) when the ingress handed step ``x`` to
    ``agent``, which called ``envelope.to``."""
    root = a.mesh.root_link(envelope, to=agent.owner, step="x")
    claims = jwt.decode(envelope.caller, options={"verify_signature": False})
    hop = mint_link(
        agent,
        to=envelope.to,
        workflow=envelope.workflow,
        step=envelope.step,
        scopes=claims["scopes"],
        expires=float(claims["exp"]),
        prev=digest(root),
    )
    return root, hop


async def token_of_revoked_ingress(a: Arena, text: str) -> Attack:
    """A token minted by another ingress, used once (verified and cached), then its key
    is revoked; the message itself is signed by a valid ingress."""
    gate = await a.agent_key("gate", ingress=True)
    token = mint_token(gate, subject="alice", tenant="acme", scopes=(), ttl_s=600)
    await answered(a, a.mesh.seal(Echo("first-" + text), token=token))
    await revoke(a, gate.kid)
    sealed = a.seal(text, caller=token)
    return Attack(sealed.data, sealed.headers, sealed)


async def token_alg_none(a: Arena, text: str) -> Attack:
    kid = a.ingress_key.kid
    token = jwt_by_hand({"alg": "none", "typ": "JWT", "kid": kid}, claims_now("cli"), None)
    sealed = a.seal(text, caller=token)
    return Attack(sealed.data, sealed.headers, sealed)


async def token_hs256_with_public_key(a: Arena, text: str) -> Attack:
    key = a.ingress_key
    token = jwt_by_hand(
        {"alg": "HS256", "typ": "JWT", "kid": key.kid}, claims_now("cli"), key.public_key
    )
    sealed = a.seal(text, caller=token)
    return Attack(sealed.data, sealed.headers, sealed)


async def body_swapped(a: Arena, text: str) -> Attack:
    signed = a.seal("harmless")
    swapped = a.seal(text)
    return Attack(swapped.data, signed.headers)


async def replay_inside_window_new_msg_id(a: Arena, text: str) -> Attack:
    sealed = a.seal("first-" + text)
    await answered(a, sealed)
    headers = {**sealed.headers, MSG_ID_HEADER: "again-" + sealed.envelope.id}
    return Attack(sealed.data, headers, sealed)


async def replay_after_window(a: Arena, text: str) -> Attack:
    sealed = a.seal("first-" + text)
    await answered(a, sealed)
    await asyncio.sleep(WINDOW_S + 0.3)  # the stream has forgotten the Nats-Msg-Id
    return Attack(sealed.data, sealed.headers, sealed)


async def expired_token(a: Arena, text: str) -> Attack:
    token = mint_token(
        a.ingress_key, subject="alice", tenant="acme", scopes=(), ttl_s=60, now=time.time() - 3600
    )
    sealed = a.seal(text, caller=token)
    return Attack(sealed.data, sealed.headers, sealed)


async def token_from_the_future(a: Arena, text: str) -> Attack:
    token = mint_token(
        a.ingress_key, subject="alice", tenant="acme", scopes=(), ttl_s=60, now=time.time() + 3600
    )
    sealed = a.seal(text, caller=token)
    return Attack(sealed.data, sealed.headers, sealed)


async def created_beyond_skew_ahead(a: Arena, text: str) -> Attack:
    sealed = a.seal(text, created=time.time() + SKEW_S + 0.25)
    return Attack(sealed.data, sealed.headers, sealed)


async def created_beyond_age_and_skew(a: Arena, text: str) -> Attack:
    sealed = a.seal(text, created=time.time() - MAX_AGE_S - SKEW_S - 0.25)
    return Attack(sealed.data, sealed.headers, sealed)


async def resent_to_another_role(a: Arena, text: str) -> Attack:
    sealed = a.seal(text, to="billing", step="billing")  # valid for billing, sent to echo
    return Attack(sealed.data, sealed.headers, sealed)


async def token_reused_in_another_workflow(a: Arena, text: str) -> Attack:
    used = a.seal("first-" + text)
    await answered(a, used)
    mallory = await a.agent_key("mallory")
    stolen = msgspec.structs.replace(
        used.envelope,
        id=new_id(),  # a new message: the stream keeps the first id for its window
        workflow="other-" + used.envelope.workflow,
        sender="mallory",
        body=msgspec.Raw(msgspec.json.encode(Echo(text))),
        reply_to=a.mesh.subjects.reply("mallory", "m1"),
        created=time.time(),
    )
    data = encode_envelope(stolen)
    headers = {MSG_ID_HEADER: stolen.id, **Signer(mallory).headers(data)}
    return Attack(data, headers, Sealed(stolen, data, headers))


async def token_reused_in_another_tenant(a: Arena, text: str) -> Attack:
    """acme's token, seen in one workflow, put into a workflow started for globex."""
    acme = a.seal("first-" + text)
    await answered(a, acme)
    globex_token = a.mesh.token("bob", tenant="globex")
    globex = a.mesh.seal(Echo(text), token=globex_token)
    assert globex.envelope.caller != acme.envelope.caller
    sealed = a.reseal(globex, caller=acme.envelope.caller)
    return Attack(sealed.data, sealed.headers, sealed)


async def chain_started_by_an_agent(a: Arena, text: str) -> Attack:
    """An agent that saw the token starts a workflow of its own: its own first link."""
    relay, _ = await a.hop_keys()
    sealed = a.seal(text, sender="relay", reply_to=a.mesh.subjects.reply("relay", "r1"))
    claims = jwt.decode(a.token, options={"verify_signature": False})
    link = mint_link(
        relay,
        to="echo",
        workflow=sealed.envelope.workflow,
        step=sealed.envelope.step,
        scopes=claims["scopes"],
        expires=float(claims["exp"]),
        prev=digest(a.token),
    )
    data = encode_envelope(msgspec.structs.replace(sealed.envelope, chain=(link,)))
    headers = {MSG_ID_HEADER: sealed.envelope.id, **Signer(relay).headers(data)}
    envelope = msgspec.structs.replace(sealed.envelope, chain=(link,))
    return Attack(data, headers, Sealed(envelope, data, headers))


async def link_signed_by_another_role_than_it_names(a: Arena, text: str) -> Attack:
    """hand signs (with its own key id) the link that hands the task to itself, naming
    relay as its issuer: a role cannot make a hop look as if another role had made it."""
    _, hand = await a.hop_keys()

    def forge(links: list[str]) -> list[str]:
        def claims(link: str) -> dict[str, object]:
            return dict(jwt.decode(link, options={"verify_signature": False}))

        impostor = LinkSigner(hand)
        relays = impostor.sign(claims(links[1]))  # "iss": "relay", "kid": hand's
        assert claims(relays)["iss"] == "relay"
        last = impostor.sign({**claims(links[2]), "prev": digest(relays)})
        return [links[0], relays, last]

    return await a.relayed(text, tamper=forge)


async def delegated_wider_scopes(a: Arena, text: str) -> Attack:
    return await a.relayed(text, scopes=((), ("refund:write",), ("refund:write",)))


async def delegated_later_expiry(a: Arena, text: str) -> Attack:
    e = float(jwt.decode(a.token, options={"verify_signature": False})["exp"])
    return await a.relayed(text, expires=(e - 60, e, e - 60))


async def chain_hop_removed(a: Arena, text: str) -> Attack:
    return await a.relayed(text, tamper=lambda links: [links[0], links[2]])


async def chain_hops_reordered(a: Arena, text: str) -> Attack:
    return await a.relayed(text, tamper=lambda links: [links[1], links[0], links[2]])


async def chain_hop_spliced_from_another_workflow(a: Arena, text: str) -> Attack:
    other = await a.relayed("other-" + text)
    assert other.readable is not None
    spliced = other.readable.envelope.chain[1]
    return await a.relayed(text, tamper=lambda links: [links[0], spliced, links[2]])


async def outside_its_subjects(a: Arena, text: str) -> Attack:
    p = a.mesh.subjects.prefix
    mallory = await a.agent_key("eventonly", publish=[f"{p}.event.>"])
    sealed = a.seal(text, sender="eventonly")
    return Attack(sealed.data, signed_by(mallory, sealed), sealed)


async def oversized_body(a: Arena, text: str) -> Attack:
    sealed = a.seal(text + "x" * MAX_PAYLOAD)
    return Attack(sealed.data, sealed.headers)


async def oversized_headers(a: Arena, text: str) -> Attack:
    sealed = a.seal(text)
    return Attack(sealed.data, {**sealed.headers, "X-Padding": "p" * 16384})


async def deeply_nested_body(a: Arena, text: str) -> Attack:
    depth = 1300
    body = b'{"text":"%s","extra":%s%s}' % (text.encode(), b"[" * depth, b"]" * depth)
    sealed = a.seal(text, body=msgspec.Raw(body))
    assert len(sealed.data) <= MAX_PAYLOAD
    return Attack(sealed.data, sealed.headers)


async def invalid_utf8_in_body(a: Arena, text: str) -> Attack:
    sealed = a.seal(text, body=msgspec.Raw(b'{"text":"%s\xff\xfe"}' % text.encode()))
    return Attack(sealed.data, sealed.headers, sealed)  # verified, then refused by the replica


async def invalid_utf8_in_envelope(a: Arena, text: str) -> Attack:
    sealed = a.seal(text, type="test.Echo/1#")
    client = a.mesh._client
    assert client is not None
    data = sealed.data.replace(b"test.Echo/1#", b"test.Echo/1\xff")
    assert data != sealed.data
    return Attack(data, client.signer.headers(data))


def injected_workflow(value: str) -> Callable[[Arena, str], Awaitable[Attack]]:
    async def build(a: Arena, text: str) -> Attack:
        sealed = a.reseal(a.seal(text), workflow=value)
        return Attack(sealed.data, sealed.headers)

    return build


def injected_to(value: str) -> Callable[[Arena, str], Awaitable[Attack]]:
    async def build(a: Arena, text: str) -> Attack:
        sealed = a.reseal(a.seal(text), to=value)
        return Attack(sealed.data, sealed.headers, sealed)

    return build


async def answered(a: Arena, sealed: Sealed) -> None:
    """Publish ``sealed`` as it is and wait for its legitimate answer."""
    reply = a.mesh.expect_reply(sealed.envelope)
    attacker = await a.mesh.attacker()
    await attacker.publish(a.subject, sealed.data, sealed.headers)
    envelope = await asyncio.wait_for(reply, WAIT_S)
    assert decode_body(envelope, Echo) == Echo(decode_body(sealed.envelope, Echo).text.upper())


CASES = [
    pytest.param(forged_signature, "bad-signature", id="forged-signature"),
    pytest.param(flipped_bit_in_body, "bad-signature", id="flipped-bit-body"),
    pytest.param(flipped_bit_in_signature, "bad-signature", id="flipped-bit-signature-header"),
    pytest.param(flipped_bit_in_key_id, "unknown-key", id="flipped-bit-key-header"),
    pytest.param(flipped_bit_in_msg_id, "replayed", id="flipped-bit-msg-id-header"),
    pytest.param(unknown_key_id, "unknown-key", id="unknown-key-id"),
    pytest.param(expired_certificate, "expired-key", id="expired-certificate"),
    pytest.param(revoked_key_id, "revoked-key", id="revoked-key-id"),
    pytest.param(revoked_key_id_cached, "revoked-key", id="revoked-key-id-cached-certificate"),
    pytest.param(token_of_revoked_ingress, "revoked-key", id="token-of-revoked-ingress"),
    pytest.param(token_alg_none, "invalid-token", id="token-alg-none"),
    pytest.param(token_hs256_with_public_key, "invalid-token", id="token-hs256-public-key"),
    pytest.param(body_swapped, "bad-signature", id="body-swapped-under-signature"),
    pytest.param(replay_inside_window_new_msg_id, "replayed", id="replay-in-window-new-msg-id"),
    pytest.param(replay_after_window, "stale", id="replay-after-window"),
    pytest.param(expired_token, "expired-token", id="expired-token"),
    pytest.param(token_from_the_future, "expired-token", id="token-from-the-future"),
    pytest.param(created_beyond_skew_ahead, "stale", id="created-beyond-skew-ahead"),
    pytest.param(created_beyond_age_and_skew, "stale", id="created-beyond-age-and-skew"),
    pytest.param(resent_to_another_role, "misaddressed", id="resent-to-another-role"),
    pytest.param(
        token_reused_in_another_workflow, "bad-delegation", id="token-reused-in-another-workflow"
    ),
    pytest.param(
        token_reused_in_another_tenant, "bad-delegation", id="token-reused-in-another-tenant"
    ),
    pytest.param(chain_started_by_an_agent, "bad-delegation", id="chain-started-by-an-agent"),
    pytest.param(
        link_signed_by_another_role_than_it_names,
        "bad-delegation",
        id="link-signed-by-another-role-than-it-names",
    ),
    pytest.param(delegated_wider_scopes, "delegation-widened", id="delegated-wider-scopes"),
    pytest.param(delegated_later_expiry, "delegation-widened", id="delegated-later-expiry"),
    pytest.param(chain_hop_removed, "bad-delegation", id="chain-hop-removed"),
    pytest.param(chain_hops_reordered, "bad-delegation", id="chain-hops-reordered"),
    pytest.param(chain_hop_spliced_from_another_workflow, "bad-delegation", id="chain-hop-spliced"),
    pytest.param(outside_its_subjects, "misaddressed", id="publishing-outside-its-subjects"),
    pytest.param(oversized_body, "oversized", id="oversized-body"),
    pytest.param(oversized_headers, "oversized", id="oversized-headers"),
    pytest.param(deeply_nested_body, "malformed", id="deeply-nested-json"),
    pytest.param(invalid_utf8_in_body, "schema-violation", id="invalid-utf8-body"),
    pytest.param(invalid_utf8_in_envelope, "malformed", id="invalid-utf8-envelope"),
    *(
        pytest.param(injected_workflow(v), "malformed", id=f"workflow-injection-{i}")
        for i, v in enumerate(["wf.x", "wf*", "wf>", "$JS.API", "_INBOX.x"])
    ),
    *(
        pytest.param(injected_to(v), "misaddressed", id=f"to-injection-{i}")
        for i, v in enumerate(["echo.x", "echo*", "echo.>", "$JS.API", "_INBOX.echo"])
    ),
]


@pytest.mark.parametrize(("build", "reason"), CASES)
async def test_attack_is_refused(
    arena: Arena,
    build: Callable[[Arena, str], Awaitable[Attack]],
    reason: str,
    request: pytest.FixtureRequest,
) -> None:
    mesh, echo = arena.mesh, arena.echo
    text = "attack-" + request.node.callspec.id
    attack = await build(arena, text)
    letters_before = len(await mesh.dead_letters("echo"))
    unverified_before = len(rejected(await mesh.unverified_events(), reason, "echo"))
    ran_before = len(echo.seen)

    attacker = await mesh.attacker()
    await attacker.publish(arena.subject, attack.data, attack.headers)

    # Wait for the refusal, or stop at once if the handler ran for the attack.
    deadline = time.monotonic() + WAIT_S
    letters = await mesh.dead_letters("echo")
    while len(letters) == letters_before and len(echo.seen) == ran_before:
        assert time.monotonic() < deadline, "neither refused nor handled"
        await asyncio.sleep(0.02)
        letters = await mesh.dead_letters("echo")
    assert echo.seen[ran_before:] == [], "the handler ran for the attack"  # (b)
    new = letters[letters_before:]
    assert [d.reason for d in new] == [reason], new  # (a), one dead letter
    assert new[0].data == attack.data

    if attack.readable is not None:  # (c) one audit record, where it belongs
        workflow = attack.readable.envelope.workflow
        logged = await mesh.wait_events(workflow, lambda got: bool(rejected(got, reason, "echo")))
        audit = rejected(logged, reason, "echo")
        assert len(audit) == 1, logged
        assert audit[0].event.task == attack.readable.envelope.id
    else:
        deadline = time.monotonic() + WAIT_S
        while True:
            audit = rejected(await mesh.unverified_events(), reason, "echo")
            if len(audit) > unverified_before or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)
        assert len(audit) == unverified_before + 1
    assert audit[-1].verified

    client = await mesh.ingress()  # (d) the consumer keeps serving
    after = await client.request("echo", Echo("after"), token=arena.token, returns=Echo)
    assert after == Echo("AFTER")
    assert echo.seen[ran_before:] == ["after"]
