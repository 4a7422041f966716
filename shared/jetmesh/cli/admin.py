"""``jetmesh admin``: the admin step on servers that enforce the policy."""

from __future__ import annotations

from pathlib import Path

import typer

from ..deploy_secrets import write_deploy_secrets
from ..policy import Policy, PolicyError, mesh_policy
from ..provision import Provisioned, provision
from ..settings import MeshSettings
from .common import console, err_console, run_async, settings
from .render import markup

app = typer.Typer(
    help="The admin step: streams, consumers, the registry and certificates.",
    no_args_is_help=True,
)


def print_provisioned(done: Provisioned, s: MeshSettings | None = None) -> None:
    """One line per kind of thing made sure of, and one per role's task consumer as the
    server holds it (with ``s``, the replicas' delays before a failed task comes back)."""
    roles = sorted({consumer for _, consumer in done.consumers})
    console.print(f"admin  streams  {', '.join(done.streams)}", highlight=False, soft_wrap=True)
    console.print(
        f"admin  consumers {len(done.consumers)} (tasks and advisories of {', '.join(roles)})",
        highlight=False,
        soft_wrap=True,
    )
    if done.task_consumers:
        retries = ", ".join(f"{b:g}" for b in s.retry_backoff_s) if s else ""
        console.print(
            "admin  delivery as nats-server holds each role's task consumer (a changed "
            "ack_wait_s, max_deliver or max_ack_pending applies when this step runs again: "
            "`jetmesh admin provision`)"
            + (f"; a failed task is sent back after {retries} s (retry_backoff_s)" if s else ""),
            highlight=False,
            soft_wrap=True,
        )
    width = max((len(c.role) for c in done.task_consumers), default=0)
    for consumer in done.task_consumers:
        console.print(
            f"admin    {consumer.role:<{width}}  {consumer.describe()}",
            highlight=False,
            soft_wrap=True,
        )
    certificates = ", ".join(f"{role} {kid}" for role, kid in done.certificates)
    console.print(
        f"admin  registry {done.registry}: certificates {certificates}",
        highlight=False,
        soft_wrap=True,
    )
    if done.readmitted:
        console.print(
            f"admin  users    Redis users on again (shut out, now a key not revoked): "
            f"{', '.join(done.readmitted)}",
            highlight=False,
            soft_wrap=True,
        )


def policy_or_exit(file: Path | None) -> Policy:
    """The policy of ``file`` (None: the library's own roles), laid over the library's;
    one that does not validate is printed, problem by problem, and the command exits 1."""
    try:
        return mesh_policy(file)
    except PolicyError as exc:
        for problem in exc.problems:
            err_console.print(
                f"[red]error:[/red] {markup(problem)}", highlight=False, soft_wrap=True
            )
        raise typer.Exit(1) from None


def provision_policy(s: MeshSettings, file: Path | None) -> Provisioned:
    """Load the policy (FILE, ``settings.policy_file`` or the library's own roles) and provision it;
    a policy that does not validate is printed and exits 1."""
    policy = policy_or_exit(file if file is not None else s.policy_file)
    return run_async(provision(s, policy))


@app.command("provision")
def provision_command(
    file: Path | None = typer.Argument(
        None, help="the policy (TOML); default JETMESH_POLICY_FILE, else the library's roles alone"
    ),
) -> None:
    """As the NATS admin user, create the streams, every role's consumers (with their filter
    subjects) and the registry, and issue each role's certificate from the policy into it;
    print each role's task consumer as the server holds it. Run it again after changing
    ack_wait_s, max_deliver or max_ack_pending: replicas do not change their consumers.
    Safe to run again. `jetmesh up` runs it."""
    s = settings()
    print_provisioned(provision_policy(s, file), s)


@app.command("secrets")
def secrets_command(
    out: Path = typer.Option(
        ..., "--out", metavar="DIR", help="the directory to write them in (made 0700)"
    ),
    file: Path | None = typer.Option(
        None,
        "--policy",
        metavar="FILE",
        help="the policy (TOML); default JETMESH_POLICY_FILE, else the library's roles alone",
    ),
    tools: list[str] = typer.Option(
        [],
        "--tool",
        metavar="TOOL",
        help="a tool needing a credential: a stand-in goes to DIR/tools.toml when that file "
        "is missing (repeatable; put real credentials there)",
    ),
) -> None:
    """Write every secret of a deployment from the policy, with no server running: a keys
    directory per role (DIR/<role>: its key and certificate, the roots, its NATS seed and
    Redis password, nothing else), the admin step's (DIR/admin: the root key and every
    role's), and the servers' users (DIR/servers/nats-users.conf, redis-users.acl). Safe to
    run again: keys, seeds and passwords are kept, certificates renewed near expiry."""
    s = settings()
    policy = policy_or_exit(file if file is not None else s.policy_file)
    written = write_deploy_secrets(out, policy, s, tools=tools)
    renewed = ", ".join(written.renewed) or "none (all kept)"
    console.print(f"secrets  {out}: {len(written.roles)} roles and admin", highlight=False)
    console.print(f"secrets  certificates issued: {renewed}", highlight=False, soft_wrap=True)
    console.print(
        f"secrets  servers: {written.nats_users.name}, {written.redis_acl.name}", highlight=False
    )
    if written.tools_file is not None:
        console.print(f"secrets  tool credentials: {written.tools_file}", highlight=False)
