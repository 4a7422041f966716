"""The mesh a load run launches itself: embedded servers in a temporary state directory
(started as ``jetmesh up`` starts them) and a ``jetmesh run`` process per replica of each
role, stopped again when the run ends.

A scenario's ``[mesh]`` section (:class:`MeshSpec`) says what to launch: a mesh package
(as ``jetmesh launch`` takes it: its ``ROLES``, ``PROCESSES`` and ``POLICY``) or a list of
``jetmesh run`` command lines; with ``cluster = 3`` the embedded servers are a local
cluster as ``jetmesh up --cluster 3`` starts it, and ``env`` sets variables in every
launched process (``OTEL_*``, ...). :class:`Fleet` knows each process's role and pid, waits
until each is ready (its ``ready:`` line), kills one replica of a role (and starts another
when asked), and SIGKILLs, restarts or pauses a server. The faults of
:mod:`jetmesh.load.faults` strike through it.

Example:
    >>> async with launched(scenario.mesh, MeshSettings(), log_dir) as fleet:  # doctest: +SKIP
    ...     fleet.pids()
    {'echo#1': 4242, 'echo#2': 4243, 'nats': 4240, 'redis': 4241}
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import os
import random
import signal
import time
from collections.abc import AsyncIterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .._exceptions import ConfigError
from ..embedded import (
    EmbeddedStack,
    free_cluster_ports,
    free_port,
    pid_alive,
    read_pid_file,
    wait_gone,
)
from ..embedded.ports import host_port
from ..embedded.scratch import scratch_dir
from ..embedded.stack import SENTINEL_PORT_OFFSET
from ..memory.redis_url import DEFAULT_SERVICE, SENTINEL_SCHEME
from ..policy.model import mesh_policy
from ..processes import AgentProcess, all_threads_stopped
from ..provision import bring_up
from ..settings import MeshSettings
from ..toolgate.secrets_file import write_secrets

__all__ = ["Fleet", "MeshSpec", "launched"]

READY_TIMEOUT_S = 60.0
"""How long a process may take to print its ``ready:`` line."""

STOP_TIMEOUT_S = 15.0
"""How long a process may take to drain after SIGTERM before it is SIGKILLed."""


class MeshSpec(BaseModel):
    """A scenario's ``[mesh]``: what the run starts before sending and stops after."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    launch: str | None = None
    """A mesh package (``services.support``): a process per role and per other process."""
    processes: list[list[str]] = Field(default_factory=list)
    """Command lines instead, each ``["jetmesh", "run", "<module>:<agent>", ...]``; the
    role is the first target's module's last name (``jetmesh.load.echo:agent``: ``echo``)."""
    replicas: int = Field(default=1, ge=1, le=64)
    """Processes per role."""
    embedded: bool = False
    """Start nats-server and redis-server in a temporary state directory (as ``jetmesh
    up``), and use them; else the processes join the servers of the settings."""
    policy: Literal["open", "enforce"] = "open"
    """With ``embedded``: ``open`` servers (no users), or users from the mesh's policy."""
    cluster: int = Field(default=1, ge=1, le=5)
    """With ``embedded``: this many nats-servers (a JetStream cluster, streams at
    ``min(cluster, 3)`` replicas), and a Redis primary and replica watched by three
    Sentinels, the step ledger's writes on the replica before a step goes on: the servers
    and settings of ``jetmesh up --cluster N``. 1: one of each."""
    env: dict[str, str] = Field(default_factory=dict)
    """Environment variables set in every launched process, over this one's
    (``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``, ...)."""
    settings: dict[str, str | int | float | bool | list[float] | list[str]] = Field(
        default_factory=dict
    )
    """Mesh settings for this run's servers and processes (``[mesh.settings]``, the
    names of :class:`~jetmesh.settings.MeshSettings`: ``ack_wait_s = 2``,
    ``max_deliver = 4``, ``retry_backoff_s = [0.2, 0.5]``), over the environment's."""

    @model_validator(mode="after")
    def _one_source(self) -> MeshSpec:
        if (self.launch is None) == (not self.processes):
            raise ValueError("give exactly one of launch or processes")
        for argv in self.processes:
            if argv[:2] != ["jetmesh", "run"] or len(argv) < 3:
                raise ValueError(f"{argv}: a process is ['jetmesh', 'run', '<module>:<agent>']")
        if self.cluster > 1 and not self.embedded:
            raise ValueError("cluster needs embedded = true (the run starts the cluster)")
        return self

    def roles(self) -> list[str]:
        """The roles (and other processes) this mesh launches, in order.

        Raises:
            ConfigError: the package cannot be imported or declares no ``ROLES``.
        """
        return list(_package(self).targets)


@dataclass
class _Replica:
    name: str
    """``<role>#<n>``."""
    role: str
    proc: AgentProcess


def _role_of(target: str) -> str:
    return target.split(":", 1)[0].rsplit(".", 1)[-1]


@dataclass
class _Package:
    targets: dict[str, list[str]]
    policy: Path | None = None
    tool_credentials: tuple[str, ...] = ()


def _package(spec: MeshSpec) -> _Package:
    """The roles' targets (role -> ``jetmesh run`` targets), and the package's policy and
    tools needing a credential."""
    if spec.launch is None:
        return _Package({_role_of(argv[2]): argv[2:] for argv in spec.processes})
    try:
        package = importlib.import_module(spec.launch)
    except ImportError as exc:
        raise ConfigError(f"mesh.launch: cannot import {spec.launch}: {exc}") from None
    roles = getattr(package, "ROLES", None)
    if not roles:
        raise ConfigError(f"mesh.launch: {spec.launch} declares no ROLES")
    targets = {role: [f"{spec.launch}.{role}:agent"] for role in roles}
    targets |= {name: [t] for name, t in dict(getattr(package, "PROCESSES", {})).items()}
    policy = getattr(package, "POLICY", None)
    return _Package(
        targets,
        Path(policy) if policy is not None else None,
        tuple(getattr(package, "TOOL_CREDENTIALS", ())),
    )


@dataclass
class Fleet:
    """The launched processes and, with ``embedded``, the servers."""

    settings: MeshSettings
    """The settings the processes run on (and the load door should use)."""
    log_dir: Path
    targets: dict[str, list[str]]
    embedded: bool = False
    policy_file: Path | None = None
    enforce: bool = False
    cluster: int = 1
    """nats-servers started (``[mesh] cluster``)."""
    env: dict[str, str] = field(default_factory=dict)
    """Variables set in every process started (``[mesh] env``)."""
    live: list[_Replica] = field(default_factory=list)
    started: list[AgentProcess] = field(default_factory=list)
    server_pids: set[int] = field(default_factory=set)
    """Every server pid seen over the run."""
    _count: int = 0

    @property
    def roles(self) -> list[str]:
        """The roles (and other processes) launched."""
        return list(self.targets)

    def pids(self) -> dict[str, int]:
        """Each live process (``role#n``) and server (``nats``, ``redis``) and its pid."""
        out = {r.name: r.proc.pid for r in self.live if r.proc.pid is not None}
        for name in ("nats", "redis") if self.embedded else ():
            pid = self.server_pid(name)
            if pid is not None:
                out[name] = pid
        return out

    def all_pids(self) -> list[int]:
        """Every pid this fleet ever started (processes and servers)."""
        return [p.pid for p in self.started if p.pid is not None] + sorted(self.server_pids)

    async def start(self, role: str, count: int = 1) -> list[str]:
        """Start ``count`` processes of ``role`` and wait until each is ready.

        Raises:
            ConfigError: one did not start (its log's tail says why).
        """
        news = []
        for _ in range(count):
            self._count += 1
            name = f"{role}#{self._count}"
            proc = AgentProcess(
                self.targets[role],
                self.settings,
                log_file=self.log_dir / f"{name}.log",
                env=self.env,
            )
            self.started.append(proc)
            news.append(_Replica(name, role, proc))
        await asyncio.gather(*(asyncio.to_thread(r.proc.start, READY_TIMEOUT_S) for r in news))
        self.live.extend(news)
        return [r.name for r in news]

    async def kill(
        self, role: str, *, restart: bool = False, pick: random.Random | None = None
    ) -> str:
        """SIGKILL a live process of ``role``: the oldest, or with ``pick`` one drawn from
        it; with ``restart`` start another and wait until it is ready. Returns what
        happened, in words.

        Raises:
            ConfigError: no live process of ``role``.
        """
        replicas = [r for r in self.live if r.role == role]
        if not replicas:
            raise ConfigError(f"no live process of role {role!r} (roles: {self.roles})")
        replica = pick.choice(replicas) if pick is not None else replicas[0]
        self.live.remove(replica)
        pid = replica.proc.pid
        await asyncio.to_thread(replica.proc.kill)
        replica.proc.stop()  # already dead: closes its pipe
        said = f"{replica.name} pid {pid} killed"
        if restart:
            started = time.monotonic()
            (name,) = await self.start(role)
            said += f"; {name} ready after {time.monotonic() - started:.1f} s"
        return said

    def server_pid(self, name: str) -> int | None:
        """The pid of embedded server ``name`` (``nats``, ``redis``), if it runs."""
        pid = read_pid_file(EmbeddedStack(self.settings).pid_file(name))
        return pid if pid is not None and pid_alive(pid) else None

    async def up(self) -> None:
        """Start the embedded servers that are not running, as ``jetmesh up`` does (open,
        or with the users of the policy), then provision."""
        policy = mesh_policy(self.policy_file) if self.enforce else None
        done = await bring_up(self.settings, policy)
        self.server_pids |= {s.pid for s in done.status.servers if s.pid is not None}

    async def restart_server(self, name: str, down_s: float) -> str:
        """SIGKILL server ``name``, wait ``down_s``, start it again (:meth:`up`).

        Raises:
            ConfigError: it does not run (or the run has no embedded servers, or a cluster).
        """
        pid = self._server_or_fail(name)
        os.kill(pid, signal.SIGKILL)
        await asyncio.to_thread(wait_gone, [pid])
        await asyncio.sleep(down_s)
        started = time.monotonic()
        await self.up()
        return (
            f"pid {pid} killed, down {down_s:g} s, pid {self.server_pid(name)} "
            f"up after {time.monotonic() - started:.1f} s"
        )

    async def pause(self, target: str, seconds: float) -> str:
        """SIGSTOP ``target`` (a server's name, a process's ``role#n`` or a role: its
        oldest live process) for ``seconds``, then SIGCONT.

        Raises:
            ConfigError: no such server or live process (servers of a cluster: refused).
        """
        if target in ("nats", "redis"):
            pid, name = self._server_or_fail(target), target
        else:
            replica = next((r for r in self.live if target in (r.name, r.role)), None)
            if replica is None or replica.proc.pid is None:
                raise ConfigError(f"no live process {target!r} to pause")
            pid, name = replica.proc.pid, replica.name
        os.kill(pid, signal.SIGSTOP)
        try:
            # The pause counts from when every thread has stopped, not from the signal.
            await asyncio.to_thread(all_threads_stopped, pid, 1.0)
            await asyncio.sleep(seconds)
        finally:
            os.kill(pid, signal.SIGCONT)
        return f"{name} pid {pid} stopped {seconds:g} s, then continued"

    def _server_or_fail(self, name: str) -> int:
        if not self.embedded:
            raise ConfigError(f"{name}: the run started no servers (mesh.embedded = false)")
        if self.cluster > 1:
            raise ConfigError(
                f"{name}: the run started a cluster (mesh.cluster = {self.cluster}); "
                "faults on its servers are not supported"
            )
        pid = self.server_pid(name)
        if pid is None:
            raise ConfigError(f"{name} is not running")
        return pid

    def stop(self) -> None:
        """Stop every process (SIGTERM, drain; SIGKILL after a timeout) together, then
        the embedded servers; idempotent."""
        live, self.live = self.live, []
        for replica in live:  # one paused when the run ended could not drain
            if replica.proc.pid is not None and replica.proc.proc is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(replica.proc.pid, signal.SIGCONT)
        with ThreadPoolExecutor(max_workers=max(len(live), 1)) as pool:
            list(pool.map(lambda r: r.proc.stop(timeout=STOP_TIMEOUT_S), live))
        for proc in self.started:  # any left by a failed start or a kill
            proc.kill()
            proc.stop()
        if self.embedded:
            EmbeddedStack(self.settings).down()
            for pid in self.server_pids:  # a server SIGSTOPped when the run ended
                if pid_alive(pid):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGCONT)
                        os.kill(pid, signal.SIGKILL)
            wait_gone(sorted(self.server_pids))


def _with_overrides(base: MeshSettings, overrides: Mapping[str, object]) -> MeshSettings:
    """``base`` with ``[mesh.settings]`` over it, validated as settings are.

    Raises:
        ConfigError: a name that is not a setting, or a value it refuses.
    """
    if not overrides:
        return base
    unknown = sorted(set(overrides) - set(MeshSettings.model_fields))
    if unknown:
        raise ConfigError(f"mesh.settings: not settings: {', '.join(unknown)}")
    try:
        return MeshSettings.model_validate(base.model_dump() | dict(overrides))
    except ValidationError as exc:
        raise ConfigError(f"mesh.settings: {exc.errors()[0]['msg']}") from None


def _embedded_settings(base: MeshSettings, state_dir: Path, spec: MeshSpec) -> MeshSettings:
    """``base`` on servers of the run's own, on free loopback ports under ``state_dir``."""
    update: dict[str, object] = {"state_dir": state_dir, "keys_dir": None, "policy_file": None}
    if spec.cluster == 1:
        update["nats_url"] = f"nats://127.0.0.1:{free_port()}"
        update["redis_url"] = f"redis://127.0.0.1:{free_port()}/0"
        return base.model_copy(update=update)
    nats, redis = free_cluster_ports(spec.cluster)
    update |= _cluster_update(nats, redis, spec.cluster)
    for name in ("stream_replicas", "redis_wait_replicas"):  # [mesh.settings] keeps its own
        if name in spec.settings:
            update.pop(name)
    return base.model_copy(update=update)


def _cluster_update(nats_port: int, redis_port: int, nodes: int) -> dict[str, object]:
    """The settings of ``jetmesh up --cluster nodes`` (its ``cluster.env``) for a cluster
    whose first nats-server listens on ``nats_port`` and Redis primary on ``redis_port``."""
    host = "127.0.0.1"
    sentinels = ",".join(host_port(host, redis_port + SENTINEL_PORT_OFFSET + i) for i in range(3))
    return {
        "nats_url": ",".join(f"nats://{host_port(host, nats_port + i)}" for i in range(nodes)),
        "redis_url": f"{SENTINEL_SCHEME}://{sentinels}/{DEFAULT_SERVICE}/0",
        "stream_replicas": min(nodes, 3),
        "redis_wait_replicas": 1,
    }


@contextlib.asynccontextmanager
async def launched(
    spec: MeshSpec | None, settings: MeshSettings, log_dir: Path | None = None
) -> AsyncIterator[Fleet | None]:
    """Launch ``spec``'s mesh for the block, and stop all of it after (None: nothing).

    Args:
        spec: The scenario's ``[mesh]``; None yields None.
        settings: The mesh settings; with ``embedded``, the servers get fresh loopback
            ports and a temporary state directory instead (with ``cluster``, the URLs
            and replicas of ``jetmesh up --cluster``).
        log_dir: Where each process's log goes (default: the state directory, or a
            temporary folder).

    Raises:
        ConfigError: the package cannot be read, a process did not start, or a server did
            not come up (whatever started is stopped again).
    """
    if spec is None:
        yield None
        return
    package = _package(spec)
    settings = _with_overrides(settings, spec.settings)
    with scratch_dir("jetmesh-load-") as tmp:
        s = _embedded_settings(settings, tmp, spec) if spec.embedded else settings
        if package.policy is not None and s.policy_file is None and spec.policy == "enforce":
            s = s.model_copy(update={"policy_file": package.policy})
        if package.tool_credentials and s.tool_secrets_file is None:
            secrets = tmp / "secrets" / "tools.toml"
            write_secrets(secrets, package.tool_credentials)
            s = s.model_copy(update={"tool_secrets_file": secrets})
        fleet = Fleet(
            settings=s,
            log_dir=log_dir or tmp / "logs",
            targets=package.targets,
            embedded=spec.embedded,
            policy_file=s.policy_file,
            enforce=spec.policy == "enforce",
            cluster=spec.cluster,
            env=dict(spec.env),
        )
        try:
            if spec.embedded:
                await fleet.up()
            await asyncio.gather(*(fleet.start(role, spec.replicas) for role in fleet.roles))
            yield fleet
        finally:
            await asyncio.to_thread(fleet.stop)
