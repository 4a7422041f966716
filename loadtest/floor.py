"""The floor: a bare nats-py request/reply between two OS processes on this machine.

The measurement is the library's (:func:`jetmesh.load.measure_floor`, a scenario's
``[floor]``): a responder subprocess (``python -m jetmesh.load.floor --serve <nats_url>
<subject>``, uvloop) echoes every request; the requester, in the calling process (uvloop),
drives ``nc.request`` (new-style muxed inbox) with a fixed number in flight. Other
benchmarks are reported as a ratio of their throughput to this one.

Run alone against a throwaway server: ``.venv/bin/python -m loadtest.floor``.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os

import uvloop

from jetmesh.load import Floor, measure_floor
from jetmesh.processes import interruptible
from loadtest.servers import nats_server
from loadtest.stats import RunResult, format_table


async def run_floor(
    nats_url: str,
    *,
    requests: int = 20000,
    in_flight: int = 64,
    payload_size: int = 256,
    max_seconds: float = 30,
    warmup: int = 2000,
) -> RunResult:
    """Measures bare request/reply between this process and a responder subprocess.

    Call it from a uvloop event loop (as ``main`` does) so the figure is comparable.

    Args:
        nats_url: The server both processes connect to.
        requests: The number of measured requests.
        in_flight: The number of requests outstanding at any time.
        payload_size: The request (and reply) size in bytes.
        max_seconds: The time limit of the warmup and of the measured phase each.
        warmup: The number of unrecorded requests sent first.

    Returns:
        The result, named ``floor``.
    """
    floor = Floor(
        requests=requests,
        concurrency=in_flight,
        payload_bytes=payload_size,
        warmup=warmup,
        max_seconds=max_seconds,
    )
    result = await measure_floor(nats_url, floor)
    return RunResult(
        name="floor",
        requests=result.requests,
        errors=result.errors,
        seconds=result.seconds,
        throughput=result.rate,
        p50_ms=result.p50_ms,
        p99_ms=result.p99_ms,
        p999_ms=result.p999_ms,
    )


async def _bench(args: argparse.Namespace) -> list[RunResult]:
    """Runs the floor ``args.runs`` times against ``args.nats_url`` or a throwaway server."""

    async def runs(url: str) -> list[RunResult]:
        return [
            await run_floor(
                url,
                requests=args.requests,
                in_flight=args.in_flight,
                payload_size=args.payload_size,
                max_seconds=args.max_seconds,
                warmup=args.warmup,
            )
            for _ in range(args.runs)
        ]

    if args.nats_url:
        return await runs(args.nats_url)
    with nats_server() as url:
        return await runs(url)


def _parser() -> argparse.ArgumentParser:
    """Returns the command-line parser."""
    parser = argparse.ArgumentParser(prog="python -m loadtest.floor", description=__doc__)
    parser.add_argument("--nats-url", help="use this server instead of a throwaway one")
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--in-flight", type=int, default=64)
    parser.add_argument("--payload-size", type=int, default=256)
    parser.add_argument("--max-seconds", type=float, default=30.0)
    parser.add_argument("--warmup", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=1, help="repeat the run (1..20)")
    return parser


def main(argv: list[str] | None = None) -> None:
    """Runs the floor benchmark and prints a table.

    Args:
        argv: The arguments, without the program name; ``sys.argv[1:]`` if None.
    """
    args = _parser().parse_args(argv)
    args.runs = min(max(args.runs, 1), 20)
    with interruptible():
        results = uvloop.run(_bench(args))
    print(
        f"floor: {args.payload_size} B payload, {args.in_flight} in flight, "
        f"uvloop both sides, nats-py {importlib.metadata.version('nats-py')}, {os.cpu_count()} CPUs"
    )
    print(format_table(results))


if __name__ == "__main__":
    main()
