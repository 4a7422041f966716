"""The processes of a support-mesh chaos run: the servers as ``jetmesh up`` runs them, and a
``jetmesh run`` process per replica of each role and of the tool gateway.

:class:`Servers` starts nats-server and redis-server by running ``jetmesh up`` (the real
command, on the run's settings: users from the policy, then the admin step), SIGKILLs one
by the pid ``jetmesh up`` wrote, and restarts it by running ``jetmesh up`` again, which
starts what is not running and reuses the rest. :class:`Fleet` keeps the agent processes
and replaces a killed one.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sys
from collections.abc import Collection
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from jetmesh import MeshSettings
from jetmesh.embedded import EmbeddedStack, pid_alive, read_pid_file, wait_gone
from jetmesh.load import admin_jetstream, wait_settled
from jetmesh.processes import AgentProcess, all_threads_stopped, settings_env

UP_TIMEOUT_S = 90.0
SETTLE_ACK_WAITS = 3
"""How long :meth:`Fleet.settle` waits for the tasks in flight, in AckWaits: a redelivery,
and a second one should the first replica also be killed."""


class Servers:
    """The servers of a run (one of each, or a cluster), under ``settings.state_dir``."""

    def __init__(self, settings: MeshSettings, log_dir: Path) -> None:
        self.settings = settings
        self.log = log_dir / "jetmesh-up.log"
        self.stack = EmbeddedStack(settings)
        self.pids: set[int] = set()
        """Every server pid seen over the run."""
        self.kills: list[str] = []

    async def up(self) -> None:
        """Run ``jetmesh up`` on the run's settings and wait for it.

        Raises:
            RuntimeError: it failed or took longer than a minute and a half.
        """
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as log:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "jetmesh.cli",
                "up",
                stdout=log,
                stderr=log,
                env={**settings_env(self.settings), "NO_COLOR": "1", "COLUMNS": "200"},
            )
            try:
                code = await asyncio.wait_for(proc.wait(), UP_TIMEOUT_S)
            except TimeoutError:
                proc.kill()
                await proc.wait()
                raise RuntimeError(f"jetmesh up took over {UP_TIMEOUT_S:g} s") from None
        if code != 0:
            tail = self.log.read_text(errors="replace")[-1500:]
            raise RuntimeError(f"jetmesh up exited {code}:\n{tail}")
        for server in self.stack.status().servers:
            if server.pid is not None:
                self.pids.add(server.pid)

    def pid(self, name: str) -> int | None:
        return read_pid_file(self.stack.pid_file(name))

    async def kill(self, name: str) -> None:
        """SIGKILL server ``name`` and wait until it is gone."""
        pid = self.pid(name)
        if pid is None or not pid_alive(pid):
            raise RuntimeError(f"{name} is not running (pid file {self.stack.pid_file(name)})")
        os.kill(pid, signal.SIGKILL)
        if await asyncio.to_thread(wait_gone, [pid]):
            raise RuntimeError(f"{name} (pid {pid}) outlived SIGKILL")
        self.kills.append(name)

    def signal(self, name: str, signum: signal.Signals) -> None:
        """Send ``signum`` to server ``name`` (SIGSTOP freezes it, SIGCONT lets it go on).
        After SIGSTOP, returns once every thread of the server is stopped: the signal is
        delivered to each thread as it next runs, and a thread still running could handle
        one more message.

        Raises:
            RuntimeError: it is not running.
        """
        pid = self.pid(name)
        if pid is None or not pid_alive(pid):
            raise RuntimeError(f"{name} is not running (pid file {self.stack.pid_file(name)})")
        os.kill(pid, signum)
        if signum == signal.SIGSTOP and not all_threads_stopped(pid, timeout=5.0):
            raise RuntimeError(f"{name} (pid {pid}) is not stopped 5 s after SIGSTOP")

    @property
    def names(self) -> list[str]:
        """The servers of the run (``nats``, ``redis``; a cluster's ``nats-1``, ...)."""
        return [server.name for server in self.stack.status().servers]

    def down(self) -> None:
        """Stop every server (``jetmesh down``); idempotent."""
        self.stack.down()

    @property
    def running(self) -> list[int]:
        """Server pids of the run still alive."""
        return [pid for pid in self.pids if pid_alive(pid)]


class Fleet:
    """The agent processes of a run: the live ones per role, every one ever started."""

    def __init__(
        self, settings: MeshSettings, targets: dict[str, str], replicas: int, log_dir: Path
    ) -> None:
        self.settings = settings
        self.targets = targets
        """Role -> ``module:agent`` target."""
        self.replicas = replicas
        self.log_dir = log_dir
        self.live: list[tuple[str, AgentProcess]] = []
        self.started: list[AgentProcess] = []
        self.kills: list[str] = []

    async def start(self, role: str, count: int = 1) -> None:
        procs = [
            AgentProcess(
                [self.targets[role]],
                self.settings,
                log_file=self.log_dir / f"{role}-{len(self.started) + i}.log",
            )
            for i in range(count)
        ]
        self.started.extend(procs)
        await asyncio.gather(*(asyncio.to_thread(p.start, 60.0) for p in procs))
        self.live.extend((role, p) for p in procs)

    async def start_all(self) -> None:
        await asyncio.gather(*(self.start(role, self.replicas) for role in self.targets))

    async def kill_one(self, rng: random.Random, roles: Collection[str]) -> str:
        """SIGKILL a random live process of ``roles``, start a replacement of its role;
        returns the role."""
        among = [i for i, (role, _) in enumerate(self.live) if role in roles]
        role, proc = self.live.pop(among[rng.randrange(len(among))])
        await asyncio.to_thread(proc.kill)
        proc.stop()  # (already dead: closes its pipe)
        self.kills.append(role)
        await self.start(role)
        return role

    async def settle(self) -> int:
        """Wait until no role has a task left to deliver or to acknowledge, at most
        :data:`SETTLE_ACK_WAITS` AckWaits; returns the tasks still in flight. Before
        :meth:`stop`: a task whose process was killed after it replied comes back only
        after AckWait, and stopping the fleet first would leave it half done."""
        settle_s = SETTLE_ACK_WAITS * self.settings.ack_wait_s
        async with admin_jetstream(self.settings, max_reconnect_attempts=10) as js:
            return await wait_settled(
                js, self.settings.tasks_stream, self.targets, settle_s=settle_s
            )

    def stop(self) -> None:
        """Stop every live process (SIGTERM, drain; SIGKILL after a timeout), together."""
        live, self.live = self.live, []
        with ThreadPoolExecutor(max_workers=max(len(live), 1)) as pool:
            list(pool.map(lambda entry: entry[1].stop(timeout=25.0), live))
        for proc in self.started:  # any left by a failed start
            proc.kill()
            proc.stop()

    @property
    def running(self) -> list[AgentProcess]:
        """Started processes that have not exited."""
        return [p for p in self.started if p.proc is not None and p.proc.poll() is None]
