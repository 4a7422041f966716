"""What answers at a port: a NATS server greets with ``INFO``, Redis answers ``PING``.

The embedded stack reuses a server it finds already answering at a configured port. Before
it does, it asks what answers: a web server or another program bound there first must not
be taken for the mesh's NATS or Redis (its clients would then fail later with a protocol
error naming neither the port nor the program).

Example:
    >>> speaks("127.0.0.1", 1, "nats")  # doctest: +SKIP
    False
"""

from __future__ import annotations

import socket
from typing import Literal

Protocol = Literal["nats", "redis"]

_READ = 4096


def speaks(host: str, port: int, protocol: Protocol, timeout: float = 2.0) -> bool:
    """Tell whether the server at ``host:port`` speaks ``protocol``.

    NATS: the server's first line starts ``INFO {``, sent unasked (before TLS, too).
    Redis and Sentinel: ``PING`` is answered with a simple string or an error
    (``+PONG``, ``-NOAUTH ...``), the two replies a Redis server gives before login.

    Args:
        host: The address to connect to.
        port: The TCP port.
        protocol: What the server should speak.
        timeout: Seconds for the connection and the first answer.
    """
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            if protocol == "redis":
                sock.sendall(b"PING\r\n")
            first = _first_line(sock)
    except OSError:
        return False
    if protocol == "nats":
        return first.startswith(b"INFO {")
    return first[:1] in (b"+", b"-") and first.endswith(b"\r\n")


def _first_line(sock: socket.socket) -> bytes:
    data = b""
    while b"\n" not in data and len(data) < _READ:
        chunk = sock.recv(_READ)
        if not chunk:
            break
        data += chunk
    return data.split(b"\n", 1)[0] + b"\n" if b"\n" in data else data
