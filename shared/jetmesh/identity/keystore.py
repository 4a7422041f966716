"""Keys and certificates on disk, for the root, agents and ingresses.

Layout of a keys directory (default ``.jetmesh/keys``)::

    root.key             the mesh root's private seed (keep it offline in production)
    roots/<kid>.pub      trusted root public keys (several during a rotation)
    <name>.key           an agent's private seed
    <name>.cert          its certificate (JWT), signed by the root
    retired/<kid>.cert   certificates replaced by ``rotate`` (their private keys are not
                         kept: replicas still running on them hold them in memory)

The directory is ``0700`` and every private file in it ``0600``, created without following
a planted file or link (:func:`jetmesh.identity.keys.write_secret`); a store that writes
into a looser directory of its owner tightens it first.

Example:
    >>> store = KeyStore(Path(".jetmesh/keys"))       # doctest: +SKIP
    >>> store.init_root()                             # doctest: +SKIP
    >>> ident = store.issue("billing", subjects=Subjects(), ttl_s=86400)  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .._exceptions import ConfigError, ExpiredKey
from ..addresses import Subjects, check_token
from .certificates import Certificate, default_permissions, issue_certificate, verify_certificate
from .keys import KeyPair, load_public, private_directory, save_public, write_atomically

RENEW_BEFORE_S = 3600.0
"""An auto-issued development certificate is renewed when it expires within this time; one
that cannot be renewed here (no root key) is warned about."""

log = logging.getLogger("jetmesh.keys")


def _utc(at: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at))


@dataclass(frozen=True)
class Identity:
    """An agent's (or ingress's) private key and its certificate."""

    key: KeyPair
    certificate: str

    @property
    def name(self) -> str:
        return self.key.owner


class KeyStore:
    """Reads and writes keys and certificates in one directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    @property
    def root_key_path(self) -> Path:
        return self.directory / "root.key"

    def has_root(self) -> bool:
        return self.root_key_path.exists()

    def init_root(self) -> KeyPair:
        """Create the root key if there is none; return it."""
        if self.has_root():
            return self.root()
        private_directory(self.directory)
        root = KeyPair.generate("root")
        if not root.save(self.root_key_path, replace=False):  # another process made one
            root = KeyPair.load(self.root_key_path)
        save_public(self.directory / "roots" / f"{root.kid}.pub", root.owner, root.public_key)
        return root

    def root(self) -> KeyPair:
        """The root private key.

        Raises:
            ConfigError: no root key here (run ``jetmesh keys init``).
        """
        if not self.has_root():
            raise ConfigError(f"no root key in {self.directory}; run `jetmesh keys init`")
        return KeyPair.load(self.root_key_path)

    def roots(self) -> dict[str, bytes]:
        """Trusted root public keys by key id.

        Raises:
            ConfigError: when no root public key is present.
        """
        roots: dict[str, bytes] = {}
        for path in sorted((self.directory / "roots").glob("*.pub")):
            _, public = load_public(path)
            roots[path.stem] = public
        if not roots:
            raise ConfigError(f"no trusted root in {self.directory / 'roots'}")
        return roots

    def issue(
        self,
        name: str,
        *,
        subjects: Subjects,
        ttl_s: float,
        scopes: Sequence[str] = (),
        ingress: bool = False,
        publish: Sequence[str] | None = None,
        subscribe: Sequence[str] | None = None,
    ) -> Identity:
        """Create (or keep) ``name``'s key and sign a fresh certificate for it."""
        check_token(name, "agent name")
        private_directory(self.directory)
        key_path = self.directory / f"{name}.key"
        key = KeyPair.load(key_path) if key_path.exists() else _new_key(name, key_path)
        default_pub, default_sub = default_permissions(subjects, name)
        cert = issue_certificate(
            self.root(),
            key,
            publish=publish if publish is not None else default_pub,
            subscribe=subscribe if subscribe is not None else default_sub,
            scopes=scopes,
            ingress=ingress,
            ttl_s=ttl_s,
        )
        write_atomically(self.directory / f"{name}.cert", cert + "\n")
        return Identity(key, cert)

    def rotate(self, name: str, *, ttl_s: float) -> tuple[Identity, Certificate]:
        """Give ``name`` a new key (a new key id) and a certificate with the same
        permissions, scopes and ingress flag as its current one; returns the new identity
        and the replaced certificate.

        The old certificate stays valid in the registry until it expires or is revoked, so
        replicas still running on the old key and replicas started on the new one serve
        side by side. The old certificate is kept as ``retired/<kid>.cert``; the old
        private key is removed from this directory.

        Raises:
            ConfigError: no current certificate for ``name``, or no root key here.
        """
        old = self.identity(name)
        private_directory(self.directory)
        # Read the old certificate whatever its age (at=0, expiry and not-before unchecked):
        # an expired one is rotated like any other.
        previous = verify_certificate(old.certificate, self.roots(), at=0.0, check_not_before=False)
        key = KeyPair.generate(name)
        cert = issue_certificate(
            self.root(),
            key,
            publish=previous.publish,
            subscribe=previous.subscribe,
            scopes=sorted(previous.scopes),
            ingress=previous.ingress,
            ttl_s=ttl_s,
        )
        write_atomically(
            self.directory / "retired" / f"{previous.kid}.cert", old.certificate + "\n"
        )
        key.save(self.directory / f"{name}.key")
        write_atomically(self.directory / f"{name}.cert", cert + "\n")
        return Identity(key, cert), previous

    def identity(self, name: str) -> Identity:
        """Load ``name``'s key and certificate.

        Raises:
            ConfigError: when either is missing.
        """
        cert_path = self.directory / f"{name}.cert"
        if not cert_path.exists():
            raise ConfigError(f"no certificate for {name!r} in {self.directory}")
        return Identity(KeyPair.load(self.directory / f"{name}.key"), cert_path.read_text().strip())

    def certificate(self, name: str) -> Certificate:
        """The verified certificate of ``name``."""
        return verify_certificate(self.identity(name).certificate, self.roots())

    def ensure(
        self,
        name: str,
        *,
        subjects: Subjects,
        ttl_s: float,
        ingress: bool = False,
        scopes: Sequence[str] = (),
    ) -> Identity:
        """Development convenience: load ``name``'s identity, issuing one when this store
        holds the root key and the certificate is missing, about to expire, or not for the
        key beside it. Replicas that issue at once share one key (the first saved).

        Raises:
            ConfigError: no usable identity and no root key to issue one.
        """
        try:
            ident = self.identity(name)
            cert = verify_certificate(ident.certificate, self.roots())
            if cert.kid != ident.key.kid or cert.public_key != ident.key.public_key:
                raise ConfigError(
                    f"the certificate of {name!r} in {self.directory} is for key {cert.kid}, "
                    f"not for the key beside it ({ident.key.kid}): issue one with "
                    f"`jetmesh keys issue {name}`"
                )
            left = cert.expires - time.time()
            if left > RENEW_BEFORE_S and cert.ingress == ingress:
                return ident
            if cert.ingress == ingress and not self.has_root():  # cannot renew it here
                log.warning(
                    "certificate of %r expires at %s (in %.0f s): issue a new one with "
                    "`jetmesh keys issue %s` and restart",
                    name,
                    _utc(cert.expires),
                    left,
                    name,
                )
                return ident
        except ConfigError:
            if not self.has_root():
                raise
        except ExpiredKey as exc:
            if not self.has_root():
                raise ConfigError(
                    f"certificate of {name!r} has expired or is not yet valid ({exc.detail}): "
                    f"issue a new one with `jetmesh keys issue {name}`"
                ) from None
        except Exception:
            if not self.has_root():
                raise ConfigError(f"certificate of {name!r} is not valid; reissue it") from None
        return self.issue(name, subjects=subjects, ttl_s=ttl_s, ingress=ingress, scopes=scopes)


def _new_key(name: str, path: Path) -> KeyPair:
    """A new key for ``name``, saved at ``path``; or, when another process saved one
    there first, that one. Replicas of a role that start at once on an empty store so
    share one key: each would otherwise sign a certificate for its own and leave the
    other's key beside it, and a replica started later would register that certificate
    under its key id, which every receiver then refuses (``unknown-key``)."""
    key = KeyPair.generate(name)
    if key.save(path, replace=False):
        return key
    return KeyPair.load(path)
