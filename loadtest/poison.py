"""The poison scenario: how much a task that fails on every delivery slows the others.

One ``sorter`` agent process (ledger on, as deployed) serves normal items at a fixed number
in flight. The baseline run measures their latency alone; the poison run measures it again
while a poison item (its handler raises every time) is injected every ``--every-ms``: each
is retried with backoff until ``max_deliver`` and dead-lettered. The report gives p50/p99 of
both runs, their ratio (the target is a p99 no more than 2x the baseline), and checks that
every poison item reached the dead-letter stream.

    python -m loadtest.poison [--requests 6000] [--in-flight 32] [--every-ms 50]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import tempfile
import time
from pathlib import Path

import msgspec
import uvloop

from jetmesh import Agent, Context, KeyStore, MeshClient, MeshSettings, Subjects
from jetmesh.envelope import new_id
from jetmesh.ingress import ingress_task
from jetmesh.processes import AgentProcess
from loadtest.driver import drive
from loadtest.servers import nats_server, redis_server
from loadtest.stats import RunResult, format_table

SORTER = "sorter"
P99_LIMIT = 2.0


class Item(msgspec.Struct, frozen=True):
    __mesh_type__ = "bench.Item/1"

    n: int
    poison: bool = False


agent = Agent(SORTER, description="fails on poison items, returns the others")


@agent.handler
async def sort(item: Item, ctx: Context) -> Item:
    if item.poison:
        raise ValueError(f"item {item.n} cannot be sorted")
    return item


async def scenario(args: argparse.Namespace) -> tuple[list[RunResult], int, int]:
    with (
        nats_server() as url,
        redis_server() as redis_url,
        tempfile.TemporaryDirectory(prefix="loadtest-poison-") as tmp,
    ):
        settings = MeshSettings(
            nats_url=url,
            redis_url=redis_url,
            state_dir=Path(tmp),
            max_deliver=args.max_deliver,
            retry_backoff_s=(0.2, 0.5, 1.0),
        )
        keys = KeyStore(settings.resolved_keys_dir)
        keys.init_root()
        subjects = Subjects(settings.subject_prefix)
        keys.issue(SORTER, subjects=subjects, ttl_s=3600)
        loader = keys.issue("loader", subjects=subjects, ttl_s=3600, ingress=True)
        process = AgentProcess(
            ["loadtest.poison:agent"], settings, log_file=Path(tmp) / "sorter.log"
        ).start()
        try:
            async with MeshClient(settings, loader, roots=keys.roots()) as mesh:
                token = mesh.mint_token("bench", tenant="bench")

                async def send(_: bytes) -> Item:
                    return await mesh.call(
                        SORTER, Item(0), returns=Item, workflow=new_id(), caller=token,
                        step=SORTER, timeout=10.0,
                    )  # fmt: skip

                async def poison(n: int) -> None:
                    task = await ingress_task(mesh, SORTER, Item(n, poison=True), token=token)
                    await mesh.send_task(task)

                common = {
                    "payload": b"",
                    "in_flight": args.in_flight,
                    "requests": args.requests,
                    "max_seconds": 60.0,
                }
                baseline = await drive(send, warmup=1000, name="baseline", **common)  # type: ignore[arg-type]
                injected = 0

                async def inject() -> None:
                    nonlocal injected
                    while True:
                        await poison(injected)
                        injected += 1
                        await asyncio.sleep(args.every_ms / 1000)

                injector = asyncio.create_task(inject())
                try:
                    poisoned = await drive(send, warmup=0, name="with poison", **common)  # type: ignore[arg-type]
                finally:
                    injector.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await injector
                dead = await wait_dead_letters(mesh, settings, injected, timeout=30.0)
        finally:
            process.stop()
    return [baseline, poisoned], injected, dead


async def wait_dead_letters(
    mesh: MeshClient, settings: MeshSettings, expected: int, *, timeout: float
) -> int:
    """Dead letters in the stream once ``expected`` are there (or ``timeout`` passes)."""
    give_up = time.monotonic() + timeout
    while True:
        count = (await mesh.js.stream_info(settings.dlq_stream)).state.messages
        if count >= expected or time.monotonic() > give_up:
            return count
        await asyncio.sleep(0.25)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m loadtest.poison",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--requests", type=int, default=6000, help="normal items per run")
    parser.add_argument("--in-flight", type=int, default=32)
    parser.add_argument("--every-ms", type=float, default=50.0, help="poison injection period")
    parser.add_argument("--max-deliver", type=int, default=4)
    args = parser.parse_args(argv)
    try:
        (baseline, poisoned), injected, dead = uvloop.run(scenario(args))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        raise SystemExit(130) from None
    print(
        f"{args.in_flight} in flight, {os.cpu_count()} CPUs, a poison item every "
        f"{args.every_ms:.0f} ms, max_deliver {args.max_deliver}"
    )
    print(format_table([baseline, poisoned]))
    p99_ratio = poisoned.p99_ms / baseline.p99_ms if baseline.p99_ms else float("inf")
    print(f"poison items injected: {injected}, dead-lettered: {dead}")
    print(f"p99 with poison / baseline p99: {p99_ratio:.2f} (limit {P99_LIMIT:.1f})")
    ok = p99_ratio <= P99_LIMIT and dead == injected and poisoned.errors == 0
    print("OK" if ok else "FAIL")
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
