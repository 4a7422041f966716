"""The agent runtime: agents and their handlers, the handler context, running replicas.

``__all__`` is this package's public API; its modules are internal and may change without
notice (see "Public API" in docs/ARCHITECTURE.md). The handler's :class:`~jetmesh.Context`,
:class:`~jetmesh.Replica`, :func:`~jetmesh.serve` and :func:`~jetmesh.load_agent` sit above
the client (they make calls), so the root package ``jetmesh`` exports them; this package
exports what sits below it. Human approval, built on this runtime, is exported by
:mod:`jetmesh.patterns`.

Example:
    >>> agent = Agent("kb", scopes=["kb:read"])
    >>> agent.name, agent.scopes
    ('kb', ('kb:read',))
"""

from .agent import Agent, Handler
from .context_base import Authority, ContextBase
from .gathering import Failed, Ok, Outcome, PendingCall
from .gc_tuning import settle_heap
from .ledger import StepLedger
from .limits import PlanLimits
from .preflight import Preflight, preflight_for
from .streaming import Chunk, StreamingCall, read_chunks, stream_request

__all__ = [
    "Agent",
    "Authority",
    "Chunk",
    "ContextBase",
    "Failed",
    "Handler",
    "Ok",
    "Outcome",
    "PendingCall",
    "PlanLimits",
    "Preflight",
    "StepLedger",
    "StreamingCall",
    "preflight_for",
    "read_chunks",
    "settle_heap",
    "stream_request",
]
