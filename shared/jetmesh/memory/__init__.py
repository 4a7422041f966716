"""Shared working memory in Redis: versioned values, conversations, and the key layout.

``__all__`` is this package's public API; its modules are internal and may change without
notice (see "Public API" in docs/ARCHITECTURE.md). Besides it,
:mod:`jetmesh.memory.connection` (a Redis client with the mesh's retries) is a public module.

Example:
    >>> redis = connect(settings.redis_url, retry_s=30.0)      # doctest: +SKIP
    >>> memory = WorkingMemory(redis, "mesh", workflow, "kb")  # doctest: +SKIP
"""

from .conversation import Conversation, Message
from .nodes import sentinel_view
from .redis_url import SentinelTarget
from .working import Versioned, WorkingMemory

__all__ = [
    "Conversation",
    "Message",
    "SentinelTarget",
    "Versioned",
    "WorkingMemory",
    "sentinel_view",
]
