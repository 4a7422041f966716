"""The patterns of the field as message patterns: small helpers a handler calls, over the
wire contract, never a framework that owns the process. Any process that sends and
answers the same messages can play any role (docs/patterns.md shows them).

- router: :func:`route` classifies a task and forwards it to one or several roles.
- orchestrator-worker and hierarchical: :func:`fan_out` sends N calls in parallel, with a
  concurrency limit, a deadline per call and a policy for partial failure.
- critic-refiner: :func:`refine` drafts, reviews and refines until a threshold or
  max rounds, each round in the workflow's memory.
- human approval: :func:`require_approval` waits, durably, for ``jetmesh approve`` or
  ``jetmesh deny``, with a timeout and an escalation; its events are the ``APPROVAL_*``
  kinds.

``__all__`` is this package's public API; its modules are internal and may change without
notice (see "Public API" in docs/ARCHITECTURE.md).
"""

from ..runtime.approval import (
    APPROVAL_DENIED,
    APPROVAL_ESCALATED,
    APPROVAL_GRANTED,
    APPROVAL_REQUESTED,
    APPROVAL_TIMED_OUT,
    Approval,
    ApprovalRequest,
    Verdict,
    approval_signal,
    require_approval,
)
from .critic import (
    Critic,
    Draft,
    DraftRequest,
    Producer,
    Refined,
    Review,
    ReviewRequest,
    Round,
    RoundRecord,
    critic_role,
    producer_role,
    refine,
)
from .fanout import FanIn, fan_out
from .router import Classification, Classifier, Routed, Routes, classify_with_model, route

__all__ = [
    "APPROVAL_DENIED",
    "APPROVAL_ESCALATED",
    "APPROVAL_GRANTED",
    "APPROVAL_REQUESTED",
    "APPROVAL_TIMED_OUT",
    "Approval",
    "ApprovalRequest",
    "Classification",
    "Classifier",
    "Critic",
    "Draft",
    "DraftRequest",
    "FanIn",
    "Producer",
    "Refined",
    "Review",
    "ReviewRequest",
    "Round",
    "RoundRecord",
    "Routed",
    "Routes",
    "Verdict",
    "approval_signal",
    "classify_with_model",
    "critic_role",
    "fan_out",
    "producer_role",
    "refine",
    "require_approval",
    "route",
]
