"""The metrics of a jetmesh process: OpenTelemetry instruments, scraped or pushed.

The instruments are made once, here, from the global API (``get_meter("jetmesh")``): the
runtime records into them with one call (:func:`handling` around a delivery, :func:`ended`
where it is settled, :func:`refused`, :func:`dead_lettered`, :func:`model_used`,
:func:`memory_error`, :func:`ledger_error`). Until a process installs a meter provider they
record nothing, at the cost of a function call. :func:`install` (called by
:func:`jetmesh.serve` when the process serves ``/metrics`` or exports with OTLP) installs
the SDK's provider with:

- a Prometheus reader on a registry of this process's own (:attr:`Installed.registry`),
  which the health port's ``GET /metrics`` answers from (:func:`exposition`);
- an OTLP/HTTP exporter every ``OTEL_METRIC_EXPORT_INTERVAL`` ms (60 s by default) when
  ``OTEL_EXPORTER_OTLP_ENDPOINT`` or ``OTEL_EXPORTER_OTLP_METRICS_ENDPOINT`` is set and
  ``OTEL_METRICS_EXPORTER`` is not ``none`` (the exporter reads the other standard
  ``OTEL_EXPORTER_OTLP_*`` variables itself).

The resource's ``service.name`` is ``OTEL_SERVICE_NAME`` or the process's roles joined by
``+`` (as its traces'). A process has one provider: a second :func:`install` returns the
first.

The figures are informational: they are what this process saw, never input to a decision.
The caller and tenant of a model call are those of the task's verified caller token.

Example:
    >>> installed = install(["billing"], prometheus=True)                  # doctest: +SKIP
    >>> with handling("billing", attempt=1):                               # doctest: +SKIP
    ...     ended(COMPLETED)
    >>> exposition(installed.registry)[:40]                                # doctest: +SKIP
    b'# HELP target_info Target metadata\\n# TY'
"""

from __future__ import annotations

import contextvars
import logging
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Final

from opentelemetry import metrics
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from prometheus_client import CollectorRegistry, generate_latest

__all__ = [
    "COMPLETED",
    "CONTENT_TYPE",
    "DEAD_LETTERED",
    "DENIED",
    "FAILED",
    "OUTCOMES",
    "REFUSED",
    "RETRIED",
    "Handling",
    "Installed",
    "dead_lettered",
    "ended",
    "exposition",
    "flush",
    "handling",
    "install",
    "ledger_error",
    "memory_error",
    "model_used",
    "otlp_configured",
    "refused",
]

log = logging.getLogger("jetmesh.metrics")

# -- names (fixed: the dashboards query them) ------------------------------------------------

TASK_DURATION: Final = "jetmesh.task.duration"
TASKS_IN_FLIGHT: Final = "jetmesh.tasks.in_flight"
TASK_REDELIVERIES: Final = "jetmesh.task.redeliveries"
DEAD_LETTERS: Final = "jetmesh.dead_letters"
REFUSALS: Final = "jetmesh.refusals"
TOKEN_USAGE: Final = "gen_ai.client.token.usage"
MODEL_COST: Final = "jetmesh.model.cost"
MEMORY_ERRORS: Final = "jetmesh.memory.errors"
LEDGER_ERRORS: Final = "jetmesh.ledger.errors"

ROLE: Final = "jetmesh.role"
OUTCOME: Final = "jetmesh.outcome"
REASON: Final = "jetmesh.reason"
CALLER: Final = "jetmesh.caller"
TENANT: Final = "jetmesh.tenant"
ERROR_TYPE: Final = "error.type"
TOKEN_TYPE: Final = "gen_ai.token.type"
REQUEST_MODEL: Final = "gen_ai.request.model"
OPERATION: Final = "gen_ai.operation.name"

COMPLETED: Final = "completed"
"""The handler returned; its result was sent and the delivery acknowledged."""
FAILED: Final = "failed"
"""Given up on for good: the handler rejected it, the plan was refused, the deadline passed."""
REFUSED: Final = "refused"
"""The task was refused before its handler ran (signature, token, schema, replay, ...)."""
DENIED: Final = "denied"
"""The policy refused what the handler asked (a scope, a tool, a memory key)."""
RETRIED: Final = "retried"
"""Sent back to be delivered again (the handler raised, or a server was unreachable)."""
DEAD_LETTERED: Final = "dead-lettered"
"""The handler failed on the task's last delivery: dead-lettered as ``max-deliveries``."""
OUTCOMES: Final = (COMPLETED, FAILED, REFUSED, DENIED, RETRIED, DEAD_LETTERED)

TASK_BUCKETS_S: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
"""Bounds of the task duration histogram, in seconds."""

TOKEN_BUCKETS: Final = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304)
"""Bounds of the token usage histogram (the GenAI semantic conventions' advice, to 4M)."""

CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
"""The content type of :func:`exposition` (Prometheus's text format 0.0.4)."""

MAX_CACHED_ATTRIBUTES: Final = 4096
"""Attribute sets of model calls kept for reuse (role, caller, tenant, model); past it the
cache starts again (many callers: the figures stay right, only allocations come back)."""

# -- the instruments ---------------------------------------------------------------------

_meter = metrics.get_meter("jetmesh")
_duration = _meter.create_histogram(
    TASK_DURATION,
    unit="s",
    description="How long a replica took over a task's delivery, by how it ended.",
    explicit_bucket_boundaries_advisory=TASK_BUCKETS_S,
)
_in_flight: dict[str, int] = {}
"""Deliveries being handled now, by role: counted in a plain dict and observed when read
(an asynchronous up-down counter), which costs a delivery nothing in the SDK."""


def _observe_in_flight(options: CallbackOptions) -> Iterable[Observation]:
    return [Observation(n, _role(role)) for role, n in list(_in_flight.items())]


_meter.create_observable_up_down_counter(
    TASKS_IN_FLIGHT,
    callbacks=[_observe_in_flight],
    unit="{task}",
    description="Deliveries being handled now.",
)
_redeliveries = _meter.create_counter(
    TASK_REDELIVERIES,
    unit="{delivery}",
    description="Deliveries of a task after its first (a retry, a crash, AckWait).",
)
_dead_letters = _meter.create_counter(
    DEAD_LETTERS, unit="{message}", description="Messages stored as dead letters, by reason."
)
_refusals = _meter.create_counter(
    REFUSALS, unit="{task}", description="Tasks refused before their handler ran, by reason."
)
_tokens = _meter.create_histogram(
    TOKEN_USAGE,
    unit="{token}",
    description="Tokens of each model call the provider answered (input and output).",
    explicit_bucket_boundaries_advisory=TOKEN_BUCKETS,
)
_cost = _meter.create_counter(
    MODEL_COST, unit="USD", description="Cost of the model calls, from the price table."
)
_memory_errors = _meter.create_counter(
    MEMORY_ERRORS, unit="{error}", description="Redis errors of working memory, by type."
)
_ledger_errors = _meter.create_counter(
    LEDGER_ERRORS, unit="{error}", description="Redis errors of the step ledger, by type."
)

# -- attribute sets, made once each ---------------------------------------------------------

_roles: dict[str, dict[str, str]] = {}
_outcomes: dict[tuple[str, str], dict[str, str]] = {}
_reasons: dict[tuple[str, str], dict[str, str]] = {}
_errors: dict[tuple[str, str], dict[str, str]] = {}
_models: dict[tuple[str, str, str, str], tuple[dict[str, str], ...]] = {}


def _role(role: str) -> dict[str, str]:
    attrs = _roles.get(role)
    if attrs is None:
        attrs = _roles[role] = {ROLE: role}
    return attrs


def _pair(
    cache: dict[tuple[str, str], dict[str, str]], key: str, role: str, value: str
) -> dict[str, str]:
    attrs = cache.get((role, value))
    if attrs is None:
        if len(cache) >= MAX_CACHED_ATTRIBUTES:
            cache.clear()
        attrs = cache[role, value] = {ROLE: role, key: value}
    return attrs


# -- recording -----------------------------------------------------------------------------

_outcome: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "jetmesh_task_outcome", default=None
)
"""How the delivery being handled in this asyncio task ended (set by :func:`ended`)."""


class Handling:
    """Around the handling of one delivery (:func:`handling`)."""

    __slots__ = ("_attrs", "_role", "_started", "_token")

    def __init__(self, role: str, attempt: int) -> None:
        self._role = role
        self._attrs = _role(role)
        if attempt > 1:
            _redeliveries.add(1, self._attrs)
        self._started = 0.0
        self._token: contextvars.Token[str | None] | None = None

    def __enter__(self) -> None:
        _in_flight[self._role] = _in_flight.get(self._role, 0) + 1
        self._token = _outcome.set(None)
        self._started = time.perf_counter()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        elapsed = time.perf_counter() - self._started
        _in_flight[self._role] -= 1
        outcome = _outcome.get() or RETRIED
        if self._token is not None:
            _outcome.reset(self._token)
        _duration.record(elapsed, _pair(_outcomes, OUTCOME, self._role, outcome))


def handling(role: str, attempt: int) -> Handling:
    """``with handling(role, attempt):`` around the handling of one delivery: in flight
    while inside, a redelivery counted when ``attempt`` > 1, and on the way out its
    duration by the outcome :func:`ended` set in the same asyncio task (``retried`` when
    none was: every other way out sends the task back, or leaves it to be redelivered)."""
    return Handling(role, attempt)


def ended(outcome: str) -> None:
    """Say how the delivery being handled (:class:`handling`) ended: one of
    :data:`OUTCOMES`. Outside a delivery it does nothing."""
    _outcome.set(outcome)


def refused(role: str, reason: str) -> None:
    """A task refused before its handler ran (its delivery terminated), by reason."""
    _refusals.add(1, _pair(_reasons, REASON, role, reason))


def dead_lettered(role: str, reason: str) -> None:
    """A dead letter stored by ``role``, by reason."""
    _dead_letters.add(1, _pair(_reasons, REASON, role, reason))


def model_used(
    role: str,
    *,
    caller: str,
    tenant: str,
    model: str,
    tokens_in: int,
    tokens_out: int,
    cost_usd: float | None,
) -> None:
    """A model call the provider answered: its tokens, and its cost when priced."""
    key = (role, caller, tenant, model)
    attrs = _models.get(key)
    if attrs is None:
        if len(_models) >= MAX_CACHED_ATTRIBUTES:
            _models.clear()
        common = {ROLE: role, CALLER: caller, TENANT: tenant, REQUEST_MODEL: model}
        attrs = _models[key] = (
            {**common, OPERATION: "chat", TOKEN_TYPE: "input"},
            {**common, OPERATION: "chat", TOKEN_TYPE: "output"},
            common,
        )
    _tokens.record(tokens_in, attrs[0])
    _tokens.record(tokens_out, attrs[1])
    if cost_usd is not None:
        _cost.add(cost_usd, attrs[2])


def memory_error(role: str, error_type: str) -> None:
    """A Redis error met by ``role``'s working memory or conversations."""
    _memory_errors.add(1, _pair(_errors, ERROR_TYPE, role, error_type))


def ledger_error(role: str, error_type: str) -> None:
    """A Redis error met by ``role``'s step ledger (journal, results, leases, effects)."""
    _ledger_errors.add(1, _pair(_errors, ERROR_TYPE, role, error_type))


# -- the process's provider ------------------------------------------------------------------


@dataclass(frozen=True)
class Installed:
    """The meter provider this process installed."""

    provider: MeterProvider
    registry: CollectorRegistry
    """The Prometheus registry its reader registered with (this process's own)."""
    pushing: MetricReader | None
    """The OTLP reader, when the environment configures one."""


_installed: Installed | None = None


def otlp_configured(environ: dict[str, str] | None = None) -> bool:
    """Whether the standard variables ask for OTLP metrics: an endpoint is set and
    ``OTEL_METRICS_EXPORTER`` is not ``none``."""
    env = os.environ if environ is None else environ
    if env.get("OTEL_METRICS_EXPORTER", "").strip().lower() == "none":
        return False
    return bool(
        env.get("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    )


def install(roles: Sequence[str], *, prometheus: bool) -> Installed | None:
    """Install this process's meter provider, if anything is to read it: ``prometheus``
    (the process serves ``/metrics``) or OTLP configured (:func:`otlp_configured`).
    Returns it, or None when nothing would read the figures (nothing is installed and
    recording stays a no-op). Idempotent: a second call returns the first provider.

    A provider installed by someone else first is left alone (logged): the instruments
    record into that one.
    """
    global _installed
    if _installed is not None:
        return _installed
    push = otlp_configured()
    if not prometheus and not push:
        return None
    registry = CollectorRegistry(auto_describe=True)
    readers: list[MetricReader] = [
        PrometheusMetricReader(registry=registry, scope_info_enabled=False)
    ]
    pushing: MetricReader | None = None
    if push:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

        pushing = PeriodicExportingMetricReader(OTLPMetricExporter())
        readers.append(pushing)
    name = os.environ.get("OTEL_SERVICE_NAME") or "+".join(roles) or "jetmesh"
    provider = MeterProvider(metric_readers=readers, resource=Resource.create({SERVICE_NAME: name}))
    metrics.set_meter_provider(provider)
    if metrics.get_meter_provider() is not provider:
        log.warning("a meter provider was installed before jetmesh's: its metrics go to that one")
    _installed = Installed(provider, registry, pushing)
    return _installed


def exposition(registry: CollectorRegistry) -> bytes:
    """The registry's metrics in Prometheus's text format (:data:`CONTENT_TYPE`)."""
    return generate_latest(registry)


def flush(timeout_s: float = 5.0) -> None:
    """Push what the OTLP reader has not sent yet (when the process stops); the Prometheus
    reader is read when scraped and needs nothing."""
    if _installed is not None and _installed.pushing is not None:
        try:
            _installed.pushing.force_flush(timeout_millis=timeout_s * 1000)
        except Exception as exc:  # a collector away: the figures are informational
            log.warning("metrics not pushed: %s", exc)
