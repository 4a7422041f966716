"""Messages that failed verification (``RejectedMessage`` and its stable reason codes), and
calls beyond the plan's limits. (The whole tree is drawn in :mod:`jetmesh._exceptions`.)"""

from __future__ import annotations

from .base import MeshError


class RejectedMessage(MeshError):
    """A message was refused before reaching a handler.

    Attributes:
        reason: a stable machine-readable code (the class's ``code``), also used in
            dead letters and audit events.
    """

    code = "rejected"

    def __init__(self, detail: str) -> None:
        super().__init__(f"{self.code}: {detail}")
        self.detail = detail

    @property
    def reason(self) -> str:
        return self.code


class Oversized(RejectedMessage):
    code = "oversized"


class Unsigned(RejectedMessage):
    code = "unsigned"


class UnknownKey(RejectedMessage):
    code = "unknown-key"


class UntrustedCertificate(RejectedMessage):
    code = "untrusted-certificate"


class ExpiredKey(RejectedMessage):
    code = "expired-key"


class RevokedKey(RejectedMessage):
    """The key id was revoked (``jetmesh keys revoke``): its certificate no longer counts."""

    code = "revoked-key"


class BadSignature(RejectedMessage):
    code = "bad-signature"


class Malformed(RejectedMessage):
    code = "malformed"


class Misaddressed(RejectedMessage):
    code = "misaddressed"


class Stale(RejectedMessage):
    code = "stale"


class Replayed(RejectedMessage):
    code = "replayed"


class ForgedReply(RejectedMessage):
    """A reply that is not the called role's answer to that call: signed by another role,
    or for another workflow or step than the task it names as its parent."""

    code = "forged-reply"


class SignalRefused(RejectedMessage):
    """A signal a waiting step does not take: signed by a role the wait does not accept
    signals from (ingresses only, by default), or bound to another step."""

    code = "signal-refused"


class InvalidToken(RejectedMessage):
    code = "invalid-token"


class ExpiredToken(InvalidToken):
    code = "expired-token"


class BadDelegation(RejectedMessage):
    """A task's delegation chain is missing, does not verify, or does not lead from an
    ingress to this task (a hop removed, reordered, spliced from another chain)."""

    code = "bad-delegation"


class WidenedDelegation(BadDelegation):
    """A hop of the chain handed on a scope it was not given, or a later expiry."""

    code = "delegation-widened"


class SchemaViolation(RejectedMessage):
    code = "schema-violation"


class PlanLimitExceeded(RejectedMessage):
    """A call that would break the limits that keep a runaway plan off the bus.

    Raised by ``ctx.call`` (when awaited) and ``ctx.gather`` before anything is sent, and
    used by a replica to refuse a task that arrives nested too deep. A handler that lets
    it escape fails at once with its ``reason`` (no retry: the same plan would break the
    same limit), and so does a caller that lets the resulting ``CallFailed`` escape.

    Attributes:
        step: the step key the refused call would have had.
        limit: the limit it would break.
    """

    code = "plan-limit-exceeded"

    def __init__(self, detail: str, *, step: str, limit: int) -> None:
        super().__init__(detail)
        self.step = step
        self.limit = limit


class PlanTooDeep(PlanLimitExceeded):
    """The call's step would nest deeper than ``max_call_depth`` calls."""

    code = "plan-too-deep"


class FanOutExceeded(PlanLimitExceeded):
    """The task would make more than ``max_fan_out`` calls."""

    code = "fan-out-exceeded"
