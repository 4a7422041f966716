"""The nats-py client with three changes, the rest is the stock client.

- Pending commands are written to the socket as one buffer. nats-py's flusher hands its
  list of pending commands to ``writelines``; under uvloop that is a write attempt per
  command, and under load a task's reply, ack and event are several commands.
- Headers are serialised and parsed with the same rules (valid token keys, CR and LF in
  values replaced by spaces; names with whitespace or non-ASCII bytes skipped) but without
  per-character work on every value and name: signature and path headers are long, and
  every message carries several.
- A ``PING`` (``flush()``, the ping interval) is queued behind the commands waiting for
  the flusher, not written to the socket ahead of them: nats-py writes it straight to
  the transport, so the server could answer ``PONG`` before it had read a ``SUB`` queued
  earlier, and ``flush()`` returned with the interest not yet there (a request sent
  next to it got "no responders", a reply to it could be dropped). Its ``PONG`` now means
  the server has read everything sent before it, as ``flush()`` promises.

The overrides are tested directly against stock nats-py in tests/bus/test_nats_client.py
(same bytes, same dicts, nats-py's signatures and method bodies pinned) and pyproject pins
nats-py to its minor version.

Measured 2026-12-03 (2 cores, uvloop, local nats-server, 200,000 publishes of 256 bytes
with 3 headers of 300 bytes, 6 runs): stock nats-py 2.16.0 138-204k msgs/s, this client
230-338k (1.3-1.9x stock), nats-core 0.2.0 (forced onto Python 3.11 for the measurement)
253-407k (1.0-1.4x this client); sequential request/reply 3.2-7.8k/s stock, 3.3-5.3k this
client, 265-283/s nats-core. nats-core and
nats-jetstream are the nats.py repository's new packages (nats-io, MIT, Beta): a new
``nats.client`` API and a JetStream package on top of it. We keep nats-py: nats-core
requires Python 3.13 (jetmesh supports 3.11; on 3.11 pip resolves only the 0.0.0
placeholder, and nats-jetstream 0.3.0, although it declares 3.11, does not parse there);
it writes header keys and values unchecked (no token check, CR and LF kept); and it
flushes at most every 5 ms, which is its request/reply rate above. Worth measuring again
when jetmesh requires 3.13 and the packages leave Beta.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

from nats.aio.client import PING_PROTO, Client
from nats.errors import BadHeaderError, BadSubjectError
from nats.protocol import command as prot_command

_HEADER_KEY_RE = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_NATS_HDR_LINE = b"NATS/1.0\r\n"
_valid_keys: set[str] = set()


def _header_block(headers: dict[str, Any]) -> bytes:
    """``NATS/1.0`` and ``key: value`` lines, as nats-py writes them."""
    parts = [_NATS_HDR_LINE]
    for k, v in headers.items():
        key = k.strip()
        if not key:
            continue
        if key not in _valid_keys:
            if not _HEADER_KEY_RE.fullmatch(key):
                raise BadHeaderError(key)
            _valid_keys.add(key)
        value = str(v).strip()
        if "\r" in value or "\n" in value:
            value = value.replace("\r", " ").replace("\n", " ")
        parts.append(f"{key}: {value}\r\n".encode())
    parts.append(b"\r\n")
    return b"".join(parts)


_MAX_KNOWN_NAMES = 1024
_known_names: dict[bytes, str | None] = {}


def _header_name(name: bytes) -> str | None:
    """The header name as nats-py reads it, or None when nats-py would skip it."""
    if name in _known_names:
        return _known_names[name]
    try:
        key: str | None = name.strip().decode("ascii")
    except UnicodeDecodeError:
        key = None
    if key is not None and any(c.isspace() for c in key):
        key = None
    if len(_known_names) < _MAX_KNOWN_NAMES:
        _known_names[name] = key
    return key


class MeshNatsClient(Client):
    @staticmethod
    def _parse_header_lines(raw: bytes) -> dict[str, str]:
        out: dict[str, str] = {}
        for line in raw.split(b"\r\n"):
            name, sep, value = line.partition(b":")
            if not sep:
                continue
            key = _header_name(name)
            if key is not None:
                out[key] = value.strip().decode("utf-8", "replace")
        return out

    async def _send_publish(
        self,
        subject: str,
        reply: str,
        payload: bytes,
        payload_size: int,
        headers: dict[str, Any] | None,
    ) -> None:
        if subject == "":
            raise BadSubjectError
        if headers is None:
            pub_cmd = prot_command.pub_cmd(subject, reply, payload)
        else:
            pub_cmd = prot_command.hpub_cmd(subject, reply, _header_block(headers), payload)
        self.stats["out_msgs"] += 1
        self.stats["out_bytes"] += payload_size
        await self._send_command(pub_cmd)
        if self._flush_queue is not None and self._flush_queue.empty():
            await self._flush_pending()

    async def _flusher(self) -> None:
        assert self._transport, "Client.connect must be called first"
        assert self._flush_queue, "Client.connect must be called first"
        while True:
            if not self.is_connected or self.is_connecting:
                break
            future: asyncio.Future[None] = await self._flush_queue.get()
            try:
                if self._pending_data_size > 0:
                    pending, self._pending = self._pending, []
                    self._pending_data_size = 0
                    self._transport.write(b"".join(pending))
                    await self._transport.drain()  # type: ignore[no-untyped-call]
            except OSError as e:
                await self._error_cb(e)
                await self._process_op_err(e)
                break
            except (asyncio.CancelledError, RuntimeError, AttributeError):
                break
            finally:
                if not future.done():
                    future.set_result(None)

    async def _send_ping(self, future: asyncio.Future[bool] | None = None) -> None:
        self._pongs.append(future if future is not None else asyncio.Future())
        await self._send_command(PING_PROTO)  # queued, as SUB and PUB are
        await self._flush_pending()
