"""The delegation chain: how a task came to act for its caller, one signed link per hop.

Every task carries ``Envelope.chain``, a list of links. Each link is an EdDSA JWT signed by
the process that sent that hop, saying "I hand the caller's authority, this much of it and
this long, to that role, for this step of this workflow"::

    link 0, by the ingress that started the workflow (binds the caller token to it):
        {"iss": "cli", "to": "triage", "wf": W, "step": "triage",
         "scopes": ["kb:read", "refund:write"], "exp": E0, "prev": sha256(caller token)}
    link 1, by triage calling billing:
        {"iss": "triage", "to": "billing", "wf": W, "step": "triage/billing.1",
         "scopes": S1 ⊆ S0, "exp": E1 <= E0, "prev": sha256(link 0)}

A receiver accepts the chain only if every link is signed by a valid, unrevoked key of the
role it names; link 0 by an ingress; each ``prev`` is the digest of the link before it
(the caller token for link 0), so no hop can be removed, reordered or spliced in from
another chain; every link names this workflow, and each step is nested under the one
before; each link's scopes and expiry are within the previous one's (the token's for link
0): a hop may narrow, never widen; and the last link hands the task to its addressee, from
its sender. The chain is as long as the step key is deep, so ``max_call_depth`` bounds it.

A link is read strictly before any of it counts: three parts of base64url without
padding, each the one text of its bytes (:mod:`.jws`), JSON objects that name no
member twice, and a header without ``crit``: RFC 7515 has a receiver refuse critical
parameters it does not know, and a link has none. So the text of a link, and the ``prev``
digest the next one binds to, cannot change under a valid signature.

What a hop may do is then ``the last link's scopes ∩ the role's own grant``. The grants of
the roles a task passed through do not narrow it by themselves (a router without
``kb:read`` may still route a caller's question to ``kb``); a hop narrows explicitly, with
``ctx.call(..., scopes=...)``.

Example:
    >>> key = KeyPair.generate("cli")
    >>> link = mint_link(key, to="triage", workflow="01J", step="triage",
    ...                  scopes=["kb:read"], expires=2e9, prev=digest("token"))
    >>> link.count(".")
    2
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

import msgspec
from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

from .._exceptions import BadDelegation, ExpiredToken, Malformed, WidenedDelegation
from ..envelope import duplicate_key
from .jws import b64d, b64e, check_b64
from .keys import KeyPair
from .tokens import Caller

LINK_TYPE = "mesh-delegation+jwt"
"""The ``typ`` of a link's header, so that a caller token or certificate is not taken for one."""


class Link(msgspec.Struct, frozen=True):
    """The verified claims of one link."""

    by: str
    """The role that signed the link (the sender of that hop)."""
    kid: str
    to: str
    """The role the authority was handed to."""
    workflow: str
    step: str
    scopes: frozenset[str]
    expires: float
    prev: str


class Delegation(msgspec.Struct, frozen=True):
    """What the chain of a verified task hands to its addressee."""

    scopes: frozenset[str]
    """The scopes delegated to this hop (its effective scopes are these ∩ its grant)."""
    expires: float
    path: tuple[str, ...]
    """The roles along the chain, ingress first, this hop's role last."""
    links: tuple[str, ...]
    """The chain as received, to extend on the next call."""

    @property
    def depth(self) -> int:
        return len(self.links) - 1


class _Header(msgspec.Struct, frozen=True):
    alg: str
    kid: str
    typ: str = ""
    crit: Any = msgspec.UNSET
    """Present at all (even ``null``): refused."""


class _Claims(msgspec.Struct, frozen=True, kw_only=True):
    # In the order and with the types mint_link writes them: a link it made encodes
    # again to its own bytes (see _unique_members).
    iss: str
    to: str
    wf: str
    step: str
    scopes: list[str] = []
    iat: int | float = 0
    exp: int | float
    prev: str


_header_decoder = msgspec.json.Decoder(_Header)
_claims_decoder = msgspec.json.Decoder(_Claims)
_encoder = msgspec.json.Encoder()

# Links are made and checked on every hop, so they are encoded and verified here with
# libsodium (what the per-message signatures use) rather than through PyJWT, which takes
# three times as long; they stay standard compact JWS (EdDSA), which any JOSE library reads
# (tests/identity/test_delegation.py checks PyJWT does).


class LinkSigner:
    """Signs links with one key; the header is built once."""

    def __init__(self, key: KeyPair) -> None:
        self.owner = key.owner
        self.kid = key.kid
        self._key = key.signing_key()
        header = {"alg": "EdDSA", "kid": self.kid, "typ": LINK_TYPE}
        self._header = b64e(msgspec.json.encode(header))

    def sign(self, claims: dict[str, Any]) -> str:
        signing_input = f"{self._header}.{b64e(msgspec.json.encode(claims))}"
        signature = self._key.sign(signing_input.encode()).signature
        return f"{signing_input}.{b64e(signature)}"


def digest(text: str) -> str:
    """The ``prev`` of the link that follows ``text`` (a link or a caller token)."""
    return b64e(hashlib.sha256(text.encode()).digest())


def mint_link(
    key: KeyPair | LinkSigner,
    *,
    to: str,
    workflow: str,
    step: str,
    scopes: Iterable[str],
    expires: float,
    prev: str,
    now: float | None = None,
) -> str:
    """Sign one link with ``key``."""
    signer = key if isinstance(key, LinkSigner) else LinkSigner(key)
    return signer.sign(
        {
            "iss": signer.owner,
            "to": to,
            "wf": workflow,
            "step": step,
            "scopes": sorted(set(scopes)),
            "iat": int(now if now is not None else time.time()),
            "exp": expires,
            "prev": prev,
        }
    )


class OpenedLink(NamedTuple):
    """A link read strictly, before its signature is checked."""

    text: str
    kid: str
    """The ``kid`` of its header: the key that signed it."""
    payload: bytes
    """Its claims, as signed."""
    signature: str
    """Its signature, still base64url (strict, not decoded)."""


def open_link(text: str) -> OpenedLink:
    """Read a link strictly, before any verification: three parts of strict base64url, a
    header of an EdDSA delegation link with a key id and no ``crit``, naming no member
    twice.

    Raises:
        BadDelegation: it is not such a link.
    """
    parts = text.split(".")
    if len(parts) != 3:
        raise BadDelegation(f"delegation link unreadable: {len(parts)} parts, not 3")
    try:
        header_bytes, payload = b64d(parts[0]), b64d(parts[1])
        check_b64(parts[2])
        header = _header_decoder.decode(header_bytes)
    except _UNREADABLE as exc:
        raise BadDelegation(f"delegation link unreadable: {exc}") from None
    if header.alg != "EdDSA" or header.typ != LINK_TYPE:
        raise BadDelegation(
            f"not an EdDSA delegation link: alg {header.alg[:32]!r}, typ {header.typ[:32]!r}"
        )
    if header.crit is not msgspec.UNSET:
        raise BadDelegation("a delegation link with critical header parameters (crit)")
    _unique_members(header, header_bytes, "header")
    return OpenedLink(text, header.kid, payload, parts[2])


def link_key_id(text: str) -> str:
    """The ``kid`` of a link (see :func:`open_link`).

    Raises:
        BadDelegation: not a strictly encoded delegation link.
    """
    return open_link(text).kid


def decode_link(link: OpenedLink, verify_key: VerifyKey) -> Link:
    """Verify a link's signature with its signer's key and read its claims.

    Raises:
        BadDelegation: the signature does not verify, or a claim is missing, mistyped or
            named twice.
    """
    try:
        verify_key.verify(link.text[: link.text.rindex(".")].encode(), b64d(link.signature))
    except (BadSignatureError, *_UNREADABLE) as exc:
        raise BadDelegation(f"delegation link by {link.kid} rejected: {exc}") from None
    return read_link(link)


def read_link(link: OpenedLink) -> Link:
    """A link's claims, its signature not checked: for the last link of a task signed by
    the same key, whose signature over the whole envelope covers the link already.

    Raises:
        BadDelegation: a claim is missing, mistyped or named twice.
    """
    try:
        claims = _claims_decoder.decode(link.payload)
    except _UNREADABLE as exc:
        raise BadDelegation(f"delegation link by {link.kid}: {exc}") from None
    _unique_members(claims, link.payload, "claims")
    return Link(
        by=claims.iss,
        kid=link.kid,
        to=claims.to,
        workflow=claims.wf,
        step=claims.step,
        scopes=frozenset(claims.scopes),
        expires=float(claims.exp),
        prev=claims.prev,
    )


def _unique_members(decoded: msgspec.Struct, data: bytes, what: str) -> None:
    """Refuse ``data`` when it names a member twice. What mint_link writes encodes again
    to the same bytes (no member twice, at the cost of one encoding); anything else has
    its members counted (:func:`~jetmesh.envelope.duplicate_key`).

    Raises:
        BadDelegation: a member named twice, or not a JSON object.
    """
    if _encoder.encode(decoded) == data:
        return
    try:
        twice = duplicate_key(data)
    except Malformed as exc:
        raise BadDelegation(f"delegation link {what}: {exc.detail}") from None
    if twice is not None:
        raise BadDelegation(f"delegation link {what} names {twice[:32]!r} twice")


_UNREADABLE = (
    msgspec.DecodeError,
    msgspec.ValidationError,
    ValueError,  # bad base64 (binascii.Error), bad signature length
    TypeError,
    UnicodeError,
)


def check_chain(
    chain: Sequence[str],
    links: Sequence[Link],
    *,
    ingress: bool,
    token: str,
    caller: Caller,
    workflow: str,
    step: str,
    sender: str,
    sender_ingress: bool,
    to: str,
    at: float,
    leeway_s: float,
) -> Delegation:
    """Check a task's chain, its links already verified one by one, against itself and the
    task.

    Args:
        chain: the links as received.
        links: the same, verified against their signers' certificates.
        ingress: whether the first link's signer is an ingress.
        token: the task's caller token (the first link's ``prev`` is its digest).
        caller: that token, verified.
        workflow: the task's workflow.
        step: the task's step key.
        sender: the task's sender.
        sender_ingress: the task's sender is an ingress: it may send a link made by
            another role again (``dlq redrive``).
        to: the task's recipient.
        at: when the task was sent or stored; links must not have expired by then.
        leeway_s: how far ``at`` may pass a link's expiry, for clock skew.

    Raises:
        BadDelegation: a link is out of place (removed, reordered, spliced, another
            workflow, another step) or the first is not by an ingress.
        WidenedDelegation: a link hands on more scopes, or for longer, than it received.
        ExpiredToken: a link expired.
    """
    if not links:
        raise BadDelegation("a task without a delegation chain")
    if not ingress:
        raise BadDelegation(f"the chain starts at {links[0].by}, which is not an ingress")
    prev, scopes, expires = digest(token), caller.scopes, caller.expires
    holder, above = links[0].by, ""
    for n, (text, link) in enumerate(zip(chain, links, strict=True)):
        where = f"link {n} ({link.by} -> {link.to})"
        if link.prev != prev:
            after = "the caller token" if n == 0 else f"link {n - 1}"
            raise BadDelegation(
                f"{where} does not follow {after}: a hop removed, reordered or spliced in"
            )
        if link.workflow != workflow:
            raise BadDelegation(f"{where} was made for workflow {link.workflow}, not {workflow}")
        if link.by != holder:
            raise BadDelegation(f"{where} is signed by {link.by}, but {holder} held the authority")
        if n > 0 and not link.step.startswith(above + "/"):
            raise BadDelegation(f"{where} step {link.step!r} is not under {above!r}")
        if not link.scopes <= scopes:
            wider = ", ".join(sorted(link.scopes - scopes))
            raise WidenedDelegation(f"{where} hands on scopes it was not given: {wider}")
        if link.expires > expires:
            late = link.expires - expires
            raise WidenedDelegation(f"{where} expires {late:.0f}s after what it was given")
        if link.expires + leeway_s < at:
            raise ExpiredToken(f"{where} expired {at - link.expires:.0f}s before use")
        prev, scopes, expires = digest(text), link.scopes, link.expires
        holder, above = link.to, link.step
    last = links[-1]
    if last.to != to or last.step != step:
        raise BadDelegation(f"the chain hands {last.step!r} to {last.to}, not {step!r} to {to}")
    if last.by != sender and not sender_ingress:
        raise BadDelegation(f"the last link is {last.by}'s, but {sender} sent the task")
    return Delegation(
        scopes=last.scopes,
        expires=last.expires,
        path=(links[0].by, *(link.to for link in links)),
        links=tuple(chain),
    )
