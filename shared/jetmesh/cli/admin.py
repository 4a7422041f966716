"""``jetmesh admin``: the admin step on servers that enforce the policy."""

from __future__ import annotations

from pathlib import Path

import typer

from ..policy import PolicyError, mesh_policy
from ..provision import Provisioned, provision
from ..settings import MeshSettings
from .common import console, err_console, run_async, settings
from .render import markup

app = typer.Typer(
    help="The admin step: streams, consumers, the registry and certificates.",
    no_args_is_help=True,
)


def print_provisioned(done: Provisioned) -> None:
    """One line per kind of thing made sure of."""
    roles = sorted({consumer for _, consumer in done.consumers})
    console.print(f"admin  streams  {', '.join(done.streams)}", highlight=False, soft_wrap=True)
    console.print(
        f"admin  consumers {len(done.consumers)} (tasks and advisories of {', '.join(roles)})",
        highlight=False,
        soft_wrap=True,
    )
    for r in done.redelivery:
        console.print(
            f"admin  delivery AckWait {r.ack_wait_s:g} s (in-progress acks every "
            f"{r.ack_wait_s / 3:.3g} s), max_deliver {r.max_deliver}, "
            f"max_ack_pending {r.max_ack_pending}",
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


def provision_policy(s: MeshSettings, file: Path | None) -> Provisioned:
    """Load the policy (FILE, ``settings.policy_file`` or the library's own roles) and provision it;
    a policy that does not validate is printed and exits 1."""
    try:
        policy = mesh_policy(file if file is not None else s.policy_file)
    except PolicyError as exc:
        for problem in exc.problems:
            err_console.print(
                f"[red]error:[/red] {markup(problem)}", highlight=False, soft_wrap=True
            )
        raise typer.Exit(1) from None
    return run_async(provision(s, policy))


@app.command("provision")
def provision_command(
    file: Path | None = typer.Argument(
        None, help="the policy (TOML); default JETMESH_POLICY_FILE, else the library's roles alone"
    ),
) -> None:
    """As the NATS admin user, create the streams, every role's consumers (with their filter
    subjects) and the registry, and issue each role's certificate from the policy into it.
    Safe to run again. `jetmesh up` runs it."""
    print_provisioned(provision_policy(settings(), file))
