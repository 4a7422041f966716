"""What a handler's context checks before it sends a call, and how it refuses one.

A call must keep to the plan's limits (:mod:`jetmesh.runtime.limits`), be to a role a
loaded policy lets this one call, hand on no more than the delegation chain handed this hop
(:class:`Authority`), and pass the pre-flight (:mod:`jetmesh.runtime.preflight`). One that
does not is not sent: a ``call-refused`` event (limits, pre-flight) or a ``denied`` event
(policy, scopes; also ``ctx.require_scope``) says why, and its error is raised.

:class:`CallChecks` is a base class of :class:`~jetmesh.runtime.context_base.ContextBase`,
which supplies the attributes it declares, so every kind of context refuses calls the same
way.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, NamedTuple, NoReturn

from .. import events as ev
from .._exceptions import CallNotSent, PlanLimitExceeded, ScopeDenied
from ..identity.delegation import Delegation
from ..identity.tokens import Caller
from ..policy.model import Policy as MeshPolicy


class Authority(NamedTuple):
    """The authority a call hands on: these scopes, until then (Unix seconds)."""

    scopes: frozenset[str]
    expires: float


class CallChecks:
    """A context's checks of a call before it is sent, and the events that refuse one."""

    agent: str
    caller: Caller
    delegation: Delegation | None
    emit_event: Callable[..., Awaitable[None]]
    _policy: Callable[[], MeshPolicy | None]

    def _not_in_calls(self, agent: str) -> str | None:
        """Why the policy (when one is loaded) does not let this role call ``agent``."""
        policy = self._policy()
        if policy is None or self.agent not in policy.roles:
            return None
        calls = policy.roles[self.agent].calls
        if agent in calls:
            return None
        allowed = ", ".join(sorted(calls)) or "no role"
        return f"the policy lets {self.agent} call {allowed}, not {agent}"

    def _handoff(
        self, held: frozenset[str], scopes: Iterable[str] | None, expires_in: float | None
    ) -> Authority | str:
        """What a call hands on of ``held`` (the scopes delegated to this hop), or why it
        may not."""
        expires = self.delegation.expires if self.delegation else self.caller.expires
        if expires_in is not None:
            expires = min(expires, time.time() + expires_in)
        if scopes is None:
            return Authority(held, expires)
        asked = frozenset(scopes)
        if asked <= held:
            return Authority(asked, expires)
        wider = ", ".join(sorted(asked - held))
        return f"{self.agent} cannot hand on {wider}: not delegated to it"

    async def _refuse(self, agent: str, refused: PlanLimitExceeded) -> Any:
        """Record a call that breaks the plan's limits, and raise its refusal."""
        await self.emit_event(
            ev.CALL_REFUSED,
            target=agent,
            callee_step=refused.step,
            reason=refused.reason,
            detail=refused.detail,
        )
        raise refused

    async def _not_sent(self, agent: str, step: str, unsent: CallNotSent) -> NoReturn:
        """Record a call its pre-flight refused (``call_preflight``), and raise."""
        await self.emit_event(
            ev.CALL_REFUSED,
            target=agent,
            callee_step=step,
            reason=unsent.reason,
            detail=unsent.detail,
        )
        raise unsent

    async def _deny(self, scope: str, detail: str, *, what: str = "") -> NoReturn:
        """Record a ``denied`` event (who, on whose behalf, what, why) and raise."""
        await self.emit_event(
            ev.DENIED, reason=ScopeDenied.reason, key=scope, target=what or None, detail=detail
        )
        raise ScopeDenied(scope, detail)
