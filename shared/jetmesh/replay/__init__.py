"""Replay: a workflow's history rebuilt from its events, and its tasks run again with the
current code against that history (a regression test for agent code).

``__all__`` is this package's public API; its modules are internal and may change without
notice (see "Public API" in docs/ARCHITECTURE.md).

Example:
    >>> recorded = await history(mesh, workflow)                      # doctest: +SKIP
    >>> report = await rerun(recorded, [planner], redis=mesh.redis, settings=mesh.settings)
    ...                                                               # doctest: +SKIP
    >>> [(t.step, t.status) for t in report.tasks]                    # doctest: +SKIP
    [('planner', 'same'), ('planner/counter.1', 'skipped')]
"""

from .context import Divergence, ReplayContext
from .history import (
    Payload,
    RecordedCall,
    RecordedModel,
    TaskHistory,
    WorkflowHistory,
    history,
    history_of,
)
from .rerun import DIVERGED, SAME, SKIPPED, RerunReport, TaskReplay, rerun

__all__ = [
    "DIVERGED",
    "SAME",
    "SKIPPED",
    "Divergence",
    "Payload",
    "RecordedCall",
    "RecordedModel",
    "ReplayContext",
    "RerunReport",
    "TaskHistory",
    "TaskReplay",
    "WorkflowHistory",
    "history",
    "history_of",
    "rerun",
]
