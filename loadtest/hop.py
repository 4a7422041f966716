"""The hop benchmark as one program: one signed mesh hop against the bare nats-py floor, in
one invocation, on a cluster and with traces on. ``make bench`` measures every row as a
``jetmesh load`` scenario instead (:mod:`loadtest.bench`, ``loadtest/scenarios/bench-*.toml``,
the cluster rows with ``[mesh] cluster = 3``); this program stays for the one-off
comparisons docs/durability.md and docs/observability.md quote (``--sync-interval 2m``,
``--requests``, several rows against one floor).

    floor: requester --core request--> responder process --core reply-->
    hop:   caller --signed task, JetStream publish+ack--> MESH_TASKS --pull--> echo agent
           process (verify, handle, events) --signed reply--> caller (verify)

Same payload (256 bytes), same concurrency (64 in flight), same machine, same server.
Prints throughput, p50 and p99 for both and the ratio hop/floor. The hop is measured twice:
as above (``mesh hop``), and with the step ledger on (``hop+ledger``: the lease and result
of every step in Redis, what lets a handler resume after a crash without running a step
twice).

    python -m loadtest.hop [--requests 20000] [--in-flight 64] [--runs 3]
                           [--sync-interval always|2m] [--cluster] [--tracing]

The server runs as embedded, with JetStream's ``sync_interval: always`` (an fsync per
stored message); ``--sync-interval 2m`` measures the server's own default instead.
``--cluster`` measures the hop again on three nats-servers with the streams at 3 replicas
(``jetmesh up --cluster 3``), with ``sync_interval: always`` (``R3 always``) and with the
server's default flush (``R3 2m``), in the same invocation as the floor; and with the step
ledger on a Redis primary with a replica, without and with ``redis_wait_replicas=1``
(``R3+ledger``, ``R3+ledger+WAIT``: every ledger write on the replica before it goes on).

``--tracing`` measures the hop once more with OpenTelemetry traces on (``hop+traces``): the
caller and the echo agent export their spans over OTLP/HTTP to a sink in this process that
counts and drops them (:mod:`loadtest.otlp_sink`); the other rows run with tracing off.

The floor varies by +-15% from run to run on a shared 2-core machine, so the benchmark
alternates floor and hop and reports the median of the per-run ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
from pathlib import Path

import msgspec
import uvloop

from jetmesh import KeyStore, MeshClient, MeshSettings, Subjects
from jetmesh.embedded import SYNC_INTERVAL, scratch_dir
from jetmesh.envelope import new_id
from jetmesh.processes import AgentProcess, interruptible
from jetmesh.telemetry import shutdown_tracing
from loadtest.driver import drive
from loadtest.echo import Blob
from loadtest.floor import run_floor
from loadtest.otlp_sink import SpanSink
from loadtest.servers import nats_cluster, nats_server, redis_pair, redis_server
from loadtest.stats import RunResult, format_table

LOADER = "loader"
HOP = "mesh hop"
HOP_LEDGER = "hop+ledger"
R3_ALWAYS = "R3 always"
R3_FLUSH = "R3 2m"
R3_LEDGER = "R3+ledger"
R3_WAIT = "R3+ledger+WAIT"
HOP_TRACES = "hop+traces"


def blob_payload(size: int) -> Blob:
    """A Blob whose JSON encoding is exactly ``size`` bytes (``{"data":"..."}``)."""
    return Blob(data="x" * (size - len(b'{"data":""}')))


async def run_hop(
    settings: MeshSettings,
    *,
    name: str,
    requests: int,
    in_flight: int,
    payload_size: int,
    max_seconds: float,
    warmup: int,
) -> RunResult:
    """Drive signed tasks through one echo agent process and back."""
    keys = KeyStore(settings.resolved_keys_dir)
    keys.init_root()
    subjects = Subjects(settings.subject_prefix)
    keys.issue("echo", subjects=subjects, ttl_s=3600)
    loader = keys.issue(LOADER, subjects=subjects, ttl_s=3600, ingress=True)
    body = blob_payload(payload_size)
    assert len(msgspec.json.encode(body)) == payload_size
    log_file = settings.state_dir / "echo.log"
    agent = AgentProcess(["loadtest.echo:agent"], settings, log_file=log_file).start()
    try:
        async with MeshClient(settings, loader, roots=keys.roots()) as mesh:
            token = mesh.mint_token("bench", tenant="bench")

            async def send(_: bytes) -> Blob:
                return await mesh.call(
                    "echo",
                    body,
                    returns=Blob,
                    workflow=new_id(),
                    caller=token,
                    step="echo",
                    timeout=10.0,
                )

            return await drive(
                send,
                payload=b"",
                in_flight=in_flight,
                requests=requests,
                warmup=warmup,
                max_seconds=max_seconds,
                name=name,
            )
    finally:
        agent.stop()


def _settings(
    nats_url: str, redis_url: str, state_dir: Path, tag: str, args: argparse.Namespace
) -> MeshSettings:
    """A run's settings: its own state, subjects, streams and bucket (``tag``)."""
    return MeshSettings(
        nats_url=nats_url,
        redis_url=redis_url,
        state_dir=state_dir,
        subject_prefix=f"bench{tag}",
        tasks_stream=f"BENCH{tag}_TASKS",
        events_stream=f"BENCH{tag}_EVENTS",
        dlq_stream=f"BENCH{tag}_DLQ",
        registry_bucket=f"BENCH{tag}_KEYS",
        concurrency=args.in_flight,
    )


async def _hop(settings: MeshSettings, name: str, args: argparse.Namespace) -> RunResult:
    return await run_hop(
        settings,
        name=name,
        requests=args.requests,
        in_flight=args.in_flight,
        payload_size=args.payload_size,
        max_seconds=args.max_seconds,
        warmup=args.warmup,
    )


async def _traced_hop(
    settings: MeshSettings, sink: SpanSink, args: argparse.Namespace
) -> RunResult:
    """The hop with traces on in the caller (this process) and the echo agent, exported to
    ``sink``; tracing is off again afterwards, its variables gone."""
    saved = {name: os.environ.get(name) for name in sink.env()}
    os.environ.update(sink.env())
    try:
        return await _hop(settings, HOP_TRACES, args)
    finally:
        await asyncio.to_thread(shutdown_tracing)  # the caller's last spans
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


async def bench(args: argparse.Namespace, sink: SpanSink | None = None) -> list[RunResult]:
    results: list[RunResult] = []
    with (
        nats_server(sync_interval=args.sync_interval) as url,
        redis_server() as redis_url,
        scratch_dir("loadtest-hop-") as tmp,
    ):
        for run in range(args.runs):
            results.append(
                await run_floor(
                    url,
                    requests=args.requests * 2,
                    in_flight=args.in_flight,
                    payload_size=args.payload_size,
                    max_seconds=args.max_seconds,
                    warmup=args.warmup,
                )
            )
            for ledger in (False, True):
                tag = f"{run}{'L' if ledger else ''}"
                settings = _settings(url, redis_url, tmp / f"run{tag}", tag, args)
                settings = settings.model_copy(update={"step_ledger": ledger})
                results.append(await _hop(settings, HOP_LEDGER if ledger else HOP, args))
            if sink is not None:
                settings = _settings(url, redis_url, tmp / f"run{run}T", f"{run}T", args)
                results.append(await _traced_hop(settings, sink, args))
        if args.cluster:
            for name, sync in ((R3_ALWAYS, "always"), (R3_FLUSH, "2m")):
                with nats_cluster(sync_interval=sync) as urls:
                    for run in range(args.runs):
                        settings = _settings(urls, redis_url, tmp / f"{sync}-{run}", str(run), args)
                        settings = settings.model_copy(
                            update={"step_ledger": False, "stream_replicas": 3}
                        )
                        results.append(await _hop(settings, name, args))
            with nats_cluster() as urls, redis_pair() as pair_url:
                for run in range(args.runs):
                    for name, wait in ((R3_LEDGER, 0), (R3_WAIT, 1)):
                        state = tmp / f"ledger-{wait}-{run}"
                        settings = _settings(urls, pair_url, state, f"{wait}{run}", args)
                        settings = settings.model_copy(
                            update={"stream_replicas": 3, "redis_wait_replicas": wait}
                        )
                        results.append(await _hop(settings, name, args))
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m loadtest.hop",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--requests", type=int, default=20000, help="hop requests per run")
    parser.add_argument("--in-flight", type=int, default=64)
    parser.add_argument("--payload-size", type=int, default=256)
    parser.add_argument("--max-seconds", type=float, default=60.0)
    parser.add_argument("--warmup", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=3, help="repeat floor + hop (1..10)")
    parser.add_argument(
        "--sync-interval",
        default=SYNC_INTERVAL,
        help="JetStream sync_interval of the server: always (as embedded) or e.g. 2m",
    )
    parser.add_argument(
        "--cluster",
        action="store_true",
        help="also measure the hop on three nats-servers, streams R3 (always and 2m)",
    )
    parser.add_argument(
        "--tracing",
        action="store_true",
        help="also measure the hop with OpenTelemetry traces exported (hop+traces)",
    )
    args = parser.parse_args(argv)
    args.runs = min(max(args.runs, 1), 10)
    with interruptible(), SpanSink() as sink:
        results = uvloop.run(bench(args, sink if args.tracing else None))
    print(
        f"{args.payload_size} B payload, {args.in_flight} in flight, {os.cpu_count()} CPUs, "
        f"{args.runs} run(s) of floor then hop, JetStream sync_interval: {args.sync_interval}"
    )
    floors = [r for r in results if r.name == "floor"]
    print(format_table(results))
    cluster = (R3_ALWAYS, R3_FLUSH, R3_LEDGER, R3_WAIT) if args.cluster else ()
    traced = (HOP_TRACES,) if args.tracing else ()
    for name in (HOP, HOP_LEDGER, *traced, *cluster):
        hops = [r for r in results if r.name == name]
        ratios = [h.throughput / f.throughput for f, h in zip(floors, hops, strict=True)]
        print(f"ratio {name}/floor per run: " + ", ".join(f"{r:.3f}" for r in ratios))
        print(f"median ratio {name}/floor: {statistics.median(ratios):.3f}")
    if args.tracing:
        hops = sum(r.requests + args.warmup for r in results if r.name == HOP_TRACES)
        print(
            f"spans exported with traces on: {sink.spans} in {sink.exports} exports "
            f"({sink.spans / max(hops, 1):.2f} per hop: the caller's send, the agent's "
            "process and invoke_agent)"
        )


if __name__ == "__main__":
    main()
