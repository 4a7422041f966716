"""The restart scenario: nats-server and redis-server killed and restarted under load.

``--replicas`` ``jetmesh run loadtest.tally:agent`` processes serve ``tally`` tasks (each
counts its own runs in its workflow's memory) while the sender publishes ``--tasks`` of
them, ``--in-flight`` at a time, each until the stream acknowledges it (sent again after an
error, same id: stored once). Every ``--interval`` seconds one server is SIGKILLed and
started again after ``--down`` seconds, nats-server and redis-server in turn, ``--restarts``
times. Then it counts: tasks acknowledged, tasks whose handler ran (lost: never ran;
duplicated: ran more than once), sends that had to be repeated, redeliveries and dead
letters.

    python -m loadtest.restarts [--tasks 20000] [--restarts 6] [--interval 3] [--down 1]

Bounded in count and time, loopback only; it starts its own servers and stops every
process it started. Exits 1 when a task was lost or ran twice.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import uvloop
from redis.asyncio import Redis

from jetmesh import KeyStore, MeshClient, MeshSettings, Subjects
from jetmesh.embedded import NatsServer, RedisServer, ServerProcess
from jetmesh.processes import AgentProcess
from loadtest.tally import TALLY, send_load, wait_all_ran

REPO_ROOT = Path(__file__).resolve().parents[1]


@dataclass
class RestartReport:
    tasks: int = 0
    acknowledged: int = 0
    resent: int = 0
    """Sends repeated because the server was away (the stream kept one of each)."""
    ran: int = 0
    lost: int = 0
    duplicated: int = 0
    redelivered: int = 0
    dead_letters: int = 0
    restarts: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.lost == 0 and self.duplicated == 0 and self.acknowledged == self.tasks

    def format(self) -> str:
        nats = self.restarts.count("nats")
        redis = self.restarts.count("redis")
        return "\n".join(
            [
                f"restarts: {len(self.restarts)} (nats-server {nats}, redis-server {redis}), "
                "each a SIGKILL",
                f"tasks sent: {self.tasks}, acknowledged by the stream: {self.acknowledged} "
                f"({self.resent} sends repeated while a server was away)",
                f"handlers ran: {self.ran}, lost: {self.lost}, ran twice or more: "
                f"{self.duplicated}",
                f"redelivered (the server's count since its last start): {self.redelivered}, "
                f"dead letters: {self.dead_letters}",
                f"wall time: {self.seconds:.1f} s, {self.tasks / self.seconds:,.0f} tasks/s",
                "OK" if self.ok else "FAIL",
            ]
        )


@contextlib.contextmanager
def servers(tmp: Path) -> Iterator[tuple[NatsServer, RedisServer]]:
    nats = NatsServer(data_dir=tmp / "nats")
    redis = RedisServer(data_dir=tmp / "redis")
    nats.start()
    try:
        redis.start()
        try:
            yield nats, redis
        finally:
            redis.stop()
    finally:
        nats.stop()


async def restart_loop(
    targets: list[tuple[str, ServerProcess]], args: argparse.Namespace, report: RestartReport
) -> None:
    for i in range(args.restarts):
        await asyncio.sleep(args.interval)
        name, server = targets[i % len(targets)]
        server.kill()
        report.restarts.append(name)
        await asyncio.sleep(args.down)
        await asyncio.to_thread(server.start)


async def scenario(args: argparse.Namespace) -> RestartReport:
    report = RestartReport(tasks=args.tasks)
    with tempfile.TemporaryDirectory(prefix="loadtest-restarts-") as tmp_dir:
        tmp = Path(tmp_dir)
        with servers(tmp) as (nats, redis_server):
            settings = MeshSettings(
                nats_url=nats.url, redis_url=redis_server.url, state_dir=tmp, ack_wait_s=5.0
            )
            keys = KeyStore(settings.resolved_keys_dir)
            keys.init_root()
            subjects = Subjects(settings.subject_prefix)
            keys.issue(TALLY, subjects=subjects, ttl_s=3600)
            ingress = keys.issue("loader", subjects=subjects, ttl_s=3600, ingress=True)
            procs = [
                AgentProcess(["loadtest.tally:agent"], settings, log_file=tmp / f"tally{i}.log")
                for i in range(args.replicas)
            ]
            for proc in procs:
                proc.start()
            try:
                async with MeshClient(settings, ingress, roots=keys.roots()) as client:
                    started = time.perf_counter()
                    chaos = asyncio.create_task(
                        restart_loop([("nats", nats), ("redis", redis_server)], args, report)
                    )
                    sent = await send_load(
                        client, client.mint_token("bench"), args.tasks, in_flight=args.in_flight
                    )
                    await chaos
                    report.acknowledged = len(sent)
                    report.resent = sum(attempts - 1 for _, attempts in sent)
                    redis = Redis.from_url(settings.redis_url)
                    try:
                        runs = await wait_all_ran(
                            redis, settings, [wf for wf, _ in sent], timeout=args.max_seconds
                        )
                    finally:
                        await redis.aclose()
                    report.seconds = time.perf_counter() - started
                    report.ran = sum(1 for r in runs if r)
                    report.lost = runs.count(0)
                    report.duplicated = sum(1 for r in runs if r > 1)
                    consumer = await client.js.consumer_info(settings.tasks_stream, TALLY)
                    report.redelivered = consumer.num_redelivered
                    dlq = await client.js.stream_info(settings.dlq_stream)
                    report.dead_letters = dlq.state.messages
            finally:
                for proc in procs:
                    proc.stop()
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m loadtest.restarts",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--tasks", type=int, default=20000)
    parser.add_argument("--in-flight", type=int, default=64)
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--restarts", type=int, default=6)
    parser.add_argument("--interval", type=float, default=3.0, help="seconds between restarts")
    parser.add_argument("--down", type=float, default=1.0, help="seconds a server stays down")
    parser.add_argument("--max-seconds", type=float, default=300.0)
    args = parser.parse_args(argv)
    try:
        report = uvloop.run(scenario(args))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        raise SystemExit(130) from None
    print(report.format())
    raise SystemExit(0 if report.ok else 1)


if __name__ == "__main__":
    main()
