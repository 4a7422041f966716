"""The claims of jetmesh's two JWTs, as documented schemas for other languages.

Both are ordinary compact JWS tokens signed with Ed25519 (JOSE ``alg: EdDSA``), so any JWT
library reads and mints them. These Structs mirror, claim for claim, what
``jetmesh.identity.tokens.mint_token`` and ``jetmesh.identity.certificates.issue_certificate``
produce; a test decodes real tokens through them and compares the claim sets.

Caller token (in ``Envelope.caller``), header ``{"alg": "EdDSA", "typ": "JWT", "kid":
"<ingress key id>"}``, signed by a key whose certificate has ``ingress: true``.

Certificate (in the ``MESH_KEYS`` key-value bucket under the agent's key id), header
``{"alg": "EdDSA", "typ": "jetmesh-cert+jwt", "kid": "<root key id>"}``, signed by a mesh root.
"""

from __future__ import annotations

from typing import Annotated, Final

import msgspec

CALLER_TOKEN_HEADER: Final = {"alg": "EdDSA", "typ": "JWT", "kid": "<ingress key id>"}
"""JOSE header of a caller token."""

CERTIFICATE_HEADER: Final = {"alg": "EdDSA", "typ": "jetmesh-cert+jwt", "kid": "<root key id>"}
"""JOSE header of an agent certificate."""

Token = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
KeyId = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_-]{1,64}-[0-9a-f]{16}$")]
"""``<owner>-<first 16 hex digits of sha256(public key)>``."""
NumericDate = Annotated[int, msgspec.Meta(ge=0)]
"""Unix time in whole seconds, as JWTs use."""
Ulid = Annotated[str, msgspec.Meta(pattern=r"^[0-9A-HJKMNP-TV-Z]{26}$")]
PublicKey = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_-]{43}$")]
"""A 32-byte Ed25519 public key, base64url without padding."""


class CallerTokenClaims(msgspec.Struct, frozen=True, kw_only=True):
    """Claims of a caller token: who started a workflow, for which tenant, with which scopes.

    Minted once at ingress and carried unchanged to every hop; never widened downstream.
    """

    __mesh_type__ = "mesh.CallerTokenClaims/1"

    iss: str
    """Owner name of the ingress key that minted it (``gateway``, ``cli``)."""
    sub: Annotated[str, msgspec.Meta(min_length=1)]
    """The caller (a user or a system)."""
    tenant: str
    """The caller's tenant."""
    scopes: list[str]
    """What the caller may do, sorted and without duplicates (``kb:read``)."""
    iat: NumericDate
    """Issued at, Unix time in seconds."""
    nbf: NumericDate
    """Not valid before (the issue time), Unix time in seconds."""
    exp: NumericDate
    """Expires at, Unix time in seconds; receivers allow a few seconds of clock skew."""
    jti: Ulid
    """Unique token id (a ULID)."""


class CertificateClaims(msgspec.Struct, frozen=True, kw_only=True):
    """Claims of an agent certificate: the mesh root vouches for an agent's key.

    Receivers fetch it by the ``Mesh-Key`` header's key id from the registry, verify it
    against the trusted root keys and cache it.
    """

    __mesh_type__ = "mesh.CertificateClaims/1"

    iss: KeyId
    """Key id of the root that signed it (also the JOSE header's ``kid``)."""
    sub: Token
    """The agent (or ingress) name; envelopes signed with this key must have it as ``sender``."""
    kid: KeyId
    """Key id of the certified key (``<name>-<16 hex of sha256(pub)>``), sent as ``Mesh-Key``."""
    pub: PublicKey
    """The certified 32-byte Ed25519 public key, base64url without padding."""
    publish: list[str]
    """Subject patterns (NATS wildcards) the agent may publish to."""
    subscribe: list[str]
    """Subject patterns the agent may subscribe to."""
    scopes: list[str]
    """Scopes granted to the agent, sorted and without duplicates."""
    ingress: bool
    """True for a key that may mint caller tokens (a gateway or the CLI)."""
    iat: NumericDate
    """Issued at, Unix time in seconds."""
    nbf: NumericDate
    """Not valid before (the issue time), Unix time in seconds."""
    exp: NumericDate
    """Expires at, Unix time in seconds."""
    jti: Ulid
    """Unique certificate id (a ULID)."""
