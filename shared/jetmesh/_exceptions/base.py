"""The root of the tree and the errors of no one concern: settings, servers, publishing, the
registry, side effects, scopes, and what handlers raise to steer delivery. (The whole tree
is drawn in :mod:`jetmesh._exceptions`.)"""

from __future__ import annotations

from pathlib import Path


class MeshError(Exception):
    """Root of every jetmesh error."""


class ConfigError(MeshError):
    """Settings, keys or certificates are missing or invalid."""


class PolicyError(ConfigError):
    """A policy file that cannot be read or does not validate.

    ``problems`` lists each as ``<file>: <where>: <what is wrong>``.
    """

    def __init__(self, path: Path | str, problems: list[str]) -> None:
        self.path = Path(path)
        self.problems = problems
        super().__init__(f"invalid policy {path}:\n" + "\n".join(f"  {p}" for p in problems))


class NotProvisioned(ConfigError):
    """Something a role uses but may not make is missing on the servers: a stream, its
    consumer, the registry or its certificate there. The admin step makes them: ``jetmesh
    up``, or ``jetmesh admin provision`` for servers started otherwise."""


class ServerStartError(MeshError, RuntimeError):
    """An embedded server did not come up; the message ends with the tail of its log."""


class MeshTimeout(MeshError, TimeoutError):
    """A call did not get its reply before the deadline."""


class PublishFailed(MeshError):
    """The stream refused a message (or no stream takes its subject)."""


class PublishRefused(PublishFailed):
    """This client may not publish on the subject: the policy in force does not list the
    role among those its identity ``calls`` (checked before anything is sent), or
    nats-server refused the publish (a permissions violation, reported at once instead of
    waiting for a reply that cannot come).

    Attributes:
        identity: who publishes (``cli``, or another ingress).
        subject: where it may not publish.
    """

    def __init__(self, identity: str, subject: str, detail: str) -> None:
        super().__init__(f"{identity} may not publish to {subject}: {detail}")
        self.identity = identity
        self.subject = subject
        self.detail = detail


class RegistryUnavailable(MeshError):
    """The certificate a message names could not be read from the registry (servers away,
    a cluster electing a leader): nothing was decided about the message, and its receiver
    takes it again later (a task is sent back with its delivery's backoff) instead of
    refusing it."""


class EffectInDoubt(MeshError):
    """A side effect guarded by ``ctx.once`` was claimed by a run that did not finish:
    it may or may not have happened, and running it again could do it twice."""


class ScopeDenied(MeshError):
    """A hop asked for a scope it does not have: the caller's scopes ∩ the agent's grant.

    Attributes:
        scope: the scope asked for.
        reason: ``scope-denied``.
        detail: who lacks it (the caller, the agent, or both).
    """

    reason = "scope-denied"

    def __init__(self, scope: str, detail: str) -> None:
        super().__init__(f"{self.reason}: {detail}")
        self.scope = scope
        self.detail = detail


class HandlerControl(MeshError):
    """Base of exceptions that handlers raise to steer delivery."""


class Retry(HandlerControl):
    """Ask for redelivery of the current task after ``delay`` seconds.

    Counts as a delivery: after ``max_deliver`` the task is dead-lettered.
    """

    def __init__(self, delay: float = 1.0, reason: str = "retry requested") -> None:
        super().__init__(reason)
        self.delay = delay
        self.reason = reason


class Reject(HandlerControl):
    """Dead-letter the current task now, with ``reason``; the caller gets an error reply."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
