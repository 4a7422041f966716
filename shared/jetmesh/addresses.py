"""Subjects of the wire contract, built and validated in one place.

Example:
    >>> s = Subjects("mesh")
    >>> s.task("billing")
    'mesh.agent.billing.task'
    >>> s.event("01JD0000000000000000000000", "completed")
    'mesh.event.01JD0000000000000000000000.completed'
"""

from __future__ import annotations

import re
from dataclasses import dataclass

TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}\Z")
"""One subject token a user may choose: an agent name, a workflow id, an instance id."""

EVENT_KIND_RE = re.compile(r"^[a-z][a-z0-9_-]*(\.[a-z][a-z0-9_-]*)?\Z")


def check_token(value: str, what: str = "token") -> str:
    """Return ``value`` if it is a safe subject token.

    Rejects the characters that would change the meaning of a subject (``.``, ``*``,
    ``>``, whitespace) so caller data can never inject a wildcard or another subject.

    Raises:
        ValueError: when ``value`` is not a safe token.
    """
    if not TOKEN_RE.match(value):
        raise ValueError(f"invalid {what} {value!r}: use 1-64 of A-Z a-z 0-9 _ -")
    return value


@dataclass(frozen=True, slots=True)
class Subjects:
    """The subjects of one mesh, under a prefix (default ``mesh``)."""

    prefix: str = "mesh"

    def __post_init__(self) -> None:
        check_token(self.prefix, "subject prefix")

    def task(self, agent: str) -> str:
        """Work for an agent role; all replicas share one durable consumer on it."""
        return f"{self.prefix}.agent.{check_token(agent, 'agent name')}.task"

    def reply(self, agent: str, instance: str) -> str:
        """Replies for one running instance of a role (core NATS, not persisted)."""
        return (
            f"{self.prefix}.agent.{check_token(agent, 'agent name')}"
            f".reply.{check_token(instance, 'instance id')}"
        )

    def event(self, workflow: str, kind: str) -> str:
        """One event of a workflow's log."""
        if not EVENT_KIND_RE.match(kind):
            raise ValueError(f"invalid event kind {kind!r}")
        return f"{self.prefix}.event.{check_token(workflow, 'workflow id')}.{kind}"

    def dlq(self, agent: str) -> str:
        """Dead letters of an agent role."""
        return f"{self.prefix}.dlq.{check_token(agent, 'agent name')}"

    # Wildcards for streams and consumers.
    @property
    def all_tasks(self) -> str:
        return f"{self.prefix}.agent.*.task"

    @property
    def all_events(self) -> str:
        return f"{self.prefix}.event.>"

    @property
    def all_dlq(self) -> str:
        return f"{self.prefix}.dlq.>"

    def workflow_events(self, workflow: str) -> str:
        return f"{self.prefix}.event.{check_token(workflow, 'workflow id')}.>"

    def addressee(self, subject: str) -> str | None:
        """The agent a task or reply subject is addressed to, or None for other subjects."""
        parts = subject.split(".")
        if len(parts) < 4 or parts[0] != self.prefix or parts[1] != "agent":
            return None
        if (len(parts) == 4 and parts[3] == "task") or (len(parts) == 5 and parts[3] == "reply"):
            return parts[2]
        return None


def expected_kinds(subject: str) -> frozenset[str]:
    """Envelope kinds that may travel on ``subject`` (empty: no constraint)."""
    parts = subject.split(".")
    if len(parts) >= 3 and parts[1] == "event":
        return _EVENT_KINDS
    if len(parts) >= 4 and parts[1] == "agent":
        return _TASK_KINDS if parts[3] == "task" else _REPLY_KINDS
    return frozenset()


_EVENT_KINDS = frozenset({"event"})
_TASK_KINDS = frozenset({"task"})
_REPLY_KINDS = frozenset({"reply", "error"})


def subject_matches(pattern: str, subject: str) -> bool:
    """NATS wildcard matching: ``*`` is one token, ``>`` the rest (one or more tokens)."""
    pat = pattern.split(".")
    sub = subject.split(".")
    for i, token in enumerate(pat):
        if token == ">":
            return len(sub) > i
        if i >= len(sub) or (token != "*" and token != sub[i]):
            return False
    return len(pat) == len(sub)
