"""Ed25519 key pairs and their files.

A key's id (``kid``) names its owner and fingerprints its public key, for example
``billing-3fa2c19e07b4d5a1``; it travels in the ``Mesh-Key`` header of every message.

Private files (seeds, passwords) are created ``0600`` in a ``0700`` directory, through a
temporary file made with ``O_CREAT | O_EXCL | O_NOFOLLOW`` and renamed over the target: a
file or symlink planted at either name is never written through (:func:`write_secret`).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import secrets
import stat
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from nacl.signing import SigningKey, VerifyKey

from .._exceptions import ConfigError
from .jws import b64d as b64d
from .jws import b64e as b64e

log = logging.getLogger("jetmesh.keys")

KEY_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,64}-[0-9a-f]{16}\Z")
"""A key id as :func:`key_id` makes it: the owner (a subject token), ``-``, 16 hex digits."""

PRIVATE_FILE_MODE = 0o600
PRIVATE_DIR_MODE = 0o700


def key_id(owner: str, public_key: bytes) -> str:
    return f"{owner}-{hashlib.sha256(public_key).hexdigest()[:16]}"


def is_key_id(text: str) -> bool:
    """Whether ``text`` has the form of a key id (checked before any registry look-up)."""
    return KEY_ID_RE.match(text) is not None


@dataclass(frozen=True)
class KeyPair:
    """An Ed25519 key pair owned by an agent, an ingress or the mesh root.

    Its ``repr`` shows the owner and the key id, never the seed.
    """

    owner: str
    seed: bytes = field(repr=False)

    def __str__(self) -> str:
        return f"KeyPair({self.owner!r}, kid={self.kid!r})"

    __repr__ = __str__

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

    def save(self, path: Path, *, replace: bool = True) -> bool:
        """Write the seed to ``path`` readable by the owner only (see :func:`write_secret`);
        with ``replace=False`` only if there is no file at ``path`` yet (False: there was,
        and it is left as it is).

        Raises:
            ConfigError: the directory is not the owner's, or a temporary name is taken.
        """
        return write_secret(path, f"{self.owner}\n{b64e(self.seed)}\n", replace=replace)

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


_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
_TEMP_TRIES = 8


def write_atomically(path: Path, text: str, *, mode: int = 0o644, replace: bool = True) -> bool:
    """Write ``text`` to ``path`` so that a concurrent reader sees the old file or the new
    one, never half of one (several replicas may start at once); True once written.

    The text goes to a new temporary file beside ``path`` (a random name, created with
    ``O_EXCL | O_NOFOLLOW``: a file or symlink already there is never opened) with
    ``mode``, which is then renamed over ``path`` (a symlink at ``path`` is replaced, not
    followed). With ``replace=False`` it is linked to ``path`` instead, which fails when
    anything is there: then nothing is written and this returns False (of writers racing
    for a new file, exactly one wins, and the others read what it wrote).

    Raises:
        ConfigError: no free temporary name after a few tries.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(_TEMP_TRIES):
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
        try:
            fd = os.open(tmp, _NEW_FILE, mode)
        except FileExistsError:
            continue
        try:
            os.fchmod(fd, mode)  # the umask may have taken bits from ``mode``
            with os.fdopen(fd, "w") as f:
                f.write(text)
            if replace:
                os.replace(tmp, path)
                return True
            try:
                os.link(tmp, path)
            except FileExistsError:
                return False
            except OSError:  # no hard links on this file system: the race narrowed only
                if os.path.lexists(path):
                    return False
                os.replace(tmp, path)
            finally:
                tmp.unlink(missing_ok=True)
            return True
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    raise ConfigError(f"cannot create a temporary file beside {path}: every name tried exists")


def write_secret(path: Path, text: str, *, replace: bool = True) -> bool:
    """Write a private file: ``0600`` in a ``0700`` directory (made, or tightened when it
    is looser), atomically and without following links (see :func:`write_atomically`,
    and for ``replace`` and what this returns).

    Raises:
        ConfigError: the directory belongs to another user (it cannot be tightened), or
            no free temporary name.
    """
    private_directory(path.parent)
    return write_atomically(path, text, mode=PRIVATE_FILE_MODE, replace=replace)


def private_directory(directory: Path) -> Path:
    """Make ``directory`` (and missing parents) and leave it ``0700``: a looser one is
    tightened, with a warning.

    Raises:
        ConfigError: it is not a directory, or it is another user's.
    """
    directory.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
    info = directory.stat()
    if not stat.S_ISDIR(info.st_mode):
        raise ConfigError(f"{directory} is not a directory")
    loose = stat.S_IMODE(info.st_mode) & ~PRIVATE_DIR_MODE
    if loose:
        if info.st_uid != os.getuid():
            raise ConfigError(
                f"{directory} holds private keys but belongs to user {info.st_uid} and is "
                f"mode {stat.S_IMODE(info.st_mode):o}; make it yours and chmod 700 it"
            )
        log.warning(
            "%s holds private keys and was mode %o: tightened to 700",
            directory,
            stat.S_IMODE(info.st_mode),
        )
        os.chmod(directory, PRIVATE_DIR_MODE)
    return directory


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
