"""The gateway benchmark: the 202 path of ``POST /v1/agents/{agent}/tasks`` next to a bare
ASGI app on the same server, in the same run.

    bare:    client --HTTP--> uvicorn --> an ASGI app that reads the body and answers 202
    gateway: client --HTTP--> uvicorn --> the gateway: API key, rate limit, schema
             pre-flight, caller token, chain link, signed task stored (JetStream ack),
             signed ``accepted`` event stored (ack) --> 202

Both run as ``python -m loadtest.gateway --serve bare|gateway`` (one uvicorn worker, uvloop,
httptools) on servers that enforce a policy (the gateway connected as its ingress role),
driven by this process with httpx at a fixed number of requests in flight, same body
(256 bytes), same time. Prints req/s, p50 and p99 for each, and accepted tasks per second
per core: per CPU second of the server's process (``/proc/<pid>/stat``). nats-server's
own CPU (the gateway's two stored messages per task) is not in that figure; it shares the
machine with the driver and the server, so the bare row is also the driver's ceiling.

    python -m loadtest.gateway [--seconds 10] [--in-flight 4] [--payload 256]

No agent consumes the tasks: the benchmark measures acceptance, not the work.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

import httpx
import uvloop

from jetmesh import MeshSettings
from jetmesh.cli import up_servers
from jetmesh.embedded import EmbeddedStack, free_port, scratch_dir
from jetmesh.envelope import new_id
from jetmesh.policy import parse_policy
from jetmesh.processes import interruptible, settings_env
from loadtest.cpu_split import cpu_seconds
from loadtest.stats import LatencyRecorder, RunResult, format_table
from services.gateway import GatewaySettings, create_app
from services.gateway.gateway import Gateway
from services.gateway.process import serve as run_server
from services.gateway.process import stop, until_ready

AGENT = "echo"
API_KEY = "jmk_loadtest"
POLICY = {"roles": {"gateway": {"ingress": True, "calls": [AGENT]}, AGENT: {}}}
BARE = "bare ASGI"
GATEWAY = "gateway 202"
CONFIG_ENV = "JETMESH_GATEWAY_CONFIG"

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


async def bare_app(scope: Scope, receive: Receive, send: Send) -> None:
    """Read the request's body and answer 202 with two fresh ids, as the gateway does."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    body = f'{{"workflow":"{new_id()}","task":"{new_id()}","status":"accepted"}}'.encode()
    status = 202 if scope["method"] == "POST" else 200
    headers = [(b"content-type", b"application/json")]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def serve(kind: str, port: int) -> None:
    """Run the ``bare`` app or the gateway on the gateway process's uvicorn, until SIGTERM."""
    app: Any = bare_app
    if kind == "gateway":
        app = create_app(Gateway(GatewaySettings(), MeshSettings()))
    run_server(app, "127.0.0.1", port, log_level="warning")


async def drive(
    url: str, *, seconds: float, in_flight: int, payload: bytes, proc: subprocess.Popen[bytes]
) -> tuple[RunResult, float]:
    """Post ``payload`` with ``in_flight`` requests at a time for ``seconds`` (after a
    warm-up); the result and the server's CPU seconds in the measured phase."""
    headers = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}
    limits = httpx.Limits(max_connections=in_flight, max_keepalive_connections=in_flight)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as http:
        await until_ready(http, proc)
        path = f"/v1/agents/{AGENT}/tasks"
        for _ in range(200):  # warm-up: connections, caches, the pre-flight's answer
            (await http.post(path, content=payload, headers=headers)).raise_for_status()
        recorder = LatencyRecorder()
        errors = 0
        ok = 0
        end = time.perf_counter() + seconds

        async def worker() -> None:
            nonlocal errors, ok
            while time.perf_counter() < end:
                began = time.perf_counter_ns()
                try:
                    r = await http.post(path, content=payload, headers=headers)
                except httpx.HTTPError:
                    errors += 1
                    continue
                if r.status_code == 202:
                    recorder.record_ns(time.perf_counter_ns() - began)
                    ok += 1
                else:
                    errors += 1

        cpu = cpu_seconds(proc.pid)
        began_s = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(in_flight)))
        wall = time.perf_counter() - began_s
        cpu = cpu_seconds(proc.pid) - cpu
    result = RunResult(
        name="",
        requests=ok + errors,
        errors=errors,
        seconds=wall,
        throughput=ok / wall,
        p50_ms=recorder.percentile_ms(50),
        p99_ms=recorder.percentile_ms(99),
        p999_ms=recorder.percentile_ms(99.9),
    )
    return result, cpu


def measure(
    kind: str, name: str, settings: MeshSettings, config: Path, args: argparse.Namespace
) -> tuple[RunResult, float]:
    port = free_port()
    env = settings_env(settings) | {CONFIG_ENV: str(config)}
    cmd = [sys.executable, "-m", "loadtest.gateway", "--serve", kind, "--port", str(port)]
    proc = subprocess.Popen(cmd, env=env)
    try:
        payload = b'{"data":"' + b"x" * (args.payload - len(b'{"data":""}')) + b'"}'
        result, cpu = uvloop.run(
            drive(
                f"http://127.0.0.1:{port}",
                seconds=args.seconds,
                in_flight=args.in_flight,
                payload=payload,
                proc=proc,
            )
        )
    finally:
        stop(proc)
    return RunResult(name, *_fields(result)), cpu


def _fields(r: RunResult) -> tuple[int, int, float, float, float, float, float]:
    return (r.requests, r.errors, r.seconds, r.throughput, r.p50_ms, r.p99_ms, r.p999_ms)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--in-flight", type=int, default=4)
    parser.add_argument("--payload", type=int, default=256)
    parser.add_argument("--serve", choices=["bare", "gateway"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.serve, args.port)
        return
    with (
        interruptible(),
        scratch_dir("loadtest-gateway-") as state,
    ):
        settings = MeshSettings(
            state_dir=state,
            nats_url=f"nats://127.0.0.1:{free_port()}",
            redis_url=f"redis://127.0.0.1:{free_port()}/0",
        )
        config = state / "gateway.toml"
        config.write_text(
            "rate_per_s = 1000000.0\nburst = 1000000\n[[api_keys]]\n"
            f'sha256 = "{_sha256(API_KEY)}"\nsubject = "loader"\ntenant = "bench"\n'
        )
        up_servers(settings, parse_policy(POLICY))
        try:
            rows = [
                measure(kind, name, settings, config, args)
                for kind, name in (("bare", BARE), ("gateway", GATEWAY))
            ]
        finally:
            EmbeddedStack(settings).down()
    results = [r for r, _ in rows]
    print(format_table(results, ratio_of=(results[1], results[0])))
    for result, cpu in rows:
        per_core = result.throughput * result.seconds / cpu if cpu > 0 else 0.0
        print(
            f"{result.name}: {per_core:,.0f} accepted/s per core of its process "
            f"({cpu:.2f} CPU s in {result.seconds:.2f} s), p99 {result.p99_ms:.2f} ms"
        )


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


if __name__ == "__main__":
    main()
