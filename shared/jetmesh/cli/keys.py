"""``jetmesh keys``: the root key, agent certificates and caller tokens."""

from __future__ import annotations

import time

import typer

from ..identity.keystore import KeyStore
from ..identity.revocation import Revocation, revoke_key
from ..identity.tokens import mint_token
from ..subjects import Subjects
from .common import console, run_async, settings
from .ingress import admin_client

app = typer.Typer(
    help="Create the root key, issue, rotate and revoke agent certificates, mint caller tokens.",
    no_args_is_help=True,
)


def _utc(at: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at))


def _store() -> KeyStore:
    return KeyStore(settings().resolved_keys_dir)


@app.command("init")
def init() -> None:
    """Create the mesh root key (kept as it is when it exists)."""
    root = _store().init_root()
    console.print(f"root key {root.kid} in {settings().resolved_keys_dir}")


@app.command("issue")
def issue(
    name: str = typer.Argument(..., help="agent or ingress name"),
    scope: list[str] = typer.Option([], help="granted scope (repeatable)"),
    ingress: bool = typer.Option(False, help="may mint caller tokens"),
    ttl_days: float = typer.Option(30.0, help="certificate lifetime in days"),
) -> None:
    """Create NAME's key if needed and sign a fresh certificate for it with the root."""
    s = settings()
    ident = _store().issue(
        name,
        subjects=Subjects(s.subject_prefix),
        ttl_s=ttl_days * 86400,
        scopes=scope,
        ingress=ingress,
    )
    console.print(f"issued {ident.key.kid} (valid {ttl_days:g} days)")


@app.command("rotate")
def rotate(
    name: str = typer.Argument(..., help="agent or ingress name"),
    ttl_days: float = typer.Option(30.0, help="lifetime of the new certificate in days"),
) -> None:
    """Give NAME a new key and certificate (same permissions); the old key id stays valid
    until its certificate expires or it is revoked, so replicas restart one at a time."""
    ident, old = _store().rotate(name, ttl_s=ttl_days * 86400)
    console.print(f"issued {ident.key.kid} (valid {ttl_days:g} days)")
    console.print(f"previous {old.kid} stays valid until {_utc(old.expires)}")
    console.print("when every replica runs on the new key, revoke it:")
    console.print(f"  jetmesh keys revoke {old.kid}")


@app.command("revoke")
def revoke(
    kid: str = typer.Argument(..., help="the key id to revoke (jetmesh keys show NAME)"),
    reason: str = typer.Option("", help="why, kept with the revocation"),
) -> None:
    """Revoke a key id for good: every process refuses its messages and caller tokens
    within a second."""

    async def go() -> Revocation:
        async with admin_client(settings()) as mesh:
            return await revoke_key(mesh.registry, kid, reason=reason)

    record = run_async(go())
    why = f" ({record.reason})" if record.reason else ""
    console.print(f"revoked {record.kid} by {record.by} at {_utc(record.at)}{why}")


@app.command("show")
def show(name: str = typer.Argument(..., help="agent or ingress name")) -> None:
    """Print NAME's verified certificate."""
    cert = _store().certificate(name)
    left = (cert.expires - time.time()) / 86400
    console.print(f"name      {cert.name}\nkey id    {cert.kid}\nissuer    {cert.issuer}")
    console.print(f"ingress   {cert.ingress}\nscopes    {', '.join(sorted(cert.scopes)) or '-'}")
    console.print(f"publish   {', '.join(cert.publish)}\nsubscribe {', '.join(cert.subscribe)}")
    console.print(f"expires   in {left:.1f} days")


@app.command("token")
def token(
    subject: str = typer.Argument(..., help="the caller (user or system) the token speaks for"),
    tenant: str = typer.Option("default", help="caller tenant"),
    scope: list[str] = typer.Option([], help="caller scope (repeatable)"),
    issuer: str = typer.Option("cli", help="ingress identity that signs the token"),
    ttl: float = typer.Option(3600.0, help="lifetime in seconds"),
) -> None:
    """Mint a caller token (an EdDSA JWT) with an ingress key and print it."""
    s = settings()
    ident = _store().ensure(
        issuer, subjects=Subjects(s.subject_prefix), ttl_s=s.cert_ttl_s, ingress=True
    )
    print(mint_token(ident.key, subject=subject, tenant=tenant, scopes=scope, ttl_s=ttl))
