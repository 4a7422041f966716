"""Revocation of keys by key id, recorded in the registry bucket.

A revoked key id is a key ``revoked.<kid>`` in the registry (``MESH_KEYS``, next to the
certificates, which are keyed by the bare key id; a key id never contains a ``.``), whose
value is a JSON record::

    {"kid": "billing-3fa2c19e07b4d5a1", "at": 1764000000.0, "by": "ops", "reason": "leaked"}

Revocation is permanent: a revoked key is never valid again (issue a new key instead, with
``jetmesh keys rotate``). Receivers look the record up per key id and keep the answer for a
short time (see :class:`jetmesh.identity.trust.TrustStore`). The role that owns the key is
the owner named by its certificate in the same bucket (:func:`key_owner`); ``jetmesh keys
revoke`` also shuts that role out of the servers (:mod:`jetmesh.shutout`).
"""

from __future__ import annotations

import getpass
import re
import time
from collections.abc import Mapping

import msgspec
from nats.js.errors import KeyDeletedError, KeyNotFoundError
from nats.js.kv import KeyValue

from .._exceptions import ConfigError, RejectedMessage
from .certificates import verify_certificate

REVOKED_PREFIX = "revoked."
KID_RE = re.compile(r"^[A-Za-z0-9_-]{1,128}$")


class Revocation(msgspec.Struct, frozen=True, kw_only=True):
    """Who revoked a key id, when, and why."""

    kid: str
    at: float
    by: str
    reason: str = ""


def revocation_key(kid: str) -> str:
    """The registry key recording that ``kid`` is revoked."""
    return f"{REVOKED_PREFIX}{kid}"


def decode_revocation(kid: str, data: bytes) -> Revocation:
    """Read a revocation record; an unreadable one still revokes ``kid`` (at time 0)."""
    try:
        return msgspec.json.decode(data, type=Revocation)
    except msgspec.DecodeError:
        return Revocation(kid=kid, at=0.0, by="?", reason="unreadable revocation record")


async def revoke_key(
    registry: KeyValue, kid: str, *, reason: str = "", by: str | None = None
) -> Revocation:
    """Record in the registry that ``kid`` is revoked; returns the record.

    Revoking a key id twice keeps the first record. A key id that has no certificate (yet)
    may be revoked too: its certificate will never be accepted.

    Raises:
        ConfigError: ``kid`` is not a key id.
    """
    if not KID_RE.match(kid):
        raise ConfigError(f"{kid!r} is not a key id (like billing-3fa2c19e07b4d5a1)")
    existing = await lookup_revocation(registry, kid)
    if existing is not None:
        return existing
    record = Revocation(kid=kid, at=time.time(), by=by or _operator(), reason=reason)
    await registry.put(revocation_key(kid), msgspec.json.encode(record))
    return record


async def lookup_revocation(registry: KeyValue, kid: str) -> Revocation | None:
    """The revocation record of ``kid``, or None when it is not revoked.

    Raises:
        Exception: when the registry cannot be read (not the same as "not revoked").
    """
    try:
        entry = await registry.get(revocation_key(kid))
    except (KeyNotFoundError, KeyDeletedError):
        return None
    if not entry.value:
        return None
    return decode_revocation(kid, entry.value)


async def refuse_if_revoked(registry: KeyValue, name: str, kid: str) -> None:
    """Refuse to start as ``name`` with a revoked key.

    Raises:
        ConfigError: ``kid`` was revoked; the message says how to get a new key.
    """
    revoked = await lookup_revocation(registry, kid)
    if revoked is not None:
        raise ConfigError(
            f"the key of {name!r} ({revoked.kid}) was revoked by {revoked.by}"
            f"{': ' + revoked.reason if revoked.reason else ''}; issue a new one with "
            f"`jetmesh keys rotate {name}`"
        )


async def key_owner(registry: KeyValue, kid: str, roots: Mapping[str, bytes]) -> str | None:
    """The owner (a role) named by ``kid``'s certificate in the registry, verified against
    ``roots`` whatever its age; None when the registry holds no certificate for ``kid``.

    Raises:
        ConfigError: the certificate there is not signed by a trusted root, or malformed.
    """
    try:
        entry = await registry.get(kid)
    except (KeyNotFoundError, KeyDeletedError):
        return None
    if not entry.value:
        return None
    try:
        cert = verify_certificate(entry.value.decode(), roots, at=0.0, check_not_before=False)
    except (RejectedMessage, UnicodeDecodeError) as exc:
        raise ConfigError(f"the registry's certificate of {kid} does not verify: {exc}") from exc
    if cert.kid != kid:
        raise ConfigError(f"the registry's certificate under {kid} is for key {cert.kid}")
    return cert.name


def _operator() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no login name (a container without a passwd entry)
        return "unknown"
