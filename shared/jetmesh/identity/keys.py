"""Ed25519 key pairs and their files.

A key's id (``kid``) names its owner and fingerprints its public key, for example
``billing-3fa2c19e07b4d5a1``; it travels in the ``Mesh-Key`` header of every message.
"""

from __future__ import annotations

import base64
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from nacl.signing import SigningKey, VerifyKey

from .._exceptions import ConfigError


def b64e(data: bytes) -> str:
    """base64url without padding, as JWTs use."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64d(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def key_id(owner: str, public_key: bytes) -> str:
    return f"{owner}-{hashlib.sha256(public_key).hexdigest()[:16]}"


@dataclass(frozen=True)
class KeyPair:
    """An Ed25519 key pair owned by an agent, an ingress or the mesh root."""

    owner: str
    seed: bytes

    @classmethod
    def generate(cls, owner: str) -> KeyPair:
        return cls(owner, os.urandom(32))

    @property
    def public_key(self) -> bytes:
        return bytes(SigningKey(self.seed).verify_key)

    @property
    def kid(self) -> str:
        return key_id(self.owner, self.public_key)

    def signing_key(self) -> SigningKey:
        """libsodium key for per-message signatures (the hot path)."""
        return SigningKey(self.seed)

    def jwt_key(self) -> Ed25519PrivateKey:
        """`cryptography` key for JWTs (certificates and tokens)."""
        return Ed25519PrivateKey.from_private_bytes(self.seed)

    def save(self, path: Path) -> None:
        """Write the seed to ``path`` readable by the owner only."""
        write_atomically(path, f"{self.owner}\n{b64e(self.seed)}\n", mode=0o600)

    @classmethod
    def load(cls, path: Path) -> KeyPair:
        """Read a key written by :meth:`save`.

        Raises:
            ConfigError: when the file is missing or not a key.
        """
        try:
            owner, seed = path.read_text().split()
            raw = b64d(seed)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot read key {path}: {exc}") from None
        if len(raw) != 32:
            raise ConfigError(f"{path} is not an Ed25519 seed")
        return cls(owner, raw)


def write_atomically(path: Path, text: str, *, mode: int = 0o644) -> None:
    """Write ``text`` to ``path`` so that a concurrent reader sees the old file or the new
    one, never half of one (several replicas may start at once)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def verify_key(public_key: bytes) -> VerifyKey:
    return VerifyKey(public_key)


def jwt_public_key(public_key: bytes) -> Ed25519PublicKey:
    return Ed25519PublicKey.from_public_bytes(public_key)


def save_public(path: Path, owner: str, public_key: bytes) -> None:
    write_atomically(path, f"{owner}\n{b64e(public_key)}\n")


def load_public(path: Path) -> tuple[str, bytes]:
    """Read ``(owner, public_key)`` written by :func:`save_public`.

    Raises:
        ConfigError: when the file is missing or malformed.
    """
    try:
        owner, pub = path.read_text().split()
        raw = b64d(pub)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read public key {path}: {exc}") from None
    if len(raw) != 32:
        raise ConfigError(f"{path} is not an Ed25519 public key")
    return owner, raw
