"""TCP port helpers: pick a free loopback port, probe it, wait for a listener.

Example:
    >>> port = free_port()
    >>> port_open("127.0.0.1", port)
    False
"""

from __future__ import annotations

import os
import random
import socket
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

_POLL_S = 0.02
_HANDED_OUT_S = 120.0
"""A port :func:`free_port` returned is not returned again by this process for this long:
the kernel may offer a port it just freed to the next bind, and two ports picked one after
the other for two servers (NATS and Redis) must differ before either is bound."""
_handed_out: dict[int, float] = {}
_handed_out_lock = threading.Lock()
_CLAIMS = Path(tempfile.gettempdir()) / f"jetmesh-ports-{os.getuid()}"
"""The ports :func:`free_port` handed out to any process of this user on this machine, an
empty file each: two processes picking ports at once (test workers, harnesses) are not
given one port, which the second would find taken, or worse answered by the first's
server. A file younger than _HANDED_OUT_S is a port taken; older ones are removed now
and then (every PRUNE_EVERY claims of a process)."""
PRUNE_EVERY = 256
LOWEST_PORT = 10000
"""free_port's ports start here, above the registered services most machines run."""
_EPHEMERAL = Path("/proc/sys/net/ipv4/ip_local_port_range")
_claims_made = 0


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def host_port(host: str, port: int) -> str:
    """Format ``host:port`` for a URL, bracketing IPv6 addresses.

    Args:
        host: An IPv4 address, IPv6 address or host name.
        port: The TCP port.
    """
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port on ``host`` that nothing listens on right now.

    The port is drawn at random from below the kernel's ephemeral range (10000 up to
    ``net.ipv4.ip_local_port_range``'s start), where neither a server bound to port 0 nor
    the source port of an outgoing connection lands: a test's web server on port 0 once
    took the port handed out for Redis before Redis bound it. Where that range is small
    or unknown, the kernel picks. A process that does not pick its ports here may still
    take the port before the caller binds it. No process of this user on this machine is
    given the same port twice within two minutes (two servers' ports picked one after the
    other differ, and so do those of two processes picking at once).

    Args:
        host: The address to bind while picking the port.

    Raises:
        OSError: If ``host`` cannot be bound.
    """
    span = _below_ephemeral()
    rng = random.Random()
    for _ in range(100):
        if span is None:
            port = _kernel_port(host)
        else:
            port = rng.randrange(*span)
            if not _bindable(host, port):
                continue
        now = time.monotonic()
        with _handed_out_lock:
            for old in [p for p, at in _handed_out.items() if now - at > _HANDED_OUT_S]:
                del _handed_out[old]
            if port not in _handed_out and _claim(port):
                _handed_out[port] = now
                return port
    return _kernel_port(host)  # nothing free found there lately: the kernel's choice


def _below_ephemeral() -> tuple[int, int] | None:
    """``[LOWEST_PORT, first ephemeral port)``, or None where that holds fewer than 2,000
    ports or the kernel's range cannot be read (not Linux)."""
    try:
        first = int(_EPHEMERAL.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return (LOWEST_PORT, first) if first - LOWEST_PORT >= 2000 else None


def _kernel_port(host: str) -> int:
    with socket.socket(_family(host), socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
    return port


def _claim(port: int) -> bool:
    """Claim ``port`` among this user's processes (see :data:`_CLAIMS`): False if one of them
    was handed it within _HANDED_OUT_S. Where the claims cannot be written, every port is
    free to claim (the process-local rule still holds)."""
    global _claims_made
    path = _CLAIMS / str(port)
    try:
        _CLAIMS.mkdir(mode=0o700, exist_ok=True)
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        _claims_made += 1
        if _claims_made % PRUNE_EVERY == 0:
            _prune_claims()
        return True
    except FileExistsError:
        try:
            if time.time() - path.stat().st_mtime < _HANDED_OUT_S:
                return False
            os.utime(path)  # an old claim: this process's now
        except OSError:
            pass
        return True
    except OSError:
        return True


def _claim_all(ports: list[int]) -> bool:
    """Claim every port of ``ports`` or none: those claimed before one that is taken are
    given back."""
    claimed: list[int] = []
    for port in ports:
        if not _claim(port):
            for mine in claimed:
                (_CLAIMS / str(mine)).unlink(missing_ok=True)
            return False
        claimed.append(port)
    return True


def _prune_claims() -> None:
    """Remove the claims older than _HANDED_OUT_S (each process's own and the others')."""
    expired = time.time() - _HANDED_OUT_S
    for path in _CLAIMS.iterdir():
        try:
            if path.stat().st_mtime < expired:
                path.unlink()
        except OSError:
            pass  # taken over or removed meanwhile


def free_block(offsets: list[int], low: int, high: int, host: str = "127.0.0.1") -> int:
    """Return a port ``p`` in ``[low, high)`` with ``p + offset`` free on ``host`` for every
    offset, each claimed as :func:`free_port` claims its ports (so neither hands it out again
    to a process of this user for _HANDED_OUT_S; a process that picks its ports otherwise
    may still take one before it is bound).

    Raises:
        OSError: no such block found in 500 tries.
    """
    rng = random.Random()
    for _ in range(500):
        base = rng.randrange(low, high)
        ports = [base + offset for offset in offsets]
        if all(_bindable(host, port) for port in ports) and _claim_all(ports):
            return base
    raise OSError(f"no free block of ports {offsets} in [{low}, {high}) on {host}")


def _bindable(host: str, port: int) -> bool:
    with socket.socket(_family(host), socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def port_open(host: str, port: int, timeout: float = 0.2) -> bool:
    """Tell whether something accepts TCP connections at ``host:port``.

    Args:
        host: The address to connect to.
        port: The TCP port.
        timeout: Seconds to wait for the connection.
    """
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_for_port(
    host: str,
    port: int,
    *,
    timeout: float = 10.0,
    alive: Callable[[], bool] | None = None,
) -> None:
    """Block until something accepts TCP connections at ``host:port``.

    Args:
        host: The address to connect to.
        port: The TCP port.
        timeout: Seconds to wait in total.
        alive: Called between attempts; when it returns False, waiting stops early.

    Raises:
        TimeoutError: If nothing accepted a connection within ``timeout``.
        ChildProcessError: If ``alive`` returned False before the port opened.
    """
    deadline = time.monotonic() + timeout
    while True:
        if alive is not None and not alive():
            raise ChildProcessError(f"process exited before {host_port(host, port)} opened")
        if port_open(host, port, timeout=min(0.2, timeout)):
            return
        if time.monotonic() >= deadline:
            raise TimeoutError(f"nothing accepted connections at {host_port(host, port)}")
        time.sleep(_POLL_S)
