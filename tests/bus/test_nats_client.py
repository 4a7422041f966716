"""MeshNatsClient's overrides of nats-py's private methods, tested directly.

Headers: ``_send_publish`` (with ``_header_block``) writes the same command bytes as stock
nats-py, and ``_parse_header_lines`` reads the same dicts, over fixed cases and seeded
random ones. ``_send_publish`` and ``_flusher`` on a real nats-server: messages arrive
intact and in order, one socket write per flush, and a server stopped or killed under
the flusher does not hang it. nats-py's private signatures and bodies are pinned, so an
upgrade that changes what we override fails here first (pyproject pins the minor).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import inspect
import os
import random
import signal
from typing import Any

import nats
import nats.aio.client as nats_client_module
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import BadHeaderError, BadSubjectError

from jetmesh.bus import nats_client as mesh_module
from jetmesh.bus.connection import connect
from jetmesh.bus.nats_client import MeshNatsClient
from jetmesh.embedded import NatsServer

# -- headers: serialisation ------------------------------------------------------------


class _Captured:
    """What ``_send_publish`` handed to ``_send_command``, for a client never connected."""

    def __init__(self, client: Client) -> None:
        self.commands: list[bytes] = []
        client._flush_queue = None  # no flusher: _send_publish only queues

        async def send_command(cmd: bytes, priority: bool = False) -> None:
            self.commands.append(bytes(cmd))

        client._send_command = send_command  # type: ignore[method-assign]


async def _publish_bytes(
    cls: type[Client], subject: str, reply: str, payload: bytes, headers: dict[str, Any] | None
) -> bytes | type[Exception]:
    """The PUB/HPUB command ``cls._send_publish`` queues, or the exception type it raises."""
    client = cls()
    captured = _Captured(client)
    try:
        await client._send_publish(subject, reply, payload, len(payload), headers)
    except (BadHeaderError, BadSubjectError) as exc:
        return type(exc)
    assert len(captured.commands) == 1
    assert client.stats["out_msgs"] == 1
    assert client.stats["out_bytes"] == len(payload)
    return captured.commands[0]


SIGNATURE = "ed25519:" + "A" * 86 + "=="
PUBLISH_CASES: list[dict[str, Any] | None] = [
    None,
    {},
    {"Foo": "bar"},
    {"Nats-Msg-Id": "task-1"},
    {"Nats-Msg-Id": "0f8fad5b-d9cb-469f-a165-70867728950e", "Nats-Expected-Stream": "T"},
    {"Jetmesh-Signature": SIGNATURE, "Jetmesh-Path": "a.b.c/" * 40, "Nats-Msg-Id": "x"},
    {"Long": "v" * 10_000},
    {"Many-" + str(n): str(n) * n for n in range(1, 40)},
    {"Crlf": "a\r\nb", "Cr": "x\ry", "Lf": "\nline\n", "Only": "\r\n"},
    {"Inner-Crlf": "one\r\n  two\r\n\tthree"},
    {" Padded ": "  value with inner  spaces  ", "\tTabbed\t": "\tv\t"},
    {"Empty": "", "Blank": "   ", "Ws": "\r\n\t "},
    {"": "skipped", "   ": "skipped too", "Kept": "yes"},
    {"Utf8": "héllo ✓ 日本", "Emoji": "🚀"},
    {"Unicode-Space": "\u2028a\u00a0b\u3000", "Nel": "\x85x\x85"},
    {"Colon": "a: b: c", "Token!#$%&'*+-.^_`|~09Az": "all token characters"},
    {"Dup": "1", "dup": "2", "DUP": "3"},
    {"Bad Key": "v"},
    {"Bad:Key": "v"},
    {"Bad\r\nKey": "v"},
    {"Ünicode": "v"},
    {"(paren)": "v"},
    {"Good": "v", "Bad/Key": "v"},
    {"Key\x00": "v"},
    {"Key\x7f": "v"},
]


@pytest.mark.parametrize("headers", PUBLISH_CASES)
@pytest.mark.parametrize("reply", ["", "_INBOX.abc.1"])
async def test_publish_writes_the_same_command_as_nats_py(
    headers: dict[str, Any] | None, reply: str
) -> None:
    """Byte for byte, or the same error (invalid header keys: BadHeaderError)."""
    payload = b"payload \r\n bytes"
    stock = await _publish_bytes(Client, "jetmesh.x", reply, payload, headers)
    ours = await _publish_bytes(MeshNatsClient, "jetmesh.x", reply, payload, headers)
    assert ours == stock
    # twice: the cache of valid keys must not change the result (nor admit a bad key)
    assert await _publish_bytes(MeshNatsClient, "jetmesh.x", reply, payload, headers) == stock


async def test_invalid_header_keys_raise_bad_header_error_both_ways() -> None:
    for key in ["Bad Key", "a:b", "é", "(x)", "a\nb", "a/b", "a@b", "a=b", "[x]", "a,b"]:
        for cls in (Client, MeshNatsClient):
            assert await _publish_bytes(cls, "s", "", b"", {key: "v"}) is BadHeaderError, key


async def test_empty_subject_is_refused_both_ways() -> None:
    for cls in (Client, MeshNatsClient):
        assert await _publish_bytes(cls, "", "", b"x", None) is BadSubjectError
        assert await _publish_bytes(cls, "", "", b"x", {"A": "b"}) is BadSubjectError


_KEY_CHARS = "AZaz09-_.!#~ :é\t\r\n/()"
_VALUE_CHARS = "abc XYZ 09 \t\r\n:;é✓\u2028\x85\x00"


def _random_headers(rng: random.Random) -> dict[str, str]:
    headers: dict[str, str] = {}
    for _ in range(rng.randint(0, 6)):
        if rng.random() < 0.8:
            key = "".join(rng.choice("ABCDEFabcdef-_.019") for _ in range(rng.randint(1, 24)))
        else:
            key = "".join(rng.choice(_KEY_CHARS) for _ in range(rng.randint(0, 8)))
        value = "".join(rng.choice(_VALUE_CHARS) for _ in range(rng.randint(0, 400)))
        headers[key] = value
    return headers


async def test_publish_matches_nats_py_on_random_headers() -> None:
    rng = random.Random(17)
    for _ in range(1500):
        headers = _random_headers(rng)
        stock = await _publish_bytes(Client, "s.t", "", b"p", headers)
        assert await _publish_bytes(MeshNatsClient, "s.t", "", b"p", headers) == stock, headers


def test_header_rules_are_nats_pys() -> None:
    """The key pattern is nats-py's, and values lose CR and LF the way nats-py's do."""
    assert mesh_module._HEADER_KEY_RE.pattern == nats_client_module._HEADER_KEY_RE.pattern
    assert str.maketrans({"\r": " ", "\n": " "}) == nats_client_module._HEADER_VALUE_NEWLINES
    assert (
        nats_client_module.NATS_HDR_LINE + nats_client_module._CRLF_ == mesh_module._NATS_HDR_LINE
    )


# -- headers: parsing ------------------------------------------------------------------

PARSE_CASES: list[bytes] = [
    b"",
    b"\r\n",
    b"Foo: bar\r\n\r\n",
    b"Foo:bar\r\n",
    b"Foo:\tbar\t\r\n",
    b"Foo:   bar   \r\nBaz: qux\r\n\r\n",
    b"Nats-Msg-Id: task-1\r\nNats-Expected-Stream: T\r\n\r\n",
    b"Jetmesh-Signature: " + SIGNATURE.encode() + b"\r\nJetmesh-Path: " + b"a.b/" * 200 + b"\r\n",
    b"Long: " + b"v" * 20_000 + b"\r\n\r\n",
    b"Empty:\r\nBlank:   \r\n\r\n",
    b"Colon: a: b: c\r\n",
    b"Bad Name: skipped\r\nGood: kept\r\n",
    b"Tab\tName: skipped\r\n",
    b"  Padded  : kept as Padded\r\n",
    b"N\xc3\xa9: non-ascii name skipped\r\nOk: 1\r\n",
    b"\xff\xfe: bytes name skipped\r\n",
    b"Utf8: h\xc3\xa9llo \xe2\x9c\x93\r\n",
    b"Broken: \xff\xfe\xfd value\r\n",
    b"no colon line\r\nK: v\r\n",
    b"Dup: 1\r\nDup: 2\r\ndup: 3\r\n",
    b"A\x1cB: isspace in name\r\nC\x0bD: vertical tab\r\n",
    b": empty name\r\n",
    b"Lone\rCR: v\r\nLF\nin: v\r\n",
    b"K: v",  # no final CRLF
    b"\r\n\r\n\r\nK: v\r\n\r\n\r\n",
]


@pytest.mark.parametrize("raw", PARSE_CASES)
def test_parse_header_lines_reads_the_same_dict_as_nats_py(raw: bytes) -> None:
    expected = Client._parse_header_lines(raw)
    assert MeshNatsClient._parse_header_lines(raw) == expected
    assert MeshNatsClient._parse_header_lines(raw) == expected  # the cached names again


async def test_parse_reads_back_what_publish_writes() -> None:
    for headers in PUBLISH_CASES:
        cmd = await _publish_bytes(MeshNatsClient, "s", "", b"", headers)
        if not isinstance(cmd, bytes) or not cmd.startswith(b"HPUB"):
            continue
        block = cmd.split(b"\r\n", 1)[1]
        raw = block[len(b"NATS/1.0\r\n") :]
        assert MeshNatsClient._parse_header_lines(raw) == Client._parse_header_lines(raw)


def test_parse_matches_nats_py_on_random_blocks() -> None:
    rng = random.Random(23)
    alphabet = [b"a", b"Z", b"0", b"-", b":", b" ", b"\t", b"\r", b"\n", b"\r\n", b"\xff"]
    alphabet += [b"\xc3\xa9", b"\x1c", b"Nats-Msg-Id", b": "]
    for _ in range(3000):
        raw = b"".join(rng.choice(alphabet) for _ in range(rng.randint(0, 60)))
        assert MeshNatsClient._parse_header_lines(raw) == Client._parse_header_lines(raw), raw


def test_parse_is_right_past_the_cache_of_names() -> None:
    """The cache of header names is bounded; names past it are still read right."""
    try:
        for n in range(mesh_module._MAX_KNOWN_NAMES + 300):
            raw = f"Name-{n}: {n}\r\nBad Name {n}: x\r\n".encode()
            assert MeshNatsClient._parse_header_lines(raw) == {f"Name-{n}": str(n)}
        assert len(mesh_module._known_names) <= mesh_module._MAX_KNOWN_NAMES
    finally:
        mesh_module._known_names.clear()  # the other tests' names are cached again


STATUS_CASES: list[bytes] = [
    b"NATS/1.0\r\nFoo: bar\r\n\r\n",
    b"NATS/1.0 404\r\n\r\n",
    b"NATS/1.0 503\r\n\r\n",
    b"NATS/1.0 404 No Messages\r\n\r\n",
    b"NATS/1.0 408 Request Timeout\r\nNats-Pending-Messages: 1\r\nNats-Pending-Bytes: 0\r\n\r\n",
    b"NATS/1.0 409 Message Size Exceeds MaxBytes\r\n\r\n",
    b"NATS/1.0 100 Idle Heartbeat\r\nNats-Last-Consumer: 1016\r\nNats-Last-Stream: 1024\r\n\r\n",
    b"NATS/1.0 100 FlowControl Request\r\n\r\n",
    b"NATS/1.0 100\r\nNats-Last-Consumer: 3\r\n\r\n",
]


@pytest.mark.parametrize("raw", STATUS_CASES)
async def test_status_lines_read_the_same_as_nats_py(raw: bytes) -> None:
    """Through nats-py's own ``_process_headers``, which calls the override."""
    stock = await Client()._process_headers(raw)
    assert await MeshNatsClient()._process_headers(raw) == stock


def test_the_override_is_the_parser_nats_py_uses() -> None:
    """With fast_mail_parser installed, nats-py parses headers with it instead and the
    override would be bypassed unseen."""
    assert vars(nats_client_module)["parse_email"] is None


# -- nats-py's private methods we override ---------------------------------------------

_STOCK_SOURCE_SHA256 = {
    # sha256 of inspect.getsource(Client.<name>) in nats-py 2.16.0. A new digest means
    # nats-py changed a method MeshNatsClient overrides: compare the new body with ours
    # (shared/jetmesh/bus/nats_client.py), bring over what changed, then update it here.
    "_send_publish": "300b534f8eabee7476d04f56e0dc8bc297c7aca425f7cf613315296d76dd9be0",
    "_flusher": "43957ffb357d6d94fb9f8d89c52523a02bd82bdba1104150c304d6ba5c867f41",
    "_parse_header_lines": "049cf69148e0bb4f6d897648c92c3a3816df04091fa345f01b93316bbc4d187f",
    "_send_ping": "d57b2f820443afb4ed739d9c0bf771f3881c6a7acd9ded3f3db7edc60305d682",
}


def _params(fn: Any) -> list[tuple[str, Any, Any]]:
    return [(p.name, p.kind, p.default) for p in inspect.signature(fn).parameters.values()]


@pytest.mark.parametrize("name", sorted(_STOCK_SOURCE_SHA256))
def test_overridden_nats_py_methods_keep_their_signatures(name: str) -> None:
    stock = inspect.getattr_static(Client, name)
    ours = inspect.getattr_static(MeshNatsClient, name)
    assert ours is not stock
    assert type(ours) is type(stock)  # staticmethod stays staticmethod
    assert inspect.iscoroutinefunction(getattr(MeshNatsClient, name)) == (
        inspect.iscoroutinefunction(getattr(Client, name))
    )
    assert _params(getattr(MeshNatsClient, name)) == _params(getattr(Client, name))


def test_overridden_nats_py_signatures_are_the_ones_we_wrote_for() -> None:
    pk = inspect.Parameter.POSITIONAL_OR_KEYWORD
    empty = inspect.Parameter.empty
    assert _params(Client._send_publish) == [
        ("self", pk, empty),
        ("subject", pk, empty),
        ("reply", pk, empty),
        ("payload", pk, empty),
        ("payload_size", pk, empty),
        ("headers", pk, empty),
    ]
    assert _params(Client._flusher) == [("self", pk, empty)]
    assert _params(Client._parse_header_lines) == [("raw", pk, empty)]
    assert _params(Client._send_ping) == [("self", pk, empty), ("future", pk, None)]
    # what the overrides call or touch on nats-py's client
    assert _params(Client._send_command) == [
        ("self", pk, empty),
        ("cmd", pk, empty),
        ("priority", pk, False),
    ]
    assert _params(Client._flush_pending) == [("self", pk, empty), ("force_flush", pk, False)]
    client = Client()
    for attr in ("_pending", "_pending_data_size", "_flush_queue", "_transport", "stats", "_pongs"):
        assert hasattr(client, attr), attr
    for method in ("_error_cb", "_process_op_err", "_process_headers", "_flusher_task"):
        assert hasattr(client, method), method


@pytest.mark.parametrize("name", sorted(_STOCK_SOURCE_SHA256))
def test_overridden_nats_py_methods_are_unchanged(name: str) -> None:
    source = inspect.getsource(getattr(Client, name))
    digest = hashlib.sha256(source.encode()).hexdigest()
    assert digest == _STOCK_SOURCE_SHA256[name], (
        f"nats-py's Client.{name} changed: MeshNatsClient overrides it "
        "(shared/jetmesh/bus/nats_client.py); compare, then update the digest"
    )


# -- _send_publish and _flusher on a real nats-server ----------------------------------

pytest_integration = pytest.mark.integration


def _expected_headers(headers: dict[str, str] | None) -> dict[str, str] | None:
    if headers is None:
        return None
    return {k.strip(): v.strip().replace("\r", " ").replace("\n", " ") for k, v in headers.items()}


def _message(n: int) -> tuple[bytes, dict[str, str] | None]:
    payload = bytes([n % 251]) * (n * 37 % 3000) + f"#{n}".encode()
    if n % 7 == 0:
        payload += b"z" * 200_000  # past the socket buffer: drain waits
    if n % 2:
        return payload, None
    headers = {
        "Nats-Msg-Id": f"m-{n}",
        "Jetmesh-Signature": SIGNATURE + str(n),
        "Jetmesh-Path": "path/" * (n % 30),
        "Crlf": f"line\r\n{n}",
    }
    return payload, headers


async def _collect(client: Client, subject: str, count: int) -> tuple[list[Msg], asyncio.Event]:
    received: list[Msg] = []
    done = asyncio.Event()

    async def on_msg(msg: Msg) -> None:
        received.append(msg)
        if len(received) == count:
            done.set()

    await client.subscribe(subject, cb=on_msg, pending_bytes_limit=256 * 1024 * 1024)
    # nats-py's flush writes its PING to the socket at once, ahead of the SUB still
    # queued for the flusher (stock and ours alike): the first PONG does not prove the
    # server has the SUB, the second does. Publishers on other connections wait for it.
    await client.flush()
    await client.flush()
    return received, done


@pytest_integration
async def test_publishes_arrive_intact_and_in_order(fresh_nats_server: NatsServer) -> None:
    """A MeshNatsClient publishes with and without headers, small and large payloads;
    a stock nats-py subscriber and a MeshNatsClient one read the same, in order."""
    count = 1500
    publisher = await connect(fresh_nats_server.url, "pub")
    mesh_sub = await connect(fresh_nats_server.url, "mesh-sub")
    stock_sub = Client()
    await stock_sub.connect(fresh_nats_server.url, name="stock-sub")
    assert isinstance(publisher, MeshNatsClient)
    assert isinstance(mesh_sub, MeshNatsClient)
    try:
        got_mesh, mesh_done = await _collect(mesh_sub, "order.x", count)
        got_stock, stock_done = await _collect(stock_sub, "order.x", count)
        for n in range(count):
            payload, headers = _message(n)
            await publisher.publish("order.x", payload, headers=headers)
            if n % 100 == 0:
                await asyncio.sleep(0)  # let the flusher run mid-stream too
        async with asyncio.timeout(30):
            await mesh_done.wait()
            await stock_done.wait()
        for received in (got_mesh, got_stock):
            assert len(received) == count
            for n, msg in enumerate(received):
                payload, headers = _message(n)
                assert msg.data == payload, n
                assert msg.headers == _expected_headers(headers), n
        assert [m.headers for m in got_mesh] == [m.headers for m in got_stock]
    finally:
        await publisher.close()
        await mesh_sub.close()
        await stock_sub.close()


class _Writes:
    """Counts what the client hands its transport."""

    def __init__(self, client: Client) -> None:
        transport = client._transport
        assert transport is not None
        self.writes: list[bytes] = []
        self.writelines = 0
        self.wire = bytearray()
        """Everything written, in order."""
        write, writelines = transport.write, transport.writelines

        def counted_write(payload: bytes) -> None:
            self.writes.append(bytes(payload))
            self.wire += payload
            write(payload)

        def counted_writelines(payload: list[bytes]) -> None:
            self.writelines += 1
            self.wire += b"".join(payload)
            writelines(payload)

        transport.write = counted_write  # type: ignore[method-assign]
        transport.writelines = counted_writelines  # type: ignore[method-assign]

    def publishes(self) -> list[bytes]:
        return [w for w in self.writes if w.startswith((b"PUB ", b"HPUB "))]


@pytest_integration
async def test_a_flush_after_subscribe_returns_once_the_server_has_the_subscription(
    fresh_nats_server: NatsServer,
) -> None:
    """``flush()`` promises the server has read what was sent before it. Stock nats-py
    writes the ``PING`` straight to the socket, ahead of a ``SUB`` still queued for the
    flusher: its ``PONG`` can come before the server has the subscription, and a request
    sent next gets "no responders" (seen as a rare failure of a test that listens and
    never answers). Ours queues the ``PING`` behind it."""
    stock = await nats.connect(fresh_nats_server.url, name="stock")
    ours = await connect(fresh_nats_server.url, "ours")
    asker = await connect(fresh_nats_server.url, "asker")

    async def answer(msg: Msg) -> None:
        await msg.respond(b"here")

    try:
        for client, sub_first in ((stock, False), (ours, True)):
            writes = _Writes(client)
            for n in range(20):
                subject = f"ping.order.{client.options['name']}.{n}"
                await client.subscribe(subject, cb=answer)  # queued: no await yields here
                await client.flush()
                wire = bytes(writes.wire)
                sub_at = wire.rindex(b"SUB " + subject.encode())
                assert (sub_at < wire.rindex(b"PING\r\n")) is sub_first, wire[-200:]
                if sub_first:
                    assert (await asker.request(subject, b"?", timeout=2.0)).data == b"here"
    finally:
        for nc in (stock, ours, asker):
            await nc.close()


@pytest_integration
async def test_one_socket_write_per_flush(fresh_nats_server: NatsServer) -> None:
    """Commands queued between two runs of the flusher go out as one ``write``."""
    nc = await connect(fresh_nats_server.url, "writes")
    sub = await connect(fresh_nats_server.url, "writes-sub")
    try:
        rounds, per_round = 10, 50
        received, done = await _collect(sub, "writes.x", rounds * per_round)
        writes = _Writes(nc)
        for r in range(rounds):
            for n in range(per_round):  # no await yields here: all queue for one flush
                headers = {"Nats-Msg-Id": f"{r}-{n}"} if n % 2 else None
                await nc.publish("writes.x", f"{r}-{n}".encode(), headers=headers)
            assert len(writes.publishes()) == r  # queued, not written yet
            await asyncio.sleep(0.01)  # the flusher writes the round
            assert len(writes.publishes()) == r + 1
            last = writes.publishes()[-1]
            assert last.count(b"PUB writes.x ") == per_round
        assert writes.writelines == 0
        try:
            async with asyncio.timeout(10):
                await done.wait()
        except TimeoutError:
            raise AssertionError(
                f"received {len(received)}; pub {nc.stats} {nc.is_connected}; sub {sub.stats}"
                f" {sub.is_connected}; last {[m.data for m in received[-3:]]}"
            ) from None
        assert [m.data for m in received] == [
            f"{r}-{n}".encode() for r in range(rounds) for n in range(per_round)
        ]
    finally:
        await nc.close()
        await sub.close()


@pytest_integration
async def test_a_killed_server_does_not_hang_the_flusher(fresh_nats_server: NatsServer) -> None:
    """The server is stopped (SIGSTOP) with more queued than the socket takes: the
    flusher waits in drain. Killed, the flusher gives up within a bound, the client
    reconnects to the server started again, and publishes flow."""
    reconnected = asyncio.Event()

    async def on_reconnect() -> None:
        reconnected.set()

    nc = await connect(
        fresh_nats_server.url, "stalled", on_reconnect=[on_reconnect], flush_timeout=5
    )
    pid = fresh_nats_server.pid
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)
    try:
        big = b"s" * 500_000

        async def flood() -> None:
            for _ in range(40):  # 20 MB: past the socket buffers and pending_size
                await nc.publish("stall.x", big, headers={"Nats-Msg-Id": "x"})

        flooding = asyncio.create_task(flood())
        await asyncio.sleep(0.5)
        assert not flooding.done()  # waiting on the flusher, itself waiting in drain
        assert nc._flusher_task is not None
        assert not nc._flusher_task.done()
    finally:
        fresh_nats_server.kill()
    async with asyncio.timeout(10):  # bounded: the flusher sees the reset, no hang
        with contextlib.suppress(Exception):  # nats-py's error of a lost connection is fine
            await flooding
    await asyncio.to_thread(fresh_nats_server.start)
    try:
        async with asyncio.timeout(15):
            await reconnected.wait()
            received, done = await _collect(nc, "after.x", 3)
            for n in range(3):
                await nc.publish("after.x", f"after-{n}".encode(), headers={"N": str(n)})
            await nc.flush(timeout=5)
            await done.wait()
        assert [m.data for m in received] == [b"after-0", b"after-1", b"after-2"]
        assert nc._flusher_task is not None
        assert not nc._flusher_task.done()
    finally:
        await nc.close()


@pytest_integration
async def test_a_stopped_server_resumed_gets_everything(fresh_nats_server: NatsServer) -> None:
    """SIGSTOP then SIGCONT with the flusher waiting in drain: all arrive, in order."""
    nc = await connect(fresh_nats_server.url, "paused")
    sub = await connect(fresh_nats_server.url, "paused-sub")
    pid = fresh_nats_server.pid
    assert pid is not None
    try:
        count = 60
        received, done = await _collect(sub, "pause.x", count)
        os.kill(pid, signal.SIGSTOP)
        try:

            async def flood() -> None:
                for n in range(count):
                    await nc.publish("pause.x", bytes([n]) * 200_000, headers={"N": str(n)})

            flooding = asyncio.create_task(flood())
            await asyncio.sleep(0.5)
            assert not flooding.done()  # the flusher waits in drain
        finally:
            os.kill(pid, signal.SIGCONT)
        async with asyncio.timeout(15):
            await flooding
            await done.wait()
        assert [m.headers for m in received] == [{"N": str(n)} for n in range(count)]
        assert [m.data for m in received] == [bytes([n]) * 200_000 for n in range(count)]
    finally:
        await nc.close()
        await sub.close()
