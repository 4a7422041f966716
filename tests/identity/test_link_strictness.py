"""A delegation link is read strictly: a ``crit`` header, a member named twice, or a part
spelled another way (padding, ``+/``, stray bits in its last character) is refused as
``bad-delegation``, both for a link verified by its own signature (link 0 here) and for
the last link, which the task's signature covers."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import jwt
import msgspec
import pytest

from jetmesh import BadDelegation
from jetmesh.envelope import Envelope
from jetmesh.identity.delegation import LINK_TYPE, digest, mint_link
from jetmesh.identity.jws import b64e
from jetmesh.identity.keys import KeyPair
from jetmesh.identity.tokens import mint_token

WF = "01JWORKFLOW"
ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


class Two:
    """gateway (ingress) -> triage (step t), triage -> billing (t/billing.1), as sent by
    triage to billing."""

    def __init__(self, pki: Any) -> None:
        self.pki = pki
        self.gateway = pki.issue("gateway", ingress=True)[0]
        self.triage = pki.issue("triage")[0]
        pki.issue("billing")
        self.token = mint_token(self.gateway, subject="alice", tenant="t", scopes=[], ttl_s=600)
        self.expires = float(jwt.decode(self.token, options={"verify_signature": False})["exp"])

    def claims(self, n: int, prev: str) -> dict[str, Any]:
        by, to, step = [("gateway", "triage", "t"), ("triage", "billing", "t/billing.1")][n]
        return {
            "iss": by,
            "to": to,
            "wf": WF,
            "step": step,
            "scopes": [],
            "iat": int(time.time()),
            "exp": self.expires,
            "prev": prev,
        }

    def key(self, n: int) -> KeyPair:
        return [self.gateway, self.triage][n]

    def links(self, salt: int = 0) -> list[str]:
        """The chain as the mesh makes it; another ``salt`` gives other texts (its links'
        ``iat`` are that many seconds earlier)."""
        now = time.time() - salt
        first = mint_link(self.gateway, **_args(self.claims(0, digest(self.token))), now=now)
        second = mint_link(self.triage, **_args(self.claims(1, digest(first))), now=now)
        return [first, second]

    def hand_made(self, n: int, header: bytes, payload: bytes) -> list[str]:
        """The chain with link ``n`` made from these exact header and claims bytes, signed
        by its rightful key (the link after it, if any, follows it)."""
        links = self.links()
        links[n] = sign(self.key(n), header, payload)
        if n == 0:
            links[1] = mint_link(self.triage, **_args(self.claims(1, digest(links[0]))))
        return links

    async def verify(self, links: list[str]) -> Any:
        trust = self.pki.trust()
        task = Envelope(
            id="01JTASK",
            kind="task",
            workflow=WF,
            sender="triage",
            to="billing",
            created=time.time(),
            step="t/billing.1",
            caller=self.token,
            chain=tuple(links),
        )
        caller = await trust.caller(task.caller)
        signer, _ = await trust.certificate(self.triage.kid)
        return await trust.delegation(task, caller, signer=signer)


def _args(claims: dict[str, Any]) -> dict[str, Any]:
    return {
        "to": claims["to"],
        "workflow": claims["wf"],
        "step": claims["step"],
        "scopes": claims["scopes"],
        "expires": claims["exp"],
        "prev": claims["prev"],
    }


def sign(key: KeyPair, header: bytes, payload: bytes) -> str:
    signing_input = f"{b64e(header)}.{b64e(payload)}"
    return f"{signing_input}.{b64e(key.signing_key().sign(signing_input.encode()).signature)}"


def header_of(key: KeyPair, **extra: Any) -> bytes:
    return json.dumps({"alg": "EdDSA", "kid": key.kid, "typ": LINK_TYPE, **extra}).encode()


@pytest.fixture
def two(pki: Any) -> Two:
    return Two(pki)


async def test_the_chain_as_made_is_accepted(two: Two) -> None:
    delegation = await two.verify(two.links())
    assert delegation.path == ("gateway", "triage", "billing")


@pytest.mark.parametrize("n", [0, 1], ids=["verified-link", "covered-last-link"])
async def test_a_hand_made_link_with_the_usual_header_is_accepted(two: Two, n: int) -> None:
    """The control for the attacks below: the same construction, nothing wrong with it."""
    prev = digest(two.token) if n == 0 else digest(two.links()[0])
    links = two.hand_made(n, header_of(two.key(n)), msgspec.json.encode(two.claims(n, prev)))
    assert (await two.verify(links)).path == ("gateway", "triage", "billing")


@pytest.mark.parametrize("n", [0, 1], ids=["verified-link", "covered-last-link"])
@pytest.mark.parametrize("crit", [["exp"], ["b64"], [], None], ids=repr)
async def test_a_link_with_crit_is_refused(two: Two, n: int, crit: Any) -> None:
    prev = digest(two.token) if n == 0 else digest(two.links()[0])
    header = header_of(two.key(n), crit=crit)
    links = two.hand_made(n, header, msgspec.json.encode(two.claims(n, prev)))
    with pytest.raises(BadDelegation, match="crit"):
        await two.verify(links)


@pytest.mark.parametrize("n", [0, 1], ids=["verified-link", "covered-last-link"])
@pytest.mark.parametrize("claim", ["to", "scopes", "exp", "wf"])
async def test_a_link_naming_a_claim_twice_is_refused(two: Two, n: int, claim: str) -> None:
    prev = digest(two.token) if n == 0 else digest(two.links()[0])
    claims = two.claims(n, prev)
    payload = msgspec.json.encode(claims)
    # The first spelling is the valid one: a parser that keeps the first would accept it.
    twice = payload[:-1] + b',"' + claim.encode() + b'":' + msgspec.json.encode(claims[claim])
    links = two.hand_made(n, header_of(two.key(n)), twice + b"}")
    with pytest.raises(BadDelegation, match=f"names '{claim}' twice"):
        await two.verify(links)


@pytest.mark.parametrize("n", [0, 1], ids=["verified-link", "covered-last-link"])
async def test_a_link_header_naming_a_member_twice_is_refused(two: Two, n: int) -> None:
    prev = digest(two.token) if n == 0 else digest(two.links()[0])
    # A reader keeping the first ``typ`` sees a JWT; ours (keeping the last) a link.
    header = header_of(two.key(n)).replace(b'"typ"', b'"typ": "JWT", "typ"')
    links = two.hand_made(n, header, msgspec.json.encode(two.claims(n, prev)))
    with pytest.raises(BadDelegation, match="names 'typ' twice"):
        await two.verify(links)


def _lenient(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def padded(part: str) -> str | None:
    return part + "=" * (-len(part) % 4) if len(part) % 4 else None


def standard_alphabet(part: str) -> str | None:
    changed = part.replace("-", "+").replace("_", "/")
    return changed if changed != part else None


def stray_bits(part: str) -> str | None:
    if len(part) % 4 not in (2, 3):
        return None
    return part[:-1] + ALPHABET[ALPHABET.index(part[-1]) | 1]


RESPELLINGS = {"padding": padded, "+/": standard_alphabet, "stray bits": stray_bits}


def respell(link: str, how: str) -> str | None:
    """``link`` with one part spelled another way that decodes, leniently, to the same
    bytes; None when no part of this link lends itself to it."""
    parts = link.split(".")
    for i in (2, 1, 0):
        other = RESPELLINGS[how](parts[i])
        if other is not None:
            assert other != parts[i]
            assert _lenient(other) == _lenient(parts[i])
            return ".".join([*parts[:i], other, *parts[i + 1 :]])
    return None


@pytest.mark.parametrize("n", [0, 1], ids=["verified-link", "covered-last-link"])
@pytest.mark.parametrize("how", sorted(RESPELLINGS))
async def test_a_respelled_link_is_refused(two: Two, n: int, how: str) -> None:
    for salt in range(50):  # a chain with a part that has a '-' or '_' (almost every one)
        links = two.links(salt)
        respelled = respell(links[n], how)
        if respelled is not None:
            break
    else:
        pytest.fail(f"no link lent itself to {how}")
    assert digest(respelled) != digest(links[n])  # what strict decoding protects
    links[n] = respelled
    if n == 0:  # the next link follows the respelled one, as an attacker would make it
        links[1] = mint_link(two.triage, **_args(two.claims(1, digest(respelled))))
    with pytest.raises(BadDelegation, match="unreadable"):
        await two.verify(links)
