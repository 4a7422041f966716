"""The gateway as a process: the uvicorn that ``python -m services.gateway`` runs
(:func:`serve`), and, for a parent that starts such a process (the benchmark, the tests),
waiting until it is ready (:func:`until_ready`) and stopping it (:func:`stop`).

Example:
    >>> proc = subprocess.Popen([sys.executable, "-m", "services.gateway"])  # doctest: +SKIP
    >>> async with httpx.AsyncClient(base_url=url) as http:      # doctest: +SKIP
    ...     await until_ready(http, proc)
    >>> stop(proc)                                               # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from typing import Any

import httpx
import uvicorn

READY_PATH = "/readyz"
"""Answers 200 once the process is connected to the mesh."""
READY_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 15.0


def serve(app: Any, host: str, port: int, *, log_level: str = "info") -> None:
    """Serve ``app`` on uvicorn as the gateway process does (one worker, uvloop,
    httptools, the app's lifespan, no proxy headers; an access log at ``info``) until
    SIGINT or SIGTERM: uvicorn stops taking requests, finishes those in flight, then the
    lifespan ends."""
    uvicorn.run(
        app,
        host=host,
        port=port,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        log_level=log_level,
        access_log=log_level in ("debug", "trace", "info"),
        proxy_headers=False,
    )


async def until_ready(
    http: httpx.AsyncClient,
    proc: subprocess.Popen[bytes] | None = None,
    *,
    timeout_s: float = READY_TIMEOUT_S,
) -> None:
    """Wait until the server at ``http``'s base URL answers :data:`READY_PATH` with 200.

    Args:
        http: a client with the server's base URL.
        proc: the server's process, if this process started it: its exit ends the wait.
        timeout_s: how long to wait at most.

    Raises:
        ChildProcessError: ``proc`` exited first.
        TimeoutError: no 200 within ``timeout_s``.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if (await http.get(READY_PATH)).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if proc is not None and proc.poll() is not None:
            raise ChildProcessError(f"the server exited ({proc.returncode}) before it was ready")
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{http.base_url} was not ready within {timeout_s:g}s")
        await asyncio.sleep(0.05)


def stop(proc: subprocess.Popen[bytes], timeout_s: float = STOP_TIMEOUT_S) -> int:
    """Stop ``proc``: SIGTERM (a graceful stop), SIGKILL if it has not exited within
    ``timeout_s``. Safe to call again.

    Returns:
        Its exit status (``-SIGTERM`` for uvicorn's graceful stop: it stops, then raises
        the signal again).
    """
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
    return proc.wait()
