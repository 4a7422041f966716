"""Identity: Ed25519 keys, agent certificates, caller tokens, signing and verification.

``__all__`` is this package's public API; its modules are internal and may change without
notice (see "Public API" in docs/ARCHITECTURE.md).

- keys on disk for the root, agents and ingresses: :class:`KeyStore`, :class:`Identity`;
- who started a workflow: :class:`Caller` tokens (:func:`mint_token`, :func:`verify_token`);
- what the root vouches for: :class:`Certificate`;
- how a task came to act for its caller: :class:`Delegation`, one signed :class:`Link` a hop;
- a person's approval of one tool call: :class:`ApprovalClaims`;
- the headers that carry a signature, and the one verification path (:class:`Verifier`).

Example:
    >>> store = KeyStore(Path("keys"))                                # doctest: +SKIP
    >>> store.issue("kb", subjects=Subjects("mesh"), ttl_s=86_400)    # doctest: +SKIP
    >>> identity = store.identity("kb")                               # doctest: +SKIP
"""

from .approvals import ApprovalClaims, mint_approval, verify_approval
from .certificates import Certificate, issue_certificate, verify_certificate
from .delegation import Delegation, Link, check_chain
from .keys import KeyPair
from .keystore import Identity, KeyStore
from .registry import KeyRegistry
from .revocation import Revocation, revoke_key
from .signing import (
    KEY_HEADER,
    PATH_HEADER,
    SCHEME_HEADER,
    SIGNATURE_HEADER,
    BatchSigner,
    Signer,
)
from .tokens import Caller, mint_token, verify_token
from .trust import TrustStore
from .verifier import MSG_ID_HEADER, Verified, Verifier

__all__ = [
    "KEY_HEADER",
    "MSG_ID_HEADER",
    "PATH_HEADER",
    "SCHEME_HEADER",
    "SIGNATURE_HEADER",
    "ApprovalClaims",
    "BatchSigner",
    "Caller",
    "Certificate",
    "Delegation",
    "Identity",
    "KeyPair",
    "KeyRegistry",
    "KeyStore",
    "Link",
    "Revocation",
    "Signer",
    "TrustStore",
    "Verified",
    "Verifier",
    "check_chain",
    "issue_certificate",
    "mint_approval",
    "mint_token",
    "revoke_key",
    "verify_approval",
    "verify_certificate",
    "verify_token",
]
