"""Conversation memory for model calls: append messages, read a window, trim.

A Redis list per (workflow, agent, conversation name) of JSON messages, newest last.

Example:
    >>> convo = ctx.conversation("support")                           # doctest: +SKIP
    >>> await convo.append(Message("user", "my card was charged twice"))
    >>> recent = await convo.window(10)
"""

from __future__ import annotations

import msgspec
from redis.asyncio import Redis

from .._exceptions import MemoryTooLarge
from ..envelope import encode
from . import keys
from .refused import refused

DEFAULT_MAX_MESSAGES = 200


class Message(msgspec.Struct, frozen=True):
    """One turn of a conversation."""

    role: str
    content: str
    name: str = ""


class Conversation:
    """A bounded list of messages in Redis."""

    def __init__(
        self,
        redis: Redis,
        prefix: str,
        workflow: str,
        agent: str,
        name: str,
        *,
        max_messages: int = DEFAULT_MAX_MESSAGES,
        max_message_bytes: int = 64 * 1024,
        ttl_s: int = 7 * 24 * 3600,
    ) -> None:
        self._redis = redis
        self.agent = agent
        self.key = keys.conversation(prefix, workflow, agent, name)
        self.max_messages = max_messages
        self.max_message_bytes = max_message_bytes
        self.ttl_s = ttl_s

    async def append(self, *messages: Message) -> int:
        """Add messages at the end, keep only the newest ``max_messages``; returns the
        length after trimming.

        Raises:
            MemoryTooLarge: a message is over ``max_message_bytes``.
            MemoryFull: Redis is at its memory limit.
        """
        encoded = [encode(m) for m in messages]
        for data in encoded:
            if len(data) > self.max_message_bytes:
                raise MemoryTooLarge(f"{self.key}: message of {len(data)} bytes")
        with refused(self.key, "append to", role=self.agent):
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.rpush(self.key, *encoded)
                pipe.ltrim(self.key, -self.max_messages, -1)
                pipe.expire(self.key, self.ttl_s)
                pipe.llen(self.key)
                *_, length = await pipe.execute()
        return int(length)

    async def window(self, last: int) -> list[Message]:
        """The newest ``last`` messages, oldest first."""
        with refused(self.key, "read", role=self.agent):
            raw = await self._redis.lrange(self.key, -last, -1) if last > 0 else []
        return [msgspec.json.decode(r, type=Message) for r in raw]

    async def trim(self, keep: int) -> None:
        """Drop all but the newest ``keep`` messages."""
        with refused(self.key, "trim", role=self.agent):
            if keep <= 0:
                await self._redis.delete(self.key)
            else:
                await self._redis.ltrim(self.key, -keep, -1)

    async def clear(self) -> None:
        with refused(self.key, "clear", role=self.agent):
            await self._redis.delete(self.key)
