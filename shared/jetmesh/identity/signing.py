"""Detached Ed25519 signatures over the exact published bytes, carried in NATS headers.

Headers of every signed message::

    Mesh-Sig-Scheme: ed25519          the scheme; receivers reject schemes they do not know
    Mesh-Key:        billing-3fa2...  key id of the signer's certificate
    Mesh-Sig:        <base64url>      64-byte signature over the message body bytes

Under load a sender signs many messages in the same instant. The batch scheme signs them
all with one signature over the root of a Merkle tree of their bytes (see :mod:`.merkle`);
each message still verifies on its own::

    Mesh-Sig-Scheme: ed25519-merkle-sha256
    Mesh-Key:        billing-3fa2...
    Mesh-Sig:        <base64url>      signature over "jetmesh/merkle/v1\0" + root
    Mesh-Sig-Path:   <index>/<count>/<base64url of the sibling hashes, leaf first>

A receiver recomputes the root from the message bytes and the path, then checks the root's
signature, which it verifies once per batch and remembers. A batch of one is signed with
plain ``ed25519``, so a quiet sender costs no more than before.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict

from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

from . import merkle
from .jws import b64d, b64e
from .keys import KeyPair

SCHEME_HEADER = "Mesh-Sig-Scheme"
KEY_HEADER = "Mesh-Key"
SIGNATURE_HEADER = "Mesh-Sig"
PATH_HEADER = "Mesh-Sig-Path"
SCHEME_ED25519 = "ed25519"
SCHEME_MERKLE = "ed25519-merkle-sha256"
KNOWN_SCHEMES = frozenset({SCHEME_ED25519, SCHEME_MERKLE})
MERKLE_DOMAIN = b"jetmesh/merkle/v1\x00"
MAX_BATCH = 512
HASH_SIZE = 32


class Signer:
    """Signs outgoing messages with one agent key."""

    __slots__ = ("_sign", "kid", "name")

    def __init__(self, key: KeyPair) -> None:
        self._sign = key.signing_key().sign
        self.kid = key.kid
        self.name = key.owner

    def sign_raw(self, data: bytes) -> bytes:
        """The 64-byte Ed25519 signature of ``data``."""
        return bytes(self._sign(data).signature)

    def headers(self, data: bytes) -> dict[str, str]:
        """The signature headers for ``data``, to merge into the message's headers."""
        signature = self._sign(data).signature
        return {
            SCHEME_HEADER: SCHEME_ED25519,
            KEY_HEADER: self.kid,
            SIGNATURE_HEADER: b64e(signature),
        }


class BatchSigner:
    """Signs every message sealed in one turn of the event loop with one signature.

    ``await sign(data)`` queues ``data``; the batch is signed when the loop gets to it
    (``call_soon``), so messages produced together (replies and events of tasks that arrived
    together) share one Ed25519 signature.
    """

    def __init__(self, signer: Signer, *, max_batch: int = MAX_BATCH) -> None:
        self._signer = signer
        self._max = max_batch
        self._queue: list[tuple[bytes, asyncio.Future[dict[str, str]]]] = []
        self.batches = 0
        self.messages = 0

    def sign(self, data: bytes) -> asyncio.Future[dict[str, str]]:
        """A future of the signature headers for ``data``."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[dict[str, str]] = loop.create_future()
        if not self._queue:
            loop.call_soon(self._flush)
        self._queue.append((data, future))
        if len(self._queue) >= self._max:
            self._flush()
        return future

    def _flush(self) -> None:
        batch, self._queue = self._queue, []
        if not batch:
            return
        self.batches += 1
        self.messages += len(batch)
        if len(batch) == 1:
            data, future = batch[0]
            if not future.done():
                future.set_result(self._signer.headers(data))
            return
        root, paths = merkle.build([data for data, _ in batch])
        signature = b64e(self._signer.sign_raw(MERKLE_DOMAIN + root))
        count = len(batch)
        for index, ((_, future), path) in enumerate(zip(batch, paths, strict=True)):
            if future.done():
                continue
            future.set_result(
                {
                    SCHEME_HEADER: SCHEME_MERKLE,
                    KEY_HEADER: self._signer.kid,
                    SIGNATURE_HEADER: signature,
                    PATH_HEADER: f"{index}/{count}/{b64e(b''.join(path))}",
                }
            )


class RootCache:
    """Batch roots whose signature this process has verified: one Ed25519 check a batch."""

    def __init__(self, size: int = 4096) -> None:
        self._size = size
        self._roots: OrderedDict[tuple[str, str], bytes] = OrderedDict()

    def merkle_valid(
        self, kid: str, public: VerifyKey, data: bytes, signature_b64: str, path_header: str
    ) -> bool:
        """True when ``data`` is a leaf of a batch whose root ``signature_b64`` signs."""
        try:
            index_s, count_s, siblings_b64 = path_header.split("/", 2)
            index, count = int(index_s), int(count_s)
            siblings = b64d(siblings_b64) if siblings_b64 else b""
        except ValueError:
            return False
        if len(siblings) % HASH_SIZE or count > MAX_BATCH:
            return False
        path = [siblings[i : i + HASH_SIZE] for i in range(0, len(siblings), HASH_SIZE)]
        root = merkle.root_from_path(merkle.leaf_hash(data), index, count, path)
        if root is None:
            return False
        key = (kid, signature_b64)
        known = self._roots.get(key)
        if known is not None:
            return known == root
        if not signature_valid(public, MERKLE_DOMAIN + root, signature_b64):
            return False
        self._roots[key] = root
        if len(self._roots) > self._size:
            self._roots.popitem(last=False)
        return True


def signature_valid(public: VerifyKey, data: bytes, signature_b64: str) -> bool:
    """True when ``signature_b64`` is a valid Ed25519 signature of ``data``."""
    try:
        signature = b64d(signature_b64)
        if len(signature) != 64:
            return False
        public.verify(data, signature)
    except (BadSignatureError, ValueError):
        return False
    return True
