"""The floors: bare nats-py programs between two OS processes on one NATS server, the paces
a load run's speed is measured against.

The request floor (``kind = "request"``): a responder process (``python -m
jetmesh.load.floor --serve NATS_URL SUBJECT``) echoes each request; this process keeps a
fixed number of ``nc.request`` calls in flight (a closed loop), first a warm-up, then the
measured requests. No signing, no JetStream, no agent: what the machine and nats-py do for
one round trip.

The durable floor (``kind = "durable"``): the same closed loop over the mesh's stored hop
done with nats-py alone (:mod:`.durable_floor`): each task published to a stream of the
floor's own and acked, the responder process (``--serve-durable``) takes it from a pull
consumer, stores an event (acked), replies on core NATS and acknowledges the task. The
streams are made before and deleted after.

A scenario's ``[floor]`` (:class:`~jetmesh.load.scenario.Floor`; ``[[floor]]`` tables for
both) has :func:`~jetmesh.load.runner.run_load` measure it just before the load, and the
report carries it (:class:`~jetmesh.load.report.FloorResult`, ``report.floor`` and
``report.durable_floor``); :func:`floor_ratio` is the run's completed requests per second
over a floor's.

Example:
    >>> floor = await measure_floor("nats://127.0.0.1:4222", Floor(requests=5000))  # doctest: +SKIP
    >>> floor.rate > 0, floor.p50_ms <= floor.p99_ms  # doctest: +SKIP
    (True, True)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import msgspec
import nats
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from .driver import new_histogram
from .durable_floor import (
    CONSUMER,
    DurableRequester,
    FloorStreams,
    answer_tasks,
    create_streams,
    stored_then_delete,
)
from .report import FloorResult, LoadReport
from .scenario import Floor

__all__ = ["DurableSetup", "floor_ratio", "measure_floor"]

READY = b"ready"
"""The line the responder prints once it has subscribed."""

READY_TIMEOUT_S = 15.0
"""How long the responder may take to subscribe."""

STOP_TIMEOUT_S = 5.0
"""How long the responder may take to stop after SIGTERM before it is SIGKILLed."""

REQUEST_TIMEOUT_S = 5.0
"""How long one request waits for its reply before it counts as an error."""

DRAIN_S = 10.0
"""After a phase's deadline no request starts; those in flight get this long to finish."""

FloorKind = Literal["request", "durable"]
"""Which floor: the bare request/reply, or the bare durable hop."""


@dataclass(frozen=True)
class DurableSetup:
    """What the durable floor's streams copy from the mesh's (its settings)."""

    replicas: int = 1
    """Each stream's replicas (the mesh's tasks stream's)."""
    duplicate_window_s: float = 120.0
    """The de-duplication window."""
    max_ack_pending: int = 1024
    """Tasks delivered and not yet acknowledged at most."""


def floor_ratio(report: LoadReport, kind: FloorKind = "request") -> float | None:
    """The run's speed as a share of a floor: completed requests per second over the
    floor's successful requests per second.

    Args:
        report: A run's report.
        kind: Which floor: ``request`` (``report.floor``) or ``durable``
            (``report.durable_floor``).

    Returns:
        The ratio, or None when the report has no such floor (or it measured nothing).
    """
    floor = report.floor if kind == "request" else report.durable_floor
    if floor is None or floor.rate <= 0 or report.seconds <= 0:
        return None
    return report.completed / report.seconds / floor.rate


def _connect_options(seed_file: Path | None) -> dict[str, Any]:
    """``nats.connect`` options: no reconnects, two tries at the start (nats-py's first
    connect tries its servers without end unless the attempts are bounded), and the nkey
    seed file when given."""
    options: dict[str, Any] = {
        "allow_reconnect": False,
        "connect_timeout": 5,
        "max_reconnect_attempts": 1,
        "reconnect_time_wait": 0.5,
    }
    if seed_file is not None:
        options["nkeys_seed"] = str(seed_file)
    return options


async def serve(
    nats_url: str,
    subject: str,
    *,
    lifetime: float = 600.0,
    seed_file: Path | None = None,
    durable: FloorStreams | None = None,
    in_flight: int = 64,
) -> None:
    """Echo every request on ``subject`` until stopped (the responder process); with
    ``durable``, answer the tasks of those streams instead (``subject`` unused).

    Prints ``ready`` on stdout once the subscription is registered with the server (the
    pull subscription bound, for ``durable``). Stops on SIGTERM or SIGINT, when stdin
    reaches end of file (the parent closed it or died), or after ``lifetime`` seconds,
    whichever comes first.

    Args:
        nats_url: The server, e.g. ``nats://127.0.0.1:4222``.
        subject: The subject to answer on.
        lifetime: The longest time to run, in seconds.
        seed_file: An nkey seed file to log in with (None: the server's default user).
        durable: The durable floor's streams (made by the requester).
        in_flight: Durable: tasks answered at once at most.
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
        with contextlib.suppress(OSError):  # a file (/dev/null) cannot be watched
            loop.add_reader(stdin, on_stdin)
    nc = await nats.connect(nats_url, **_connect_options(seed_file))
    try:

        async def echo(msg: Msg) -> None:
            await nc.publish(msg.reply, msg.data)

        answering = None
        if durable is None:
            await nc.subscribe(subject, cb=echo)
        else:
            await nc.jetstream().consumer_info(durable.tasks, CONSUMER)  # there: bind
            answering = asyncio.create_task(answer_tasks(nc, durable, in_flight))
        await nc.flush()
        sys.stdout.buffer.write(READY + b"\n")
        sys.stdout.flush()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=lifetime)
        if answering is not None:
            answering.cancel()
            await asyncio.gather(answering, return_exceptions=True)
    finally:
        await nc.close()


async def _start_responder(
    nats_url: str, subject: str, lifetime: float, seed_file: Path | None, durable: list[str]
) -> asyncio.subprocess.Process:
    """Start the responder process and wait until it has subscribed (``durable``: its
    ``--serve-durable`` arguments after the URL, else it echoes on ``subject``).

    Raises:
        RuntimeError: it did not say ``ready``.
        TimeoutError: not within :data:`READY_TIMEOUT_S`.
    """
    # the package imports this module before runpy runs it as __main__: say nothing of it
    argv = [sys.executable, "-W", "ignore::RuntimeWarning:runpy", "-m", "jetmesh.load.floor"]
    argv += ["--serve-durable", nats_url, *durable] if durable else ["--serve", nats_url, subject]
    argv += ["--lifetime", f"{lifetime:g}"]
    argv += ["--seed-file", str(seed_file)] if seed_file is not None else []
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        start_new_session=True,  # a Ctrl-C reaches only us; we stop it (or it sees stdin EOF)
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), timeout=READY_TIMEOUT_S)
        if line.strip() != READY:
            raise RuntimeError(f"the floor's responder did not start (it said {line!r})")
    except BaseException:
        await _stop_responder(proc)
        raise
    return proc


async def _stop_responder(proc: asyncio.subprocess.Process) -> None:
    """SIGTERM, wait, SIGKILL on timeout; safe when it already exited."""
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), timeout=STOP_TIMEOUT_S)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
    if proc.stdin is not None:
        proc.stdin.close()


@dataclass
class _Phase:
    """One phase (warm-up or measured) of the closed loop, shared by its workers."""

    total: int
    deadline: float
    histogram: Any = None
    started: int = 0
    errors: int = 0


async def _worker(send: Callable[[], Awaitable[None]], phase: _Phase) -> None:
    """Send one request after another until the phase's count or deadline."""
    while phase.started < phase.total and time.monotonic() < phase.deadline:
        phase.started += 1
        start = time.perf_counter_ns()
        try:
            await send()
        except Exception:
            phase.errors += 1
        else:
            if phase.histogram is not None:
                micros = max(1, (time.perf_counter_ns() - start + 500) // 1000)
                phase.histogram.record_value(micros)


async def _run_phase(send: Callable[[], Awaitable[None]], in_flight: int, phase: _Phase) -> None:
    """``in_flight`` workers for one phase; stragglers past the drain count as errors."""
    tasks = [asyncio.create_task(_worker(send, phase)) for _ in range(in_flight)]
    try:
        timeout = max(phase.deadline - time.monotonic(), 0.0) + DRAIN_S
        _, pending = await asyncio.wait(tasks, timeout=timeout)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    phase.errors += len(pending)


async def _closed_loop(send: Callable[[], Awaitable[None]], floor: Floor) -> FloorResult:
    """The warm-up, then the measured requests, ``floor.concurrency`` in flight."""
    if floor.warmup:
        warmup = _Phase(floor.warmup, time.monotonic() + floor.max_seconds)
        await _run_phase(send, floor.concurrency, warmup)
    histogram = new_histogram()
    phase = _Phase(floor.requests, time.monotonic() + floor.max_seconds, histogram)
    start = time.perf_counter()
    await _run_phase(send, floor.concurrency, phase)
    seconds = time.perf_counter() - start
    ok = phase.started - phase.errors

    def at(percentile: float) -> float:
        if not histogram.get_total_count():
            return 0.0
        return float(histogram.get_value_at_percentile(percentile)) / 1000

    return FloorResult(
        requests=phase.started,
        errors=phase.errors,
        seconds=seconds,
        rate=ok / seconds if seconds > 0 else 0.0,
        p50_ms=at(50.0),
        p99_ms=at(99.0),
        p999_ms=at(99.9),
        concurrency=floor.concurrency,
        payload_bytes=floor.payload_bytes,
    )


async def measure_floor(
    nats_url: str,
    floor: Floor | None = None,
    *,
    seed_file: Path | None = None,
    durable: DurableSetup | None = None,
) -> FloorResult:
    """Measure a floor (``floor.kind``): a responder process answers each request while
    this process keeps ``floor.concurrency`` requests in flight, ``floor.warmup`` of them
    unmeasured first, then ``floor.requests`` measured ones (each phase bounded by
    ``floor.max_seconds``). The responder is stopped before this returns, and the durable
    floor's streams deleted.

    Run it on the event loop the load runs on (uvloop under ``jetmesh load run``), so the
    two figures compare.

    Args:
        nats_url: The server both processes connect to.
        floor: The kind, requests, concurrency and payload size (default: :class:`Floor`'s).
        seed_file: An nkey seed file both log in with (the admin's on servers that enforce
            a policy; the durable floor creates streams); None: the server's default user.
        durable: What the durable floor's streams copy from the mesh's (default:
            :class:`DurableSetup`'s).

    Returns:
        The measured part's requests, errors, seconds, rate and latency percentiles (and,
        durable, the messages its streams stored).

    Raises:
        RuntimeError: the responder did not start.
        TimeoutError: it did not subscribe within :data:`READY_TIMEOUT_S`.
        nats.errors.Error: this process could not connect.
        nats.js.errors.APIError: the server refused the durable floor's streams.
    """
    floor = floor or Floor()
    if floor.kind == "durable":
        nc = await nats.connect(nats_url, **_connect_options(seed_file))
        try:
            return await _measure_durable(nc, nats_url, floor, seed_file, durable)
        finally:
            await nc.close()
    subject = f"jetmesh.floor.{uuid.uuid4().hex}"
    proc = await _start_responder(nats_url, subject, _lifetime(floor), seed_file, [])
    try:
        nc = await nats.connect(nats_url, **_connect_options(seed_file))
        try:
            payload = os.urandom(floor.payload_bytes)

            async def send() -> None:
                reply = await nc.request(subject, payload, timeout=REQUEST_TIMEOUT_S)
                _check_reply(reply.data, payload)

            return await _closed_loop(send, floor)
        finally:
            await nc.close()
    finally:
        await _stop_responder(proc)


def _lifetime(floor: Floor) -> float:
    """The longest a responder for ``floor`` may run: both phases, their drains, its start."""
    return 2 * (floor.max_seconds + DRAIN_S) + READY_TIMEOUT_S


def _check_reply(reply: bytes, payload: bytes) -> None:
    """Raise ValueError unless the reply is as long as the request."""
    if len(reply) != len(payload):
        raise ValueError(f"a reply of {len(reply)} bytes to {len(payload)}")


async def _measure_durable(
    nc: NATS, nats_url: str, floor: Floor, seed_file: Path | None, durable: DurableSetup | None
) -> FloorResult:
    """The durable floor on ``nc``: its streams made, the responder started, the closed
    loop, then the responder stopped and the streams counted and deleted."""
    setup = durable or DurableSetup()
    js = nc.jetstream()
    streams = FloorStreams.fresh()
    try:
        await create_streams(
            js,
            streams,
            replicas=setup.replicas,
            duplicate_window_s=setup.duplicate_window_s,
            max_ack_pending=setup.max_ack_pending,
        )
        args = [streams.tasks, streams.events, streams.tasks_subject, streams.events_subject]
        args += ["--in-flight", str(floor.concurrency)]
        proc = await _start_responder(nats_url, "", _lifetime(floor), seed_file, args)
        try:
            requester = DurableRequester(nc, streams)
            await requester.start()
            payload = os.urandom(floor.payload_bytes)

            async def send() -> None:
                _check_reply(await requester.send(payload, REQUEST_TIMEOUT_S), payload)

            result = await _closed_loop(send, floor)
            await requester.stop()
        finally:
            await _stop_responder(proc)
    finally:
        stored = await stored_then_delete(js, streams)
    return msgspec.structs.replace(result, kind="durable", stored=stored)


def main(argv: list[str] | None = None) -> None:
    """The responder: ``python -m jetmesh.load.floor --serve NATS_URL SUBJECT`` (the request
    floor) or ``--serve-durable NATS_URL TASKS EVENTS TASKS_SUBJECT EVENTS_SUBJECT`` (the
    durable floor, on streams the requester made), on uvloop where it is installed.

    Args:
        argv: The arguments, without the program name; ``sys.argv[1:]`` if None.
    """
    parser = argparse.ArgumentParser(prog="python -m jetmesh.load.floor", description=__doc__)
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--serve", nargs=2, metavar=("NATS_URL", "SUBJECT"), help="echo there")
    which.add_argument(
        "--serve-durable",
        nargs=5,
        metavar=("NATS_URL", "TASKS", "EVENTS", "TASKS_SUBJECT", "EVENTS_SUBJECT"),
        help="answer the tasks of those streams",
    )
    parser.add_argument("--in-flight", type=int, default=64, help="durable: tasks at once")
    parser.add_argument("--lifetime", type=float, default=600.0, help="stop after this long")
    parser.add_argument("--seed-file", type=Path, help="an nkey seed file to log in with")
    args = parser.parse_args(argv)
    if args.serve is not None:
        url, subject, durable = args.serve[0], args.serve[1], None
    else:
        url, subject, durable = args.serve_durable[0], "", FloorStreams(*args.serve_durable[1:])
    responder = serve(
        url,
        subject,
        lifetime=args.lifetime,
        seed_file=args.seed_file,
        durable=durable,
        in_flight=args.in_flight,
    )
    try:
        import uvloop

        uvloop.run(responder)
    except ImportError:  # pragma: no cover
        asyncio.run(responder)


if __name__ == "__main__":
    main()
