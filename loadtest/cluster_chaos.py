"""The cluster chaos run: refund tickets through the support mesh on a local cluster while
its nodes are killed, frozen and failed over.

The servers are ``jetmesh up --cluster 3``'s (the support policy): three nats-servers in one
JetStream cluster with every stream and the registry at 3 replicas, a Redis primary and
replica watched by three Sentinels; every support role and the tool gateway run as
``--replicas`` ``jetmesh run`` processes given the three NATS URLs and the Sentinels' URL.
The ``cli`` ingress keeps ``--in-flight`` refund tickets going (as ``make chaos-support``:
each for its own order, one in ``--over-every`` over the approval limit, approved by a
person) while, in turn:

1. a NATS node is SIGKILLed every 5-10 s (``--kill-every``), ``--nats-kills`` times, every
   ``--leader-every``-th one the leader of MESH_TASKS, each started again by ``jetmesh up``
   after 1-3 s; after ``--redis-kills`` of them, evenly spread, the Redis primary is
   SIGKILLed instead: a writer counting its acknowledged INCRs runs through the failover,
   and the count it was told is compared with what the new primary has (Redis replicates
   asynchronously: an acknowledged write can be lost, and the report says how many were);
2. two of the three nodes are SIGSTOPped for ``--freeze`` seconds: a probe connected to the
   third publishes to an R3 stream meanwhile, and no publish may be acknowledged without a
   quorum; after SIGCONT, how long until one is.

Then the load stops and the audit of ``make chaos-support`` runs (every ticket answered, each
order refunded exactly once, every tool run once per step, no dead letter of a started task,
no hop left open, every event verified); once every stream has its 3 replicas current again
the servers stop, and each node's copy of every stream is read from its files and compared
message by message (loadtest/stream_files.py).

    python -m loadtest.cluster_chaos [--nats-kills 30] [--kill-every 5 10] [--redis-kills 2]
                                     [--freeze 8] [--replicas 2] [--in-flight 8] [--seed N]

Bounded in count and time, loopback only. Exits 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import signal
import sys
import time
from pathlib import Path

import uvloop
from nats.js.api import StreamConfig
from redis.exceptions import RedisError

from jetmesh import MeshClient, MeshSettings
from jetmesh.bus import connect
from jetmesh.cli import admin_client, cli_client, cluster_settings
from jetmesh.embedded import free_cluster_ports, scratch_dir, wait_gone
from jetmesh.logins import admin_login
from jetmesh.memory import sentinel_view
from jetmesh.memory.connection import connect as connect_redis
from jetmesh.processes import interruptible
from loadtest.chaos_support import (
    TARGETS,
    SupportChaosReport,
    TicketLoad,
    run_settings,
)
from loadtest.cluster_report import NODES, ClusterChaosConfig, ClusterChaosReport, Failover
from loadtest.stream_files import compare_replicas, latest_by_subject, read_stream
from loadtest.support_audit import audit_run
from loadtest.support_fleet import Fleet, Servers

PROBE_STREAM = "CHAOS_PROBE"
PROBE_SUBJECT = "chaos.probe"


class _Chaos:
    """The kills, freezes and failovers, on the run's servers."""

    def __init__(
        self,
        config: ClusterChaosConfig,
        settings: MeshSettings,
        servers: Servers,
        report: ClusterChaosReport,
        rng: random.Random,
    ) -> None:
        self.config = config
        self.settings = settings
        self.servers = servers
        self.report = report
        self.rng = rng
        self.nodes = [n for n in servers.names if n.startswith("nats-")]

    async def run(self) -> None:
        c = self.config
        every = c.nats_kills // c.redis_kills if c.redis_kills else 0
        for k in range(1, c.nats_kills + 1):
            await asyncio.sleep(self.rng.uniform(*c.kill_every_s))
            await self._kill_node(leader=k % c.leader_every == 0)
            if every and k % every == 0 and len(self.report.failovers) < c.redis_kills:
                await asyncio.sleep(self.rng.uniform(*c.kill_every_s))
                await self._fail_over()
        if c.freeze_s:
            await asyncio.sleep(self.rng.uniform(*c.kill_every_s))
            await self._freeze()

    async def _kill_node(self, *, leader: bool) -> None:
        node = await self._leader() if leader else None
        if node is None:
            node = self.rng.choice(self.nodes)
        else:
            self.report.leader_kills += 1
        await self.servers.kill(node)
        self.report.nats_kills[node] += 1
        await asyncio.sleep(self.rng.uniform(*self.config.down_s))
        await self.servers.up()

    async def _leader(self) -> str | None:
        """The node leading MESH_TASKS now (None: between leaders)."""
        s = self.settings
        try:
            nc = await connect(s.nats_url, "chaos/leader", **admin_login(s).nats_options())
        except Exception:
            return None
        try:
            info = await nc.jetstream().stream_info(s.tasks_stream)
            return info.cluster.leader if info.cluster is not None else None
        except Exception:
            return None
        finally:
            await nc.close()

    async def _primary(self) -> tuple[str, int] | None:
        """The primary as the Sentinels name it (None: none answered)."""
        try:
            primary, _ = await sentinel_view(
                self.settings.redis_url, **admin_login(self.settings).redis_options()
            )
        except RedisError:
            return None
        return primary

    async def _fail_over(self) -> None:
        """SIGKILL the Redis primary under a counting writer; wait for the new primary."""
        failover = Failover()
        old = await self._primary()
        assert old is not None, "no primary known to the Sentinels"
        (node,) = [
            s.name
            for s in self.servers.stack.status().servers
            if s.name.startswith("redis-") and s.url.endswith(f":{old[1]}")
        ]
        stop = asyncio.Event()
        key = f"chaos:writes:{len(self.report.failovers)}"
        writer = asyncio.create_task(self._write(key, failover, stop))
        await asyncio.sleep(1.0)
        killed = time.monotonic()
        await self.servers.kill(node)
        while await self._primary() in (None, old) and time.monotonic() - killed < 60:  # noqa: ASYNC110
            await asyncio.sleep(0.2)  # (polling the Sentinels: there is no event to wait on)
        failover.seconds = time.monotonic() - killed
        await asyncio.sleep(2.0)
        stop.set()
        await writer
        failover.kept = await self._read(key)
        self.report.failovers.append(failover)
        await self.servers.up()  # the old primary, back as a replica

    async def _write(self, key: str, failover: Failover, stop: asyncio.Event) -> None:
        redis = connect_redis(
            self.settings.redis_url, retry_s=30.0, **admin_login(self.settings).redis_options()
        )
        try:
            while not stop.is_set():
                try:
                    await redis.incr(key)
                except Exception:
                    await asyncio.sleep(0.1)
                    continue
                failover.acked += 1
        finally:
            await redis.aclose()

    async def _read(self, key: str) -> int:
        redis = connect_redis(
            self.settings.redis_url, retry_s=30.0, **admin_login(self.settings).redis_options()
        )
        try:
            return int(await redis.get(key) or 0)
        finally:
            await redis.aclose()

    async def _freeze(self) -> None:
        """SIGSTOP two nodes; probe the third; SIGCONT; wait for an ack."""
        frozen = self.rng.sample(self.nodes, 2)
        (alive,) = [n for n in self.nodes if n not in frozen]
        url = next(s.url for s in self.servers.stack.status().servers if s.name == alive)
        s = self.settings
        nc = await connect(url, "chaos/probe", **admin_login(s).nats_options())
        js = nc.jetstream()
        try:
            await js.publish(PROBE_SUBJECT, b"before", timeout=10.0)
            for name in frozen:
                self.servers.signal(name, signal.SIGSTOP)
            self.report.frozen = frozen
            try:
                end = time.monotonic() + self.config.freeze_s
                while time.monotonic() < end:
                    self.report.probes_frozen += 1
                    try:
                        await js.publish(PROBE_SUBJECT, b"frozen", timeout=1.0)
                        self.report.acked_frozen += 1
                    except Exception:
                        pass
            finally:
                for name in frozen:
                    self.servers.signal(name, signal.SIGCONT)
            resumed = time.monotonic()
            while time.monotonic() - resumed < 60:
                try:
                    await js.publish(PROBE_SUBJECT, b"after", timeout=2.0)
                except Exception:
                    continue
                self.report.recovered_s = time.monotonic() - resumed
                break
        finally:
            await nc.close()


async def _probe_stream(settings: MeshSettings) -> None:
    nc = await connect(settings.nats_url, "chaos/setup", **admin_login(settings).nats_options())
    try:
        await nc.jetstream().add_stream(
            StreamConfig(name=PROBE_STREAM, subjects=[PROBE_SUBJECT], num_replicas=NODES)
        )
    finally:
        await nc.close()


async def _await_current(settings: MeshSettings, streams: list[str], timeout: float) -> None:
    """Until every stream has a leader and both other replicas current (or ``timeout``)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            nc = await connect(
                settings.nats_url, "chaos/heal", **admin_login(settings).nats_options()
            )
            try:
                js = nc.jetstream()
                infos = [await js.stream_info(name) for name in streams]
            finally:
                await nc.close()
            if all(
                i.cluster is not None
                and i.cluster.leader
                and len(i.cluster.replicas or []) == NODES - 1
                and all(r.current for r in i.cluster.replicas or [])
                for i in infos
            ):
                return
        except Exception:
            pass
        await asyncio.sleep(0.5)


async def _load(
    config: ClusterChaosConfig,
    client: MeshClient,
    tickets: TicketLoad,
    stop: asyncio.Event,
) -> None:
    """Keep ``in_flight`` tickets going until ``stop`` (or ``max_tickets``)."""
    c = config.tickets()

    async def worker() -> None:
        while not stop.is_set() and tickets.next < c.tickets:
            i, tickets.next = tickets.next, tickets.next + 1
            await tickets.send(client, c.ticket(tickets.report.run, i))

    await asyncio.gather(*(worker() for _ in range(config.in_flight)))


def cluster_run_settings(home: Path) -> MeshSettings:
    """The chaos-support run's settings (support policy, offline model, the gateway's
    secrets) as ``jetmesh up --cluster 3`` runs them, on free ports."""
    nats, redis = free_cluster_ports(NODES)
    single = run_settings(home).model_copy(
        update={
            "nats_url": f"nats://127.0.0.1:{nats}",
            "redis_url": f"redis://127.0.0.1:{redis}/0",
        }
    )
    return cluster_settings(single, NODES)


async def run_cluster_chaos(config: ClusterChaosConfig, home: Path) -> ClusterChaosReport:
    """Run the scenario under ``home`` (see the module's docstring). Every process started
    is stopped before this returns, also when it raises."""
    began = time.perf_counter()
    seed = config.seed if config.seed is not None else random.randrange(2**32)
    tickets = SupportChaosReport(run=f"CC{seed % 100000:05d}", tickets=0, seed=seed)
    report = ClusterChaosReport(tickets)
    settings = await asyncio.to_thread(cluster_run_settings, home)
    tickets.settings = settings
    servers = Servers(settings, home / "logs")
    fleet = Fleet(settings, TARGETS, config.replicas, home / "logs")
    streams = [
        settings.tasks_stream,
        settings.events_stream,
        settings.dlq_stream,
        f"{settings.tasks_stream}_ADVISORIES",
        f"KV_{settings.registry_bucket}",
        PROBE_STREAM,
    ]
    try:
        await servers.up()
        await _probe_stream(settings)
        await fleet.start_all()
        load = TicketLoad(config.tickets(), tickets, 0)
        stop = asyncio.Event()
        async with cli_client(settings) as client:
            started = time.perf_counter()
            chaos = _Chaos(config, settings, servers, report, random.Random(seed))
            try:
                async with asyncio.timeout(config.max_seconds):
                    sending = asyncio.create_task(_load(config, client, load, stop))
                    try:
                        await chaos.run()
                    finally:
                        stop.set()
                    await sending
            except TimeoutError:
                tickets.failed["unfinished"] += (
                    tickets.sent - tickets.completed - sum(tickets.failed.values())
                )
            tickets.load_seconds = time.perf_counter() - started
        tickets.tickets = tickets.sent
        tickets.unsettled = await fleet.settle()
        await asyncio.to_thread(fleet.stop)
        async with admin_client(settings) as admin:
            tickets.audit = await audit_run(admin, settings, tickets.workflows, tickets.orders)
        await _await_current(settings, streams, timeout=60.0)
        await asyncio.to_thread(servers.down)
        copies = {
            name: {n: read_stream(home / n / "jetstream", name) for n in chaos.nodes}
            for name in streams
        }
        registry = f"KV_{settings.registry_bucket}"  # one revision per key is kept
        copies[registry] = {n: latest_by_subject(c) for n, c in copies[registry].items()}
        for name, by_node in copies.items():
            report.compared[name] = [len(by_node[n]) for n in sorted(by_node)]
            report.differences += [f"{name}: {p}" for p in compare_replicas(by_node)]
    finally:
        await asyncio.to_thread(fleet.stop)
        await asyncio.to_thread(servers.down)
        tickets.processes = len(fleet.started)
        agents = [p.pid for p in fleet.running if p.pid is not None]
        left = await asyncio.to_thread(wait_gone, agents + list(servers.pids))
        tickets.left_running = len(left)
        tickets.seconds = time.perf_counter() - began
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m loadtest.cluster_chaos",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--nats-kills", type=int, default=30)
    parser.add_argument("--kill-every", type=float, nargs=2, default=(5.0, 10.0))
    parser.add_argument("--leader-every", type=int, default=3)
    parser.add_argument("--redis-kills", type=int, default=2)
    parser.add_argument("--freeze", type=float, default=8.0, help="seconds two nodes stay stopped")
    parser.add_argument("--in-flight", type=int, default=8)
    parser.add_argument("--replicas", type=int, default=2, help="processes per role")
    parser.add_argument("--max-seconds", type=float, default=1500.0)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--keep", type=Path, default=None, help="keep state and logs here")
    args = parser.parse_args(argv)
    config = ClusterChaosConfig(
        nats_kills=args.nats_kills,
        kill_every_s=tuple(args.kill_every),
        leader_every=args.leader_every,
        redis_kills=args.redis_kills,
        freeze_s=args.freeze,
        in_flight=args.in_flight,
        replicas=args.replicas,
        max_seconds=args.max_seconds,
        seed=args.seed,
    )
    os.chdir(Path(__file__).resolve().parents[1])  # agent processes import services
    kept = contextlib.nullcontext(args.keep) if args.keep is not None else None
    with interruptible(), kept or scratch_dir("jetmesh-cluster-chaos-") as home:
        report = uvloop.run(run_cluster_chaos(config, home))
    print(report.format(config))
    sys.exit(1 if report.problems(config) else 0)


if __name__ == "__main__":
    main()
