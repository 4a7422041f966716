"""Each node's own copy of a stream, read from its files: to compare the replicas of a
cluster message by message (a client reading through the cluster gets the leader's copy,
or whichever replica answers).

nats-server keeps a stream in ``<store_dir>/jetstream/<account>/streams/<stream>/msgs/*.blk``,
message blocks of records (server/filestore.go, ``writeMsgRecordLocked``)::

    u32 length (bit 31: has headers) | u64 sequence (bit 63: erased, bit 62: tombstone)
    | i64 timestamp | u16 subject length | subject | [u32 headers length | headers]
    | payload | 8-byte hash

Read it with the servers stopped (``jetmesh down``): a running server may be writing the
last record. Unencrypted, uncompressed stores only (jetmesh configures neither).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

HEADER = struct.Struct("<IQqH")
HAS_HEADERS = 1 << 31
ERASED = 1 << 63
TOMBSTONE = 1 << 62
HASH_BYTES = 8


@dataclass(frozen=True)
class Stored:
    """One message as a node stored it."""

    subject: str
    timestamp: int
    headers: bytes
    payload: bytes


def stream_dirs(store_dir: Path, stream: str) -> list[Path]:
    """The directories of ``stream`` under a node's JetStream store (one per account)."""
    return sorted(store_dir.glob(f"jetstream/*/streams/{stream}/msgs"))


def read_stream(store_dir: Path, stream: str) -> dict[int, Stored]:
    """Every message of ``stream`` a node holds, by sequence (erased ones left out).

    Raises:
        ValueError: a block ends in the middle of a record, or a record is malformed.
        FileNotFoundError: the node holds no such stream.
    """
    dirs = stream_dirs(store_dir, stream)
    if not dirs:
        raise FileNotFoundError(f"no stream {stream} under {store_dir}")
    out: dict[int, Stored] = {}
    for block in sorted(dirs[0].glob("*.blk"), key=lambda p: int(p.stem)):
        _read_block(block.read_bytes(), block, out)
    return out


def _read_block(buf: bytes, path: Path, out: dict[int, Stored]) -> None:
    index = 0
    while index < len(buf):
        if index + HEADER.size > len(buf):
            raise ValueError(f"{path}: record header cut at byte {index}")
        length, seq, ts, subject_len = HEADER.unpack_from(buf, index)
        has_headers = bool(length & HAS_HEADERS)
        length &= ~HAS_HEADERS
        if length < HEADER.size + HASH_BYTES or index + length > len(buf):
            raise ValueError(f"{path}: record of {length} bytes at byte {index}")
        data = buf[index + HEADER.size : index + length - HASH_BYTES]
        index += length
        if seq & (ERASED | TOMBSTONE) or seq == 0:
            if seq & TOMBSTONE:
                out.pop(seq & ~(ERASED | TOMBSTONE), None)
            continue
        subject = data[:subject_len].decode()
        rest = data[subject_len:]
        headers = b""
        if has_headers:
            (headers_len,) = struct.unpack_from("<I", rest)
            headers, rest = rest[4 : 4 + headers_len], rest[4 + headers_len :]
        out[seq] = Stored(subject, ts, headers, rest)


def latest_by_subject(copy: dict[int, Stored]) -> dict[int, Stored]:
    """Only the last message of each subject: what a stream keeping one message per
    subject (a key-value bucket of history 1) holds. Its older revisions are deleted, and a
    node may still keep a deleted record in its files (the delete noted in its index) where
    a node that caught up from a snapshot never wrote it."""
    last: dict[str, int] = {}
    for seq, stored in copy.items():
        if seq > last.get(stored.subject, 0):
            last[stored.subject] = seq
    return {seq: copy[seq] for seq in sorted(last.values())}


def compare_replicas(copies: dict[str, dict[int, Stored]]) -> list[str]:
    """What differs between the nodes' copies of one stream, in words (empty: the same
    sequences, each with the same subject, timestamp, headers and payload)."""
    problems: list[str] = []
    nodes = sorted(copies)
    first = copies[nodes[0]]
    for node in nodes[1:]:
        other = copies[node]
        if missing := sorted(first.keys() - other.keys()):
            problems.append(f"{node} lacks {len(missing)} messages (first seq {missing[0]})")
        if extra := sorted(other.keys() - first.keys()):
            problems.append(f"{node} has {len(extra)} more messages (first seq {extra[0]})")
        differ = [seq for seq in first.keys() & other.keys() if first[seq] != other[seq]]
        if differ:
            problems.append(f"{node}: {len(differ)} messages differ (first seq {min(differ)})")
    return problems
