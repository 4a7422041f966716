"""free_port: a port this process or another was given lately is not given again."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from jetmesh.embedded import ports


def test_free_port_does_not_hand_out_one_port_twice(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
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
    monkeypatch.setattr(ports, "_CLAIMS", tmp_path)
    monkeypatch.setattr(ports, "_below_ephemeral", lambda: None)  # the kernel picks
    monkeypatch.setattr(ports.socket, "socket", Socket)
    assert ports.free_port() == 41000
    assert ports.free_port() == 41001


def test_free_ports_are_below_the_kernels_ephemeral_range(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A test's web server bound to port 0 once took the port free_port had handed out for
    Redis, before Redis bound it; the stack then took the web server for Redis. Ports bound
    to 0 come from the ephemeral range, and free_port's from below it."""
    monkeypatch.setattr(ports, "_CLAIMS", tmp_path)
    span = ports._below_ephemeral()
    if span is None:
        pytest.skip("no room below the ephemeral range here")
    first = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    assert span == (ports.LOWEST_PORT, first)
    picked = [ports.free_port() for _ in range(50)]
    assert all(ports.LOWEST_PORT <= port < first for port in picked)
    assert len(set(picked)) == 50


def test_a_port_something_listens_on_is_passed_over(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        monkeypatch.setattr(ports, "_CLAIMS", tmp_path)
        monkeypatch.setattr(ports, "_below_ephemeral", lambda: (port, port + 1))
        assert ports.free_port() != port  # the range's one port is taken: the kernel's


def test_the_kernel_picks_where_the_range_is_small(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    ephemeral = tmp_path / "ip_local_port_range"
    ephemeral.write_text("11000\t60999\n")
    monkeypatch.setattr(ports, "_EPHEMERAL", ephemeral)
    assert ports._below_ephemeral() is None  # 1,000 ports below: too few
    ephemeral.write_text("32768\t60999\n")
    assert ports._below_ephemeral() == (ports.LOWEST_PORT, 32768)
    monkeypatch.setattr(ports, "_EPHEMERAL", tmp_path / "absent")
    assert ports._below_ephemeral() is None


def claimed_by_another_process(claims: Path, port: int) -> bool:
    """Whether a new Python process may claim ``port`` (``_claim`` there)."""
    code = (
        "import sys; from pathlib import Path; from jetmesh.embedded import ports; "
        f"ports._CLAIMS = Path({str(claims)!r}); sys.exit(0 if ports._claim({port}) else 3)"
    )
    done = subprocess.run([sys.executable, "-c", code], check=False, timeout=30)
    assert done.returncode in (0, 3), done
    return done.returncode == 0


def test_a_port_handed_out_here_is_not_handed_out_by_another_process(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Two test workers picking ports at once: one was given the port another had just
    been given, found that one's Redis answering there and used it, until it stopped."""
    monkeypatch.setattr(ports, "_CLAIMS", tmp_path)
    port = ports.free_port()
    assert not claimed_by_another_process(tmp_path, port)
    old = time.time() - ports._HANDED_OUT_S - 1  # the claim has expired: free again
    os.utime(tmp_path / str(port), (old, old))
    assert claimed_by_another_process(tmp_path, port)


def test_expired_claims_are_removed_now_and_then(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(ports, "_CLAIMS", tmp_path)
    monkeypatch.setattr(ports, "PRUNE_EVERY", 2)
    monkeypatch.setattr(ports, "_claims_made", 1)
    old = time.time() - ports._HANDED_OUT_S - 1
    for port in (40001, 40002):
        (tmp_path / str(port)).touch()
    os.utime(tmp_path / "40001", (old, old))
    assert ports._claim(40003)  # the second claim of the process: prunes
    assert sorted(p.name for p in tmp_path.iterdir()) == ["40002", "40003"]


def test_a_block_handed_out_is_claimed_port_by_port(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """``jetmesh launch --health-port-base``'s test took a run of free ports, one of which
    another test's server, given it by free_port meanwhile, then bound first. A block's
    ports are claimed as free_port's are, and a block with a port claimed elsewhere is
    passed over."""
    monkeypatch.setattr(ports, "_CLAIMS", tmp_path)
    for port in range(29000, 29012):
        if port not in (29005, 29006, 29007):
            (tmp_path / str(port)).touch()  # claimed by other processes
    assert ports.free_block([0, 1, 2], 29000, 29010) == 29005
    assert all(not claimed_by_another_process(tmp_path, p) for p in (29005, 29006, 29007))
