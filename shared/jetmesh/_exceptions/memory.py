"""Working memory refusing a write. (The whole tree is drawn in :mod:`jetmesh._exceptions`.)"""

from __future__ import annotations

from .base import MeshError


class MemoryRefused(MeshError):
    """Working memory refused a write."""


class MemoryConflict(MemoryRefused):
    """A compare-and-set write found another version than the one it expected.

    Attributes:
        key: the Redis key.
        expected: the version the writer held.
        actual: the version stored now.
    """

    def __init__(self, key: str, expected: int, actual: int) -> None:
        super().__init__(f"{key}: expected version {expected}, found {actual}")
        self.key = key
        self.expected = expected
        self.actual = actual


class MemoryTooLarge(MemoryRefused, ValueError):
    """A value is over the memory's size limit."""


class MemoryDenied(MemoryRefused):
    """Redis refused the role's user a key outside its patterns (another role's memory):
    the server's ACL, generated from the policy. A handler that lets it escape fails at
    once (no retry: the same key would be refused again) with a ``denied`` event.

    Attributes:
        key: the Redis key.
        reason: ``memory-denied``.
        detail: what was refused, and Redis's answer.
    """

    reason = "memory-denied"

    def __init__(self, key: str, detail: str) -> None:
        super().__init__(f"{self.reason}: {detail}")
        self.key = key
        self.detail = detail


class MemoryFull(MemoryRefused):
    """Redis is at its memory limit (``maxmemory``, policy ``noeviction``: nothing jetmesh
    keeps is dropped to make room) and refused a write (``OOM``). The step fails and is
    retried with the task's backoff: keys expire, or the operator raises the limit.

    Attributes:
        key: the Redis key written.
        reason: ``memory-full``.
        detail: what was refused, and Redis's answer.
    """

    reason = "memory-full"

    def __init__(self, key: str, detail: str) -> None:
        super().__init__(f"{self.reason}: {detail}")
        self.key = key
        self.detail = detail
