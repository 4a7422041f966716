"""``jetmesh launch <package>``: every role of a mesh as its own process (or the roles
packed into ``--processes N``), until SIGINT or SIGTERM; then each drains and stops.

A mesh is a package that names its roles; the command reads, from the package::

    ROLES = ("router", "worker")                   # modules of the package with an ``agent``
    PROCESSES = {"toolgate": "mymesh.toolgate:agent"}   # optional: more processes by name
    TOOL_CREDENTIALS = ("refund",)                 # optional: tools needing a credential
    POLICY = Path(__file__).with_name("policy.toml")    # optional: the mesh's policy file

Each role runs as ``jetmesh run <package>.<role>:agent`` on this process's ``JETMESH_*``
settings. Without ``JETMESH_POLICY_FILE``, the processes get the mesh's ``POLICY``; without
``JETMESH_TOOL_SECRETS_FILE``, a mesh with ``TOOL_CREDENTIALS`` gets
``<state_dir>/secrets/tools.toml``, written with a random stand-in credential per tool when
missing (set the variable to a file of real credentials for real systems). With
``--health-port-base N`` the process started i-th (from 0, in the order printed) serves its
health endpoints on port ``N + i``. A mesh's ``__main__`` is ``launch("<package>")``.

With ``--processes N`` the roles are dealt into N processes (:func:`jetmesh.processes.pack`;
a process named by its roles, ``triage+technical+kb``), each role still its own replica,
identity and server logins; the other processes (a tool gateway) stay alone. On a small
machine that costs less CPU (one process per core, fewer wake-ups, fuller batches), at a
price: roles in one process share its memory, so one compromised role's code holds the
others' keys too.
"""

from __future__ import annotations

import importlib
import signal
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import typer

from ..processes import AgentProcess, pack
from ..settings import MeshSettings
from ..toolgate.secrets_file import write_secrets
from .common import err_console, settings


@dataclass(frozen=True)
class MeshPackage:
    """What a mesh's package declares: its roles, other processes, tools needing a
    credential and its policy file."""

    name: str
    roles: tuple[str, ...]
    processes: Mapping[str, str] = field(default_factory=dict)
    tool_credentials: tuple[str, ...] = ()
    policy: Path | None = None

    @classmethod
    def of(cls, name: str) -> MeshPackage:
        """Read the package ``name`` (importing it).

        Raises:
            ImportError: no such package.
            TypeError: it declares no ``ROLES``.
        """
        package = importlib.import_module(name)
        roles = getattr(package, "ROLES", None)
        if not roles:
            raise TypeError(f"{name} declares no ROLES (its roles' module names)")
        policy = getattr(package, "POLICY", None)
        return cls(
            name=name,
            roles=tuple(roles),
            processes=dict(getattr(package, "PROCESSES", {})),
            tool_credentials=tuple(getattr(package, "TOOL_CREDENTIALS", ())),
            policy=Path(policy) if policy is not None else None,
        )

    @property
    def targets(self) -> dict[str, str]:
        """Each process's name and ``module:agent`` target: the roles, then the others."""
        return {
            **{role: f"{self.name}.{role}:agent" for role in self.roles},
            **self.processes,
        }

    def packed(self, processes: int | None = None) -> dict[str, list[str]]:
        """Each process's name and targets: a process per role (``processes`` None), or the
        roles dealt into ``processes`` (:func:`~jetmesh.processes.pack`, each named
        ``role+role``); then the other processes, each alone.

        Raises:
            ValueError: ``processes`` below 1.
        """
        targets = self.targets
        if processes is None:
            return {name: [target] for name, target in targets.items()}
        groups = {
            "+".join(roles): [targets[role] for role in roles]
            for roles in pack(self.roles, processes)
        }
        return groups | {name: [target] for name, target in self.processes.items()}

    def settings_for(self, settings: MeshSettings) -> MeshSettings:
        """``settings`` with the mesh's policy file and stand-in tool credentials where
        they name none (writing the stand-ins when missing)."""
        update: dict[str, object] = {}
        if settings.policy_file is None and self.policy is not None:
            update["policy_file"] = self.policy
        if settings.tool_secrets_file is None and self.tool_credentials:
            secrets = settings.state_dir / "secrets" / "tools.toml"
            if not secrets.exists():
                write_secrets(secrets, self.tool_credentials)
            update["tool_secrets_file"] = secrets
        return settings.model_copy(update=update) if update else settings


def launch(
    package: str,
    *,
    mesh_settings: MeshSettings | None = None,
    health_port_base: int | None = None,
    processes: int | None = None,
) -> None:
    """Start a process per role of ``package`` (and one per other process it declares) on
    ``mesh_settings`` (default: this process's), wait for a stop signal, stop them all. Where
    ``jetmesh up`` generated the roles' users, each role connects as itself.

    Args:
        health_port_base: the i-th process started (from 0) serves its health endpoints on
            this port plus i (printed beside it); None: as ``mesh_settings`` say.
        processes: the roles dealt into this many processes (:meth:`MeshPackage.packed`);
            None: a process per role.
    """
    mesh = MeshPackage.of(package)
    s = mesh.settings_for(mesh_settings or MeshSettings())
    started: list[AgentProcess] = []
    stop = {"now": False}

    def on_signal(signum: int, _frame: object) -> None:
        stop["now"] = True

    previous = {n: signal.signal(n, on_signal) for n in (signal.SIGINT, signal.SIGTERM)}
    try:
        policy = s.policy_file or "the library's roles alone"
        print(f"{'policy':<13} {policy}", flush=True)
        if s.tool_secrets_file is not None:
            print(f"{'credentials':<13} {s.tool_secrets_file}", flush=True)
        for i, (name, targets) in enumerate(mesh.packed(processes).items()):
            log = s.state_dir / "logs" / f"{name}.log"
            own = s
            if health_port_base is not None:
                own = s.model_copy(update={"health_port": health_port_base + i})
            proc = AgentProcess(targets, own, log_file=log).start()
            started.append(proc)
            health = f"  health http://{own.health_host}:{own.health_port}"
            print(
                f"{name:<13} pid {proc.pid}  log {log}"
                + (health if own.health_port is not None else ""),
                flush=True,
            )
        print(f"{package}: {len(started)} processes running; Ctrl-C stops them", flush=True)
        while not stop["now"]:
            signal.pause()
    finally:
        for proc in reversed(started):
            proc.stop()
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def launch_command(
    package: str = typer.Argument(..., help="the mesh's package, e.g. services.support"),
    health_port_base: int | None = typer.Option(
        None,
        "--health-port-base",
        min=1,
        max=65535,
        help="serve each process's /healthz and /readyz: the i-th process (from 0, as "
        "printed) on this port plus i",
    ),
    processes: int | None = typer.Option(
        None,
        "--processes",
        min=1,
        help="deal the roles into this many processes (e.g. one per core: less CPU on a "
        "small machine; roles in one process share its memory and keys); default: a "
        "process per role. Other processes (a tool gateway) stay alone",
    ),
) -> None:
    """Run every role of a mesh (its package's ROLES, and its other PROCESSES) as its own
    process, or the roles packed into --processes N, until SIGTERM or Ctrl-C, then drain
    them."""
    sys.path.insert(0, str(Path.cwd()))
    try:
        mesh = MeshPackage.of(package)
    except (ImportError, TypeError) as exc:
        err_console.print(f"[red]error:[/red] {exc}", soft_wrap=True)
        raise typer.Exit(2) from None
    count = len(mesh.packed(processes))
    if health_port_base is not None and health_port_base + count - 1 > 65535:
        err_console.print(
            f"[red]error:[/red] --health-port-base {health_port_base} leaves no room for "
            f"{count} processes' ports (up to 65535)",
            soft_wrap=True,
        )
        raise typer.Exit(2)
    launch(
        mesh.name,
        mesh_settings=settings(),
        health_port_base=health_port_base,
        processes=processes,
    )
