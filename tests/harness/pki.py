"""Helpers for unit tests: an in-memory PKI (root, certificates, registry) and sealed messages.

Nothing here starts a server: the registry is a dict behind the async lookup the
TrustStore expects, and messages are built with the same functions MeshClient uses.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import jwt
import msgspec
import pytest

from jetmesh.addresses import Subjects
from jetmesh.envelope import Envelope, Kind, encode_envelope, new_id
from jetmesh.identity.certificates import default_permissions, issue_certificate
from jetmesh.identity.delegation import digest, mint_link
from jetmesh.identity.keys import KeyPair
from jetmesh.identity.signing import Signer
from jetmesh.identity.tokens import mint_token
from jetmesh.identity.trust import TrustStore
from jetmesh.identity.verifier import MSG_ID_HEADER

SUBJECTS = Subjects("mesh")


@dataclass
class Pki:
    """A mesh root and a registry of certificates by key id, with a lookup counter."""

    root: KeyPair = field(default_factory=lambda: KeyPair.generate("root"))
    registry: dict[str, str] = field(default_factory=dict)
    lookups: list[str] = field(default_factory=list)

    @property
    def roots(self) -> dict[str, bytes]:
        return {self.root.kid: self.root.public_key}

    def issue(
        self,
        name: str,
        *,
        ingress: bool = False,
        publish: Sequence[str] | None = None,
        scopes: Sequence[str] = (),
        ttl_s: float = 3600.0,
        now: float | None = None,
        signer: KeyPair | None = None,
    ) -> tuple[KeyPair, str]:
        """A new key for ``name`` and its certificate (registered), signed by the root."""
        key = KeyPair.generate(name)
        default_pub, default_sub = default_permissions(SUBJECTS, name)
        cert = issue_certificate(
            signer or self.root,
            key,
            publish=publish if publish is not None else default_pub,
            subscribe=default_sub,
            scopes=scopes,
            ingress=ingress,
            ttl_s=ttl_s,
            now=now,
        )
        self.registry[key.kid] = cert
        return key, cert

    async def lookup(self, kid: str) -> str | None:
        self.lookups.append(kid)
        return self.registry.get(kid)

    def trust(self, **kwargs: Any) -> TrustStore:
        return TrustStore(self.roots, self.lookup, **kwargs)


@pytest.fixture
def pki() -> Pki:
    return Pki()


@pytest.fixture
def gateway(pki: Pki) -> KeyPair:
    """An ingress key (may mint caller tokens), registered."""
    return pki.issue("gateway", ingress=True)[0]


@pytest.fixture
def billing(pki: Pki) -> KeyPair:
    """An ordinary agent key with default permissions, registered."""
    return pki.issue("billing")[0]


@pytest.fixture
def token(gateway: KeyPair) -> str:
    """A valid caller token for alice, minted by the gateway."""
    return mint_token(gateway, subject="alice", tenant="acme", scopes=["kb:read"], ttl_s=600)


def make_envelope(
    *,
    sender: str,
    to: str,
    caller: str,
    kind: Kind = "task",
    body: Any = None,
    **fields: Any,
) -> Envelope:
    """An envelope created now, with a JSON body."""
    wf = fields.pop("workflow", new_id())
    return Envelope(
        id=fields.pop("id", new_id()),
        kind=kind,
        workflow=wf,
        sender=sender,
        to=to,
        created=fields.pop("created", time.time()),
        caller=caller,
        body=msgspec.Raw(msgspec.json.encode(body if body is not None else {"text": "hi"})),
        **fields,
    )


def chained(envelope: Envelope, *signers: KeyPair) -> Envelope:
    """``envelope`` with a valid delegation chain: ``signers[0]`` (an ingress) starts it,
    each signer hands on to the next one's owner, the last to ``envelope.to``; the step
    keys nest (``t``, ``t/<role>.1``, ...) and the last becomes the envelope's."""
    claims = jwt.decode(envelope.caller, options={"verify_signature": False})
    after, links, step = envelope.caller, [], "t"
    for n, key in enumerate(signers):
        to = signers[n + 1].owner if n + 1 < len(signers) else envelope.to
        step = step if n == 0 else f"{step}/{to}.1"
        link = mint_link(
            key,
            to=to,
            workflow=envelope.workflow,
            step=step,
            scopes=claims.get("scopes", []),
            expires=claims["exp"],
            prev=digest(after),
        )
        links.append(link)
        after = link
    return msgspec.structs.replace(envelope, chain=tuple(links), step=step)


def seal(key: KeyPair, envelope: Envelope) -> tuple[bytes, dict[str, str]]:
    """The exact bytes and headers MeshClient.seal would publish (without traceparent)."""
    data = encode_envelope(envelope)
    headers = Signer(key).headers(data)
    headers[MSG_ID_HEADER] = envelope.id
    return data, headers


@pytest.fixture
def envelope() -> Callable[..., Envelope]:
    return make_envelope


@pytest.fixture
def chain() -> Callable[..., Envelope]:
    return chained


@pytest.fixture
def sealed() -> Callable[[KeyPair, Envelope], tuple[bytes, dict[str, str]]]:
    return seal
