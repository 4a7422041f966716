"""Redis's refusals of a role's ACL user, as jetmesh errors.

On servers started by ``jetmesh up`` each agent role connects to Redis as its own user,
limited to its key patterns (see docs/security.md). A handler that reaches for another
role's memory gets ``NOPERM`` from Redis; the memory classes raise it as
:class:`~jetmesh.MemoryDenied`, which fails the step for good with a ``denied`` event.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from redis.exceptions import NoPermissionError

from .._exceptions import MemoryDenied


@contextlib.contextmanager
def refused_as_denied(key: str, what: str) -> Iterator[None]:
    """Turn Redis's refusal of ``key`` to this role's user into :class:`MemoryDenied`.

    Raises:
        MemoryDenied: Redis answered ``NOPERM``.
    """
    try:
        yield
    except NoPermissionError as exc:
        raise MemoryDenied(key, f"{what} {key}: {exc}") from None
