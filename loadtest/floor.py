"""The floor: a bare nats-py request/reply between two OS processes on this machine.

A responder subprocess (``python -m loadtest.floor --serve <nats_url> <subject>``,
uvloop) echoes every request; the requester, in the calling process (uvloop),
drives ``nc.request`` (new-style muxed inbox) with a fixed number in flight. Other
benchmarks are reported as a ratio of their throughput to this one.

Run alone against a throwaway server: ``.venv/bin/python -m loadtest.floor``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.metadata
import os
import signal
import sys
import uuid
from pathlib import Path

import nats
import uvloop
from nats.aio.msg import Msg

from loadtest.driver import drive
from loadtest.servers import nats_server
from loadtest.stats import RunResult, format_table

_ROOT = Path(__file__).resolve().parent.parent
_READY = b"ready"
_READY_TIMEOUT = 15.0
_STOP_TIMEOUT = 5.0
_REQUEST_TIMEOUT = 5.0


async def serve(nats_url: str, subject: str, *, lifetime: float = 600.0) -> None:
    """Echoes every request on ``subject`` until stopped (the responder process).

    Prints ``ready`` on stdout once the subscription is registered with the server.
    Stops on SIGTERM or SIGINT, when stdin reaches end of file (the parent closed it or
    died), or after ``lifetime`` seconds, whichever comes first.

    Args:
        nats_url: The server, e.g. ``nats://127.0.0.1:4222``.
        subject: The subject to answer on.
        lifetime: The longest time to run, in seconds.
    """
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    stdin = sys.stdin.fileno()

    def on_stdin() -> None:
        loop.remove_reader(stdin)
        stop.set()

    if not os.isatty(stdin):
        loop.add_reader(stdin, on_stdin)

    nc = await nats.connect(nats_url, allow_reconnect=False)
    try:

        async def echo(msg: Msg) -> None:
            await nc.publish(msg.reply, msg.data)

        await nc.subscribe(subject, cb=echo)
        await nc.flush()
        sys.stdout.buffer.write(_READY + b"\n")
        sys.stdout.flush()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=lifetime)
    finally:
        await nc.close()


async def _start_responder(
    nats_url: str, subject: str, lifetime: float
) -> asyncio.subprocess.Process:
    """Starts the responder subprocess and waits until it has subscribed."""
    proc = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "loadtest.floor", "--serve", nats_url, subject),
        *("--lifetime", str(lifetime)),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        cwd=_ROOT,
        start_new_session=True,  # A Ctrl-C reaches only us; we stop it (or it sees stdin EOF).
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), timeout=_READY_TIMEOUT)
        if line.strip() != _READY:
            raise RuntimeError(f"floor responder did not start (output {line!r})")
    except BaseException:
        await _stop_responder(proc)
        raise
    return proc


async def _stop_responder(proc: asyncio.subprocess.Process) -> None:
    """Stops the responder: SIGTERM, wait, SIGKILL on timeout. Safe if it already exited."""
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), timeout=_STOP_TIMEOUT)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
    if proc.stdin is not None:
        proc.stdin.close()


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
    subject = f"loadtest.floor.{uuid.uuid4().hex}"
    lifetime = 2 * max_seconds + 60
    proc = await _start_responder(nats_url, subject, lifetime)
    try:
        nc = await nats.connect(nats_url, allow_reconnect=False)
        try:

            async def send(payload: bytes) -> Msg:
                reply = await nc.request(subject, payload, timeout=_REQUEST_TIMEOUT)
                if len(reply.data) != len(payload):
                    raise ValueError(f"reply of {len(reply.data)} bytes, sent {len(payload)}")
                return reply

            return await drive(
                send,
                payload=os.urandom(payload_size),
                in_flight=in_flight,
                requests=requests,
                warmup=warmup,
                max_seconds=max_seconds,
                name="floor",
            )
        finally:
            await nc.close()
    finally:
        await _stop_responder(proc)


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
    parser.add_argument("--serve", nargs=2, metavar=("NATS_URL", "SUBJECT"), help="responder")
    parser.add_argument("--lifetime", type=float, default=600.0, help="responder time limit")
    parser.add_argument("--nats-url", help="use this server instead of a throwaway one")
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--in-flight", type=int, default=64)
    parser.add_argument("--payload-size", type=int, default=256)
    parser.add_argument("--max-seconds", type=float, default=30.0)
    parser.add_argument("--warmup", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=1, help="repeat the run (1..20)")
    return parser


def main(argv: list[str] | None = None) -> None:
    """Runs the responder (``--serve``) or the floor benchmark and prints a table.

    Args:
        argv: The arguments, without the program name; ``sys.argv[1:]`` if None.
    """
    args = _parser().parse_args(argv)
    if args.serve:
        uvloop.run(serve(args.serve[0], args.serve[1], lifetime=args.lifetime))
        return
    args.runs = min(max(args.runs, 1), 20)
    try:
        results = uvloop.run(_bench(args))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        raise SystemExit(130) from None
    print(
        f"floor: {args.payload_size} B payload, {args.in_flight} in flight, "
        f"uvloop both sides, nats-py {importlib.metadata.version('nats-py')}, {os.cpu_count()} CPUs"
    )
    print(format_table(results))


if __name__ == "__main__":
    main()
