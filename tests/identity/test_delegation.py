"""The delegation chain, link by link: what a receiver accepts and what it refuses.

A three-hop chain gateway (ingress) -> triage -> billing -> kb, built with real keys and
certificates in an in-memory registry; each attack changes one thing about it.
"""

from __future__ import annotations

import time

import jwt
import msgspec
import pytest

from jetmesh import BadDelegation, ExpiredToken, RevokedKey, WidenedDelegation
from jetmesh.envelope import Envelope
from jetmesh.identity.delegation import LINK_TYPE, LinkSigner, digest, mint_link
from jetmesh.identity.revocation import Revocation
from jetmesh.identity.tokens import mint_token
from jetmesh.identity.trust import TrustStore

WF = "01JWORKFLOW"
SCOPES = ("kb:read", "refund:write")


class Chain:
    """Keys of the four roles and a builder of chains among them."""

    def __init__(self, pki) -> None:
        self.pki = pki
        self.gateway = pki.issue("gateway", ingress=True)[0]
        self.triage = pki.issue("triage")[0]
        self.billing = pki.issue("billing")[0]
        self.kb = pki.issue("kb")[0]
        self.token = mint_token(
            self.gateway, subject="alice", tenant="acme", scopes=SCOPES, ttl_s=600
        )
        self.expires = float(jwt.decode(self.token, options={"verify_signature": False})["exp"])

    def links(
        self,
        *,
        workflow: str = WF,
        token: str | None = None,
        scopes: tuple[tuple[str, ...], ...] = (SCOPES, SCOPES, ("kb:read",)),
        expires: tuple[float, ...] | None = None,
    ) -> list[str]:
        """gateway -> triage (step t), triage -> billing (t/billing.1), billing -> kb
        (t/billing.1/kb.1)."""
        hops = [
            (self.gateway, "triage", "t"),
            (self.triage, "billing", "t/billing.1"),
            (self.billing, "kb", "t/billing.1/kb.1"),
        ]
        after, out = token or self.token, []
        for n, (key, to, step) in enumerate(hops):
            link = mint_link(
                key,
                to=to,
                workflow=workflow,
                step=step,
                scopes=scopes[n],
                expires=(expires or (self.expires,) * 3)[n],
                prev=digest(after),
            )
            out.append(link)
            after = link
        return out

    def task(
        self, links: list[str], *, sender: str = "billing", token: str | None = None
    ) -> Envelope:
        last = jwt.decode(links[-1], options={"verify_signature": False}) if links else {}
        return Envelope(
            id="01JTASK",
            kind="task",
            workflow=WF,
            sender=sender,
            to=last.get("to", "kb"),
            created=time.time(),
            step=last.get("step", "t/billing.1/kb.1"),
            caller=token or self.token,
            chain=tuple(links),
        )


@pytest.fixture
def chain(pki) -> Chain:
    return Chain(pki)


async def verify(pki, chain: Chain, task: Envelope, trust: TrustStore | None = None):
    """Verify ``task``'s chain as the receiver of a task signed by its sender's key."""
    trust = trust or pki.trust()
    caller = await trust.caller(task.caller)
    key = {k.owner: k for k in (chain.gateway, chain.triage, chain.billing, chain.kb)}
    signer, _ = await trust.certificate(key[task.sender].kid)
    return await trust.delegation(task, caller, signer=signer)


async def test_a_valid_chain_hands_on_the_last_links_scopes(pki, chain: Chain) -> None:
    delegation = await verify(pki, chain, chain.task(chain.links()))
    assert delegation.scopes == {"kb:read"}
    assert delegation.path == ("gateway", "triage", "billing", "kb")
    assert delegation.depth == 2


def test_a_link_is_a_standard_eddsa_jwt(chain: Chain) -> None:
    """Publishers in other languages read and write links with any JOSE library."""
    link = chain.links()[0]
    header = jwt.get_unverified_header(link)
    assert header == {"alg": "EdDSA", "kid": chain.gateway.kid, "typ": LINK_TYPE}
    claims = jwt.decode(link, chain.gateway.jwt_key().public_key(), algorithms=["EdDSA"])
    assert (claims["iss"], claims["to"], claims["wf"]) == ("gateway", "triage", WF)
    assert claims["prev"] == digest(chain.token)


async def test_a_link_made_by_pyjwt_is_accepted(pki, chain: Chain) -> None:
    links = chain.links()
    claims = jwt.decode(links[2], options={"verify_signature": False})
    headers = {"kid": chain.billing.kid, "typ": LINK_TYPE}
    links[2] = jwt.encode(claims, chain.billing.jwt_key(), algorithm="EdDSA", headers=headers)
    delegation = await verify(pki, chain, chain.task(links))
    assert delegation.scopes == {"kb:read"}


async def test_links_are_verified_once_per_process(pki, chain: Chain) -> None:
    trust = pki.trust()
    task = chain.task(chain.links())
    await verify(pki, chain, task, trust)
    looked_up = list(pki.lookups)
    await verify(pki, chain, task, trust)
    assert pki.lookups == looked_up


def _swap(links: list[str], i: int, j: int) -> list[str]:
    out = list(links)
    out[i], out[j] = out[j], out[i]
    return out


@pytest.mark.parametrize(
    ("attack", "error", "match"),
    [
        ("no chain", BadDelegation, "without a delegation chain"),
        ("hop removed", BadDelegation, "does not follow"),
        ("hops reordered", BadDelegation, "does not follow"),
        ("spliced from another workflow", BadDelegation, "does not follow"),
        ("whole chain of another workflow", BadDelegation, "made for workflow"),
        ("bound to another token", BadDelegation, "does not follow the caller token"),
        ("not started by an ingress", BadDelegation, "not an ingress"),
        ("sent by another role than the last link's", BadDelegation, "sent the task"),
    ],
)
async def test_a_broken_chain_is_refused(pki, chain: Chain, attack, error, match) -> None:
    links = chain.links()
    sender = "billing"
    token = None
    if attack == "no chain":
        links = []
    elif attack == "hop removed":
        links = [links[0], links[2]]
    elif attack == "hops reordered":
        links = _swap(links, 1, 2)
    elif attack == "spliced from another workflow":
        links[1] = chain.links(workflow="01JOTHER")[1]
    elif attack == "whole chain of another workflow":
        links = chain.links(workflow="01JOTHER")
    elif attack == "bound to another token":
        token = mint_token(chain.gateway, subject="alice", tenant="acme", scopes=SCOPES, ttl_s=600)
    elif attack == "not started by an ingress":
        links = links[1:]
    elif attack == "sent by another role than the last link's":
        sender = "triage"
    with pytest.raises(error, match=match):
        await verify(pki, chain, chain.task(links, sender=sender, token=token))


async def test_a_hop_handing_on_a_scope_it_was_not_given_is_refused(pki, chain: Chain) -> None:
    links = chain.links(scopes=(("kb:read",), ("kb:read", "refund:write"), ("kb:read",)))
    with pytest.raises(WidenedDelegation, match=r"link 1 .* not given: refund:write"):
        await verify(pki, chain, chain.task(links))


async def test_the_first_link_cannot_widen_the_callers_token(pki, chain: Chain) -> None:
    links = chain.links(scopes=((*SCOPES, "admin"), SCOPES, SCOPES))
    with pytest.raises(WidenedDelegation, match=r"link 0 .* admin"):
        await verify(pki, chain, chain.task(links))


async def test_a_later_expiry_than_given_is_refused(pki, chain: Chain) -> None:
    e = chain.expires
    links = chain.links(expires=(e - 100, e - 50, e - 100))
    with pytest.raises(WidenedDelegation, match=r"link 1 .* expires 50s after"):
        await verify(pki, chain, chain.task(links))


async def test_an_expired_link_is_refused(pki, chain: Chain) -> None:
    now = time.time()
    links = chain.links(expires=(chain.expires, now - 60, now - 60))
    with pytest.raises(ExpiredToken, match="link 1"):
        await verify(pki, chain, chain.task(links))


async def test_a_link_naming_another_role_than_its_key_is_refused(pki, chain: Chain) -> None:
    links = chain.links()
    signer = LinkSigner(chain.billing)
    signer.owner = "triage"
    forged = mint_link(
        signer,
        to="billing",
        workflow=WF,
        step="t/billing.1",
        scopes=SCOPES,
        expires=chain.expires,
        prev=digest(links[0]),
    )
    with pytest.raises(BadDelegation, match="signed with billing's key"):
        await verify(pki, chain, chain.task([links[0], forged, links[2]]))


async def test_a_link_with_a_flipped_bit_is_refused(pki, chain: Chain) -> None:
    links = chain.links()
    head, claims, sig = links[1].split(".")
    flipped = sig[:-2] + ("A" if sig[-2] != "A" else "B") + sig[-1]
    with pytest.raises(BadDelegation, match="rejected"):
        await verify(pki, chain, chain.task([links[0], f"{head}.{claims}.{flipped}", links[2]]))


@pytest.mark.parametrize("alg", ["none", "HS256"])
async def test_a_link_with_another_algorithm_is_refused(pki, chain: Chain, alg: str) -> None:
    links = chain.links()
    claims = jwt.decode(links[1], options={"verify_signature": False})
    key = chain.triage.public_key if alg == "HS256" else None
    headers = {"kid": chain.triage.kid, "typ": LINK_TYPE}
    forged = (
        jwt.encode(claims, key, algorithm=alg, headers=headers)
        if key
        else (
            jwt.api_jws.base64url_encode(msgspec.json.encode({"alg": "none", **headers})).decode()
            + "."
            + links[1].split(".")[1]
            + "."
        )
    )
    with pytest.raises(BadDelegation, match="EdDSA"):
        await verify(pki, chain, chain.task([links[0], forged, links[2]]))


async def test_a_step_not_under_the_one_before_is_refused(pki, chain: Chain) -> None:
    links = chain.links()
    other = mint_link(
        chain.billing,
        to="kb",
        workflow=WF,
        step="elsewhere/kb.1",
        scopes=("kb:read",),
        expires=chain.expires,
        prev=digest(links[1]),
    )
    task = msgspec.structs.replace(chain.task([*links[:2], other]), step="elsewhere/kb.1")
    with pytest.raises(BadDelegation, match="not under"):
        await verify(pki, chain, task)


async def test_a_chain_for_another_step_or_role_is_refused(pki, chain: Chain) -> None:
    task = msgspec.structs.replace(chain.task(chain.links()), to="critic")
    with pytest.raises(BadDelegation, match=r"not 't/billing\.1/kb\.1' to critic"):
        await verify(pki, chain, task)


async def test_an_ingress_may_send_a_chain_again(pki, chain: Chain) -> None:
    """``dlq redrive``: the operator's ingress re-issues a dead-lettered task as it was."""
    delegation = await verify(pki, chain, chain.task(chain.links(), sender="gateway"))
    assert delegation.scopes == {"kb:read"}


async def test_a_link_by_a_revoked_key_is_refused(pki, chain: Chain) -> None:
    revoked = chain.triage.kid

    async def revocations(kid: str) -> Revocation | None:
        return Revocation(kid=kid, at=0.0, by="ops", reason="leaked") if kid == revoked else None

    trust = TrustStore(pki.roots, pki.lookup, revocations=revocations)
    with pytest.raises(RevokedKey):
        await verify(pki, chain, chain.task(chain.links()), trust)


def _break_signature(link: str) -> str:
    head, claims, sig = link.split(".")
    return f"{head}.{claims}.{sig[:-2]}{'A' if sig[-2] != 'A' else 'B'}{sig[-1]}"


async def test_the_senders_own_last_link_is_covered_by_the_tasks_signature(
    pki, chain: Chain
) -> None:
    """Its own signature is not checked here (the task's signature covers its bytes), but
    the next hop, which receives it from another sender, checks it."""
    links = chain.links()
    links[2] = _break_signature(links[2])
    assert (await verify(pki, chain, chain.task(links))).scopes == {"kb:read"}
    onward = mint_link(
        chain.kb,
        to="critic",
        workflow=WF,
        step="t/billing.1/kb.1/critic.1",
        scopes=("kb:read",),
        expires=chain.expires,
        prev=digest(links[2]),
    )
    with pytest.raises(BadDelegation, match=r"link by billing-\w+ rejected"):
        await verify(pki, chain, chain.task([*links, onward], sender="kb"))


async def test_a_last_link_by_another_key_than_the_tasks_is_checked(pki, chain: Chain) -> None:
    links = chain.links()
    links[2] = _break_signature(links[2])
    with pytest.raises(BadDelegation, match="rejected"):
        await verify(pki, chain, chain.task(links, sender="gateway"))  # a redrive
