"""``jetmesh keys``: the root key, agent certificates and caller tokens."""

from __future__ import annotations

import time

import typer

from ..addresses import Subjects
from ..identity.keystore import KeyStore
from ..identity.revocation import Revocation, key_owner, revoke_key
from ..identity.tokens import mint_token
from ..logins import admin_login
from ..policy import Policy, PolicyError, mesh_policy
from ..settings import MeshSettings
from ..shutout import ShutOut, planned_rotation, shut_out
from .common import console, err_console, run_async, settings
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
    console.print("when every replica runs on the new key, revoke it (an old key: the role keeps")
    console.print("its server users, which the new replicas use):")
    console.print(f"  jetmesh keys revoke {old.kid}")


@app.command("revoke")
def revoke(
    kid: str = typer.Argument(..., help="the key id to revoke (jetmesh keys show NAME)"),
    reason: str = typer.Option("", help="why, kept with the revocation"),
    shut: bool | None = typer.Option(
        None,
        "--shut-out/--keep-server-users",
        help="take the role's NATS and Redis users away, or keep them; default: shut out "
        "unless KID is an old key of the role (the keys directory holds a newer one)",
        show_default=False,
    ),
    registry_only: bool = typer.Option(
        False, "--registry-only", help="only record the revocation; leave the servers alone"
    ),
) -> None:
    """Revoke a key id for good: every process refuses its messages and caller tokens
    within a second. The role that owns it is also shut out of both servers (its Redis
    user off, a new nkey reloaded into nats-server); this returns once both refuse the old
    secrets. Exits 1 when a server could not be changed from here, saying what to do."""
    s = settings()
    open_servers = admin_login(s).user is None
    policy = None if registry_only or open_servers else _policy(s)

    async def go() -> tuple[Revocation, str | None]:
        async with admin_client(s) as mesh:
            record = await revoke_key(mesh.registry, kid, reason=reason)
            if policy is None:
                return record, None
            return record, await key_owner(mesh.registry, kid, _store().roots())

    record, owner = run_async(go())
    why = f" ({record.reason})" if record.reason else ""
    console.print(f"revoked {record.kid} by {record.by} at {_utc(record.at)}{why}")
    if open_servers and not registry_only:
        console.print("kept   servers without users (jetmesh up --open): nothing to shut out")
    if policy is None:
        return
    role = _role_to_shut_out(policy, kid, owner, shut)
    if role is not None:
        _print_shut_out(run_async(shut_out(s, policy, role)))


def _policy(s: MeshSettings) -> Policy:
    try:
        return mesh_policy(s.policy_file)
    except PolicyError as exc:
        for problem in exc.problems:
            err_console.print(f"[red]error:[/red] {problem}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None


def _role_to_shut_out(policy: Policy, kid: str, owner: str | None, shut: bool | None) -> str | None:
    """The role to shut out (``owner``), or None, saying why not; exits 1 when it cannot
    tell whose key ``kid`` is."""
    if owner is None:
        err_console.print(
            f"[red]error:[/red] no certificate of {kid} in the registry: whose server users "
            "to take away is unknown; run `jetmesh admin provision`, then again, or add "
            "--registry-only",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(1)
    if owner not in policy.roles:
        console.print(f"kept   {owner} is not a role of the policy: it has no server users")
        return None
    if shut is False:
        console.print(f"kept   {owner}'s server users (--keep-server-users)", highlight=False)
        return None
    if shut is None and planned_rotation(_store(), owner, kid):
        console.print(
            f"kept   {owner}'s server users: {kid} is an old key of {owner} (the keys "
            "directory holds a newer one); add --shut-out to take them away too",
            highlight=False,
            soft_wrap=True,
        )
        return None
    return owner


def _print_shut_out(done: ShutOut) -> None:
    console.print(f"shut   {done.redis}", highlight=False, soft_wrap=True)
    console.print(f"shut   {done.nats}", highlight=False, soft_wrap=True)
    if done.complete:
        console.print(
            f"shut   {done.role}'s old secrets refused by both servers (took "
            f"{done.seconds:.2f} s); to let it back in: jetmesh keys rotate {done.role}, "
            "then jetmesh admin provision (or jetmesh up)",
            highlight=False,
            soft_wrap=True,
        )
        return
    for step in done.pending:
        err_console.print(f"[red]todo:[/red] {step}", highlight=False, soft_wrap=True)
    raise typer.Exit(1)


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
