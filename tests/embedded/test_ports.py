"""free_port: a port this process was given lately is not given again."""

from __future__ import annotations

import pytest

from jetmesh.embedded import ports


def test_free_port_does_not_hand_out_one_port_twice(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two servers' ports picked one after the other differ, even when the kernel offers
    the port it just freed again (as it did once: NATS and Redis were given one port)."""
    offered = iter([41000, 41000, 41000, 41001])

    class Socket:
        def __init__(self, *args: object) -> None:
            self.port = next(offered)

        def __enter__(self) -> Socket:
            return self

        def __exit__(self, *args: object) -> None:
            return None

        def bind(self, address: object) -> None:
            return None

        def getsockname(self) -> tuple[str, int]:
            return ("127.0.0.1", self.port)

    monkeypatch.setattr(ports, "_handed_out", {})
    monkeypatch.setattr(ports.socket, "socket", Socket)
    assert ports.free_port() == 41000
    assert ports.free_port() == 41001
