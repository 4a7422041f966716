"""Detached Ed25519 signatures over the exact published bytes, carried in NATS headers.

Headers of every signed message::

    Mesh-Sig-Scheme: ed25519          the scheme; receivers reject schemes they do not know
    Mesh-Key:        billing-3fa2...  key id of the signer's certificate
    Mesh-Sig:        <base64url>      64-byte signature over the message body bytes

The scheme header leaves room for a batch scheme (one signature over a Merkle root of many
messages, each carrying its path in a further header) without changing what a receiver that
only knows ``ed25519`` does: it rejects the unknown scheme rather than misreading it.
"""

from __future__ import annotations

from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

from .keys import KeyPair, b64d, b64e

SCHEME_HEADER = "Mesh-Sig-Scheme"
KEY_HEADER = "Mesh-Key"
SIGNATURE_HEADER = "Mesh-Sig"
SCHEME_ED25519 = "ed25519"
KNOWN_SCHEMES = frozenset({SCHEME_ED25519})


class Signer:
    """Signs outgoing messages with one agent key."""

    __slots__ = ("_sign", "kid", "name")

    def __init__(self, key: KeyPair) -> None:
        self._sign = key.signing_key().sign
        self.kid = key.kid
        self.name = key.owner

    def headers(self, data: bytes) -> dict[str, str]:
        """The signature headers for ``data``, to merge into the message's headers."""
        signature = self._sign(data).signature
        return {
            SCHEME_HEADER: SCHEME_ED25519,
            KEY_HEADER: self.kid,
            SIGNATURE_HEADER: b64e(signature),
        }


def signature_valid(public: VerifyKey, data: bytes, signature_b64: str) -> bool:
    """True when ``signature_b64`` is a valid Ed25519 signature of ``data``."""
    try:
        signature = b64d(signature_b64)
        if len(signature) != 64:
            return False
        public.verify(data, signature)
    except (BadSignatureError, ValueError):
        return False
    return True
