"""Merkle trees over message bytes, for signing a batch of messages with one signature.

Leaves are ``SHA-256(0x00 || message)``, inner nodes ``SHA-256(0x01 || left || right)``
(the domain separation of RFC 6962). A level with an odd number of nodes carries its last
node up unchanged. A message's path is the list of sibling hashes from its leaf up; which
side each sibling is on, and which levels have none, follow from the leaf's index and the
number of leaves, so the path needs no flags.

Example:
    >>> root, paths = build([b"a", b"b", b"c"])
    >>> root_from_path(leaf_hash(b"c"), 2, 3, paths[2]) == root
    True
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

_sha256 = hashlib.sha256


def leaf_hash(message: bytes) -> bytes:
    return _sha256(b"\x00" + message).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return _sha256(b"\x01" + left + right).digest()


def build(messages: Sequence[bytes]) -> tuple[bytes, list[list[bytes]]]:
    """The root over ``messages`` and, for each, its path of sibling hashes (leaf first)."""
    level = [leaf_hash(m) for m in messages]
    paths: list[list[bytes]] = [[] for _ in messages]
    positions = list(range(len(messages)))  # each message's index in the current level
    while len(level) > 1:
        for i, pos in enumerate(positions):
            sibling = pos ^ 1
            if sibling < len(level):
                paths[i].append(level[sibling])
        nxt = [node_hash(level[j], level[j + 1]) for j in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
        positions = [p // 2 for p in positions]
    return level[0], paths


def root_from_path(leaf: bytes, index: int, count: int, path: Sequence[bytes]) -> bytes | None:
    """The root implied by ``leaf`` at ``index`` of ``count`` leaves and its ``path``;
    None when the path does not fit the shape (too short, too long, index out of range)."""
    if not 0 <= index < count:
        return None
    node, used = leaf, 0
    while count > 1:
        if index % 2 == 1:
            if used >= len(path):
                return None
            node = node_hash(path[used], node)
            used += 1
        elif index + 1 < count:
            if used >= len(path):
                return None
            node = node_hash(node, path[used])
            used += 1
        index //= 2
        count = (count + 1) // 2
    return node if used == len(path) else None
