"""``jetmesh policy``: check a policy file, and write the server configuration it implies."""

from __future__ import annotations

from pathlib import Path

import typer

from ..policy import PolicyError, all_permissions, mesh_policy
from ..policy.model import Policy
from ..policy.servers import ServerAuth
from .common import console, err_console, settings
from .render import markup

app = typer.Typer(
    help="Check the policy file; generate NATS users and Redis ACLs from it.",
    no_args_is_help=True,
)


def _load(file: Path | None) -> Policy:
    try:
        return mesh_policy(file if file is not None else settings().policy_file)
    except PolicyError as exc:
        for problem in exc.problems:
            err_console.print(
                f"[red]error:[/red] {markup(problem)}", highlight=False, soft_wrap=True
            )
        raise typer.Exit(1) from None


def _items(values: frozenset[str]) -> str:
    return ", ".join(sorted(values)) if values else "-"


@app.command("check")
def check(
    file: Path | None = typer.Argument(
        None, help="the policy (TOML); default JETMESH_POLICY_FILE, else the library's roles alone"
    ),
) -> None:
    """Validate FILE and print each role with its scopes, tools and derived permissions."""
    policy = _load(file)
    s = settings()
    console.print(f"max_delegation_depth {policy.max_delegation_depth}", highlight=False)
    for perms in all_permissions(policy, s):
        grant = policy.roles[perms.name]
        kind = "ingress" if perms.ingress else "agent"
        console.print(f"\n[bold]{perms.name}[/bold] ({kind})", highlight=False)
        console.print(f"  calls      {_items(grant.calls)}", highlight=False)
        console.print(f"  scopes     {_items(grant.scopes)}", highlight=False)
        tools = [
            f"{name}{' (irreversible)' if tool.irreversible else ''}"
            + (f" needs {tool.scope}" if tool.scope else "")
            for name, tool in sorted(grant.tools.items())
        ]
        console.print(f"  tools      {', '.join(tools) or '-'}", highlight=False)
        if perms.consume:
            console.print(f"  consumes   {perms.consume}", highlight=False)
        for subject in perms.publish:
            console.print(f"  publish    {subject}", highlight=False)
        for subject in perms.subscribe:
            console.print(f"  subscribe  {subject}", highlight=False)
        for pattern in perms.redis_keys:
            console.print(f"  redis      {pattern}", highlight=False)
    console.print(f"\nok: {len(policy.roles)} roles", highlight=False)


@app.command("servers")
def servers(
    file: Path | None = typer.Argument(
        None, help="the policy (TOML); default JETMESH_POLICY_FILE, else the library's roles alone"
    ),
    out: Path = typer.Option(..., help="directory for nats-users.conf and redis-users.acl"),
) -> None:
    """Write the nats-server users (``include`` it in the server's config) and the Redis
    ACL file (``aclfile``) for FILE; nkey seeds and passwords go to the keys directory."""
    policy = _load(file)
    auth = ServerAuth.generate(policy, settings())
    nats_conf = auth.write_nats_config(out / "nats-users.conf")
    acl = auth.write_redis_acl_file(out / "redis-users.acl")
    console.print(f"nats   {nats_conf} ({len(auth.nats_users)} users)", highlight=False)
    console.print(f"redis  {acl} ({len(auth.redis_users)} users)", highlight=False)
