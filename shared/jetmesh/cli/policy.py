"""``jetmesh policy``: check a policy file, and write the server configuration it implies."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from ..policy import PolicyError, all_permissions, mesh_policy
from ..policy.budgets import Budget
from ..policy.derive import RolePermissions
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


def summary_table(policy: Policy, permissions: list[RolePermissions]) -> Table:
    """One row per role: its kind, the roles it calls, its scopes, its tools and how many
    Redis key patterns it may use."""
    table = Table("role", "kind", "calls", "scopes", "tools", "redis patterns")
    for perms in permissions:
        grant = policy.roles[perms.name]
        table.add_row(
            perms.name,
            "ingress" if perms.ingress else "agent",
            _items(grant.calls),
            _items(grant.scopes),
            _items(frozenset(grant.tools)),
            str(len(perms.redis_keys)),
        )
    return table


def print_detail(policy: Policy, perms: RolePermissions) -> None:
    """A role's grant and the server permissions derived from it, a line each."""
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
    for pattern in perms.redis_reads:
        console.print(f"  redis      {pattern} (read only)", highlight=False)


def _budgets(policy: Policy) -> list[tuple[str, str, Budget]]:
    return [
        *(("caller", name, b) for name, b in sorted(policy.budgets.caller.items())),
        *(("tenant", name, b) for name, b in sorted(policy.budgets.tenant.items())),
    ]


def budget_text(budget: Budget) -> str:
    """A budget for people: ``100000 tokens, $5 per day`` or ``2000 tokens per 60 s``."""
    limits = []
    if budget.tokens is not None:
        limits.append(f"{budget.tokens} tokens")
    if budget.cost_usd is not None:
        limits.append(f"${budget.cost_usd:g}")
    per = budget.per if isinstance(budget.per, str) else f"{budget.per} s"
    return f"{', '.join(limits)} per {per}"


@app.command("check")
def check(
    file: Path | None = typer.Argument(
        None, help="the policy (TOML); default JETMESH_POLICY_FILE, else the library's roles alone"
    ),
    detail: bool = typer.Option(
        False,
        "--detail",
        help="after the summary, each role's tools and the NATS subjects and Redis key "
        "patterns derived from it",
    ),
) -> None:
    """Validate FILE and print a summary of its roles: what each calls, its scopes, its tools
    and its number of Redis key patterns (--detail: every derived permission too)."""
    policy = _load(file)
    permissions = all_permissions(policy, settings())
    console.print(f"max_delegation_depth {policy.max_delegation_depth}", highlight=False)
    console.print(summary_table(policy, permissions))
    for scope, name, budget in _budgets(policy):
        console.print(f"budget {scope} {name}: {budget_text(budget)}", highlight=False)
    if detail:
        for perms in permissions:
            print_detail(policy, perms)
        console.print()
    hint = "" if detail else " (--detail: each role's subjects and Redis patterns)"
    console.print(f"ok: {len(policy.roles)} roles{hint}", highlight=False)


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
