"""The flows benchmark: the two reference meshes end to end, next to the bare floor.

Every role of ``services.support`` and ``services.research`` runs as its own ``jetmesh
run`` process, with the offline model provider (deterministic rules: model time near
zero, so what is measured is the mesh). An ingress runs ``--workflows`` workflows of each
flow, ``--in-flight`` at a time (after ``--serial`` one at a time, for the latency of a
workflow alone), and measures each from the first task to the final reply:

- support: the demo's tickets in turn (billing, technical and product answers in a critic
  loop, an unknown class and an unanswerable ticket escalated to a person, a refund under
  the approval limit paid through ``ctx.once``);
- research: the demo's question (a plan, four researchers two at a time, a writer and
  reviewer loop of two rounds).

The floor (a bare nats-py request/reply between two processes, ``loadtest/floor.py``) is
measured in the same run, on the same server. Then a sample of workflows is read back from
the event log to count the messages a workflow takes and the time its model calls took.

    python -m loadtest.flows [--workflows 1000] [--in-flight 16] [--serial 100] [--warmup 50]
                             [--processes N]

With ``--processes N`` each mesh's roles are dealt into N processes (as ``jetmesh launch
--processes N`` does; the tool gateway stays alone) instead of a process per role.

The run is bounded in count and time (``--max-seconds`` per phase), starts its own
nats-server (JetStream ``sync_interval: always``, as embedded) and redis-server, and stops
every process it started.
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import uvloop

from jetmesh import KeyStore, MeshClient, MeshSettings, Subjects, load_agent
from jetmesh.cli import MeshPackage
from jetmesh.embedded import scratch_dir
from jetmesh.envelope import new_id
from jetmesh.event_log import read_events
from jetmesh.processes import interruptible, start_all
from jetmesh.runtime import settle_heap
from jetmesh.toolgate import write_secrets
from loadtest.cpu_split import (
    cpu_times,
    format_per_item,
    format_split,
    machine_times,
    split,
    used,
)
from loadtest.driver import drive
from loadtest.floor import run_floor
from loadtest.servers import nats_server, redis_server
from loadtest.stats import RunResult, format_table
from services import support
from services.demo.flows import QUESTION, SCOPES, TICKETS
from services.research.wire import Report
from services.support.wire import Resolution

LOADER = "loader"
SAMPLE = 20
"""Workflows read back from the event log for the per-workflow counts."""


@dataclass(frozen=True)
class Flow:
    name: str
    package: str
    """The mesh's package (:class:`~jetmesh.cli.MeshPackage`: its roles, and its other
    processes such as the tool gateway)."""
    entry: str
    bodies: Callable[[], itertools.cycle[Any]]
    returns: type[Any]
    scopes: tuple[str, ...]


FLOWS = (
    Flow("support", "services.support", "triage", lambda: itertools.cycle(TICKETS),
         Resolution, tuple(SCOPES)),
    Flow("research", "services.research", "orchestrator", lambda: itertools.cycle([QUESTION]),
         Report, ("corpus:read",)),
)  # fmt: skip


@dataclass
class Sampled:
    """What a sample of workflows took, per workflow (means)."""

    tasks: float = 0.0
    events: float = 0.0
    model_calls: float = 0.0
    model_ms: float = 0.0
    kinds: dict[str, float] = field(default_factory=dict)
    """Events per workflow by kind (means)."""


@dataclass(frozen=True)
class PhaseCpu:
    """What the processes of one phase (``support x16``, warmup included) used
    (:mod:`loadtest.cpu_split`)."""

    shares: dict[str, float]
    """Each role's share of the machine's CPU time, and ``idle``."""
    seconds: dict[str, float]
    """Each role's CPU seconds."""
    workflows: int
    """Workflows sent in the phase, warmup included."""


CpuSplits = dict[str, PhaseCpu]
"""Per phase (``support x16``)."""


async def sample(mesh: MeshClient, workflows: list[str]) -> Sampled:
    """Count tasks, events and model calls of ``workflows`` from their event logs."""
    rows = []
    kinds: Counter[str] = Counter()
    for workflow in workflows:
        logged = [e.event for e in await read_events(mesh, workflow, timeout=2.0)]
        kinds.update(e.kind for e in logged)
        model = [e for e in logged if e.kind == "model"]
        rows.append(
            (
                len({e.task for e in logged if e.task}),
                len(logged),
                len(model),
                sum(e.duration_ms or 0.0 for e in model),
            )
        )
    means = [statistics.fmean(col) for col in zip(*rows, strict=True)] if rows else [0.0] * 4
    per_kind = {kind: n / len(rows) for kind, n in kinds.most_common()} if rows else {}
    tasks, events, model_calls, model_ms = means
    return Sampled(tasks, events, model_calls, model_ms, kinds=per_kind)


async def run_flow(
    flow: Flow, settings: MeshSettings, args: argparse.Namespace
) -> tuple[list[RunResult], Sampled, CpuSplits]:
    """Start a process per role, drive the flow's workflows (one at a time, then
    ``--in-flight`` at a time), stop the processes."""
    keys = KeyStore(settings.resolved_keys_dir)
    keys.init_root()
    subjects = Subjects(settings.subject_prefix)
    package = MeshPackage.of(flow.package)
    for role, target in package.targets.items():
        keys.issue(role, subjects=subjects, ttl_s=3600, scopes=load_agent(target).scopes)
    targets = package.packed(args.processes)
    loader = keys.issue(LOADER, subjects=subjects, ttl_s=3600, ingress=True)
    procs = start_all(targets, settings, log_dir=settings.state_dir / "logs")
    try:
        async with MeshClient(settings, loader, roots=keys.roots()) as mesh:
            token = mesh.mint_token("bench", tenant="bench", scopes=flow.scopes)
            bodies = flow.bodies()
            sent: list[str] = []

            async def send(_: bytes) -> object:
                workflow = new_id()
                sent.append(workflow)
                return await mesh.request(
                    flow.entry,
                    next(bodies),
                    token=token,
                    returns=flow.returns,
                    workflow=workflow,
                    timeout=30.0,
                )

            results, cpu = [], CpuSplits()
            for in_flight, count in ((1, args.serial), (args.in_flight, args.workflows)):
                before, machine, started = cpu_times(), machine_times(), time.monotonic()
                result = await drive(
                    send,
                    payload=b"",
                    in_flight=in_flight,
                    requests=count,
                    warmup=args.warmup,
                    max_seconds=args.max_seconds,
                    name=f"{flow.name} x{in_flight}",
                )
                results.append(result)
                after, wall = cpu_times(), time.monotonic() - started
                cpu[result.name] = PhaseCpu(
                    split(before, after, wall, machine=(machine, machine_times())),
                    used(before, after),
                    result.requests + args.warmup,
                )
            await mesh.flush_events()
            return results, await sample(mesh, sent[-SAMPLE:]), cpu
    finally:
        for proc in procs.values():
            proc.stop()


async def bench(
    args: argparse.Namespace,
) -> tuple[list[RunResult], dict[str, Sampled], CpuSplits]:
    results: list[RunResult] = []
    sampled: dict[str, Sampled] = {}
    cpu = CpuSplits()
    with (
        nats_server() as url,
        redis_server() as redis_url,
        scratch_dir("loadtest-flows-") as tmp,
    ):
        results.append(await run_floor(url, in_flight=args.in_flight, max_seconds=args.max_seconds))
        for flow in FLOWS:
            tag = flow.name.upper()
            settings = MeshSettings(
                nats_url=url,
                redis_url=redis_url,
                state_dir=tmp / flow.name,
                subject_prefix=f"bench{flow.name}",
                tasks_stream=f"BENCH{tag}_TASKS",
                events_stream=f"BENCH{tag}_EVENTS",
                dlq_stream=f"BENCH{tag}_DLQ",
                registry_bucket=f"BENCH{tag}_KEYS",
                concurrency=max(4 * args.in_flight, 16),
                model_provider="offline",
                tool_secrets_file=write_secrets(
                    tmp / flow.name / "tools.toml", support.TOOL_CREDENTIALS
                ),
            )
            runs, counts, phases = await run_flow(flow, settings, args)
            results.extend(runs)
            sampled[flow.name] = counts
            cpu.update(phases)
    return results, sampled, cpu


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m loadtest.flows",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--workflows", type=int, default=1000, help="measured, per flow")
    parser.add_argument("--in-flight", type=int, default=16)
    parser.add_argument("--serial", type=int, default=100, help="measured one at a time, per flow")
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--max-seconds", type=float, default=60.0, help="per phase")
    parser.add_argument(
        "--processes",
        type=int,
        default=None,
        help="deal each mesh's roles into this many processes (default: a process per role)",
    )
    args = parser.parse_args(argv)
    if args.processes is not None and args.processes < 1:
        parser.error("--processes must be at least 1")
    settle_heap(MeshSettings().gc_young_threshold)  # this process is the flows' caller
    with interruptible():
        results, sampled, cpu = uvloop.run(bench(args))
    layout = f"the roles in {args.processes} processes" if args.processes else "a process per role"
    print(
        f"{args.in_flight} workflows in flight, {os.cpu_count()} CPUs, offline model provider, "
        f"{layout}, JetStream sync_interval: always; floor: 256 B request/reply"
    )
    print(format_table(results).replace("requests", "  count ").replace("req/s", "  /s "))
    print("per workflow (mean of the last 20 read back from the event log):")
    print("flow      tasks  replies  events  model calls  model ms")
    for name, s in sampled.items():
        print(
            f"{name:<9} {s.tasks:5.1f}  {s.tasks:7.1f}  {s.events:6.1f}  {s.model_calls:11.1f}  "
            f"{s.model_ms:8.2f}"
        )
    for name, s in sampled.items():
        print(f"{name} events: " + ", ".join(f"{k} {n:.1f}" for k, n in s.kinds.items()))
    print(
        f"CPU of the {os.cpu_count()} cores over each phase (warmup included; other: the "
        "kernel's interrupts and workers, and any other process):"
    )
    for phase, spent in cpu.items():
        print(f"{phase}: {format_split(spent.shares)}")
    print("CPU a workflow over each phase (warmup included), every process:")
    for phase, spent in cpu.items():
        print(f"{phase}: {format_per_item(spent.seconds, spent.workflows)}")
    floor = results[0]
    for result in results[1:]:
        tasks = sampled[result.name.split()[0]].tasks
        print(
            f"{result.name}: {result.throughput:,.1f} workflows/s ({result.throughput * tasks:,.0f}"
            f" tasks/s, {result.throughput * tasks / floor.throughput:.3f} of the floor's "
            f"requests/s); p50 {result.p50_ms:.1f} ms, p99 {result.p99_ms:.1f} ms"
        )


if __name__ == "__main__":
    main()
