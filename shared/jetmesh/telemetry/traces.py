"""OpenTelemetry traces: one trace per workflow, a span for each publish and handling of a
task, set up from the standard ``OTEL_*`` variables.

Tracing is on in a process when ``OTEL_EXPORTER_OTLP_ENDPOINT`` or
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` is set, ``OTEL_TRACES_EXPORTER`` is not ``none`` and
``OTEL_SDK_DISABLED`` is not ``true`` (:func:`tracing_configured`). :func:`install_tracing`
then installs a ``TracerProvider`` exporting over OTLP/HTTP in batches (the exporter and the
batch processor read their own variables: endpoint, headers, timeout,
``OTEL_BSP_SCHEDULE_DELAY``, ...); ``jetmesh run`` and every :class:`~jetmesh.MeshClient`
call it when they start, :func:`shutdown_tracing` exports what is left when the process
stops. With nothing configured no provider is installed, and each helper here costs one
flag test.

The trace id of every span of a workflow is the workflow's own
(:func:`trace_id_of`), so ``jetmesh events`` and a tracing backend
meet on one id: the root span of a workflow (the first ``send``) takes it from
:func:`_workflow_ids`, and every other span is a descendant of it, through the
``traceparent`` header, whose span id is the span that sent the message.

Example:
    >>> install_tracing("gateway", instance)                         # doctest: +SKIP
    True
    >>> with sending(subject, envelope.id, envelope.workflow):        # doctest: +SKIP
    ...     await publisher.publish(subject, *seal(envelope))
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import os
from collections.abc import Iterator, Mapping
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from ..ids import id_value

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.id_generator import IdGenerator

log = logging.getLogger("jetmesh.telemetry")

TRACER_NAME = "jetmesh"
"""The instrumentation scope of every span the mesh starts."""

MESSAGING_SYSTEM = "nats"

FROM_RECORD = "jetmesh.from_record"
"""Attribute (true) of a span whose work was not done again: a step answered from the step
ledger (``process``), a model reply taken from the journal (``chat``), a tool call the
gateway answered from its record (its ``invoke_agent``)."""

REPLAYED = "jetmesh.replayed"
"""Attribute (true) of a span of ``jetmesh replay --rerun``: a handler run again from a
workflow's recorded history."""

ATTEMPT = "jetmesh.delivery.attempt"
"""Attribute of a ``process`` span: the delivery count of the task (set from 2 on)."""

_NO_SPAN = contextlib.nullcontext()
_PROPAGATOR = TraceContextTextMapPropagator()

_workflow_trace: contextvars.ContextVar[int] = contextvars.ContextVar(
    "jetmesh_workflow_trace", default=0
)


class _State:
    """Whether this process traces (:func:`install_tracing`)."""

    global_set = False
    """Whether OpenTelemetry's global provider is ours (it can be set once a process)."""
    on = False
    provider: TracerProvider | None = None
    tracer: trace.Tracer = trace.NoOpTracer()


_state = _State()


@lru_cache(maxsize=8192)
def trace_id_of(workflow: str) -> str:
    """The 32-hex-digit trace id of a workflow: its id's 128 bits (a ULID), or random
    (kept for the process) for an id that is not one."""
    try:
        return f"{id_value(workflow):032x}"
    except ValueError:
        return os.urandom(16).hex()


@lru_cache(maxsize=8192)
def trace_number(workflow: str) -> int:
    """The trace id of a workflow as the number OpenTelemetry's span contexts hold."""
    return int(trace_id_of(workflow), 16)


def tracing_configured(environ: Mapping[str, str] | None = None) -> bool:
    """Whether the standard variables ask for traces to be exported (module docstring)."""
    env = os.environ if environ is None else environ
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporters = {e.strip().lower() for e in env.get("OTEL_TRACES_EXPORTER", "otlp").split(",")}
    if exporters <= {"none", ""}:
        return False
    return bool(
        env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )


def tracing_on() -> bool:
    """Whether this process exports traces (:func:`install_tracing` installed a provider)."""
    return _state.on


def install_tracing(service: str, instance: str) -> bool:
    """Install the process's tracer provider if the variables ask for one and it has none
    yet (later calls change nothing until :func:`shutdown_tracing`). Returns whether
    tracing is on. The first provider installed is also OpenTelemetry's global one.

    Args:
        service: ``service.name`` unless ``OTEL_SERVICE_NAME`` (or
            ``OTEL_RESOURCE_ATTRIBUTES``) names it: the role, or the process's name.
        instance: ``service.instance.id``: the replica's or the client's instance.
    """
    if _state.on:
        return True
    if not tracing_configured():
        return False
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    attributes: dict[str, Any] = {"service.instance.id": instance}
    named = "service.name=" in os.environ.get("OTEL_RESOURCE_ATTRIBUTES", "")
    if not os.environ.get("OTEL_SERVICE_NAME") and not named:
        attributes["service.name"] = service
    provider = TracerProvider(
        resource=Resource.create(attributes), id_generator=_workflow_ids(), shutdown_on_exit=True
    )
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    if not _state.global_set:
        trace.set_tracer_provider(provider)
        _state.global_set = True
    _state.provider = provider
    _state.tracer = provider.get_tracer(TRACER_NAME)
    _state.on = True
    log.info("traces exported over OTLP/HTTP as %s", service)
    return True


def shutdown_tracing() -> None:
    """Export the spans still buffered and stop the provider (blocks for up to the
    exporter's timeout; safe to call twice, and when tracing is off). Tracing is off
    afterwards, until :func:`install_tracing` installs a new provider."""
    provider, _state.provider = _state.provider, None
    _state.on = False
    _state.tracer = trace.NoOpTracer()
    if provider is not None:
        provider.shutdown()


def _workflow_ids() -> IdGenerator:
    """Span and trace ids as the SDK's, except that a root span started for a workflow
    (:func:`sending`) takes the workflow's trace id (the SDK is imported only when tracing
    is on)."""
    from opentelemetry.sdk.trace.id_generator import RandomIdGenerator

    class WorkflowIds(RandomIdGenerator):
        def generate_trace_id(self) -> int:
            return _workflow_trace.get() or super().generate_trace_id()

    return WorkflowIds()


@contextlib.contextmanager
def _root_of(trace_id: int) -> Iterator[None]:
    token = _workflow_trace.set(trace_id)
    try:
        yield
    finally:
        _workflow_trace.reset(token)


def _workflow_context(trace_id: int) -> tuple[otel_context.Context | None, list[Link]]:
    """The parent of a new span of the workflow whose trace id is ``trace_id``: the current
    span if it is of that trace; else none (a root), linked to the current span if any
    (say an HTTP request's, in a gateway)."""
    current = trace.get_current_span().get_span_context()
    if not current.is_valid:
        return None, []
    if current.trace_id == trace_id:
        return None, []  # the current context is the parent
    return otel_context.Context(), [Link(current)]


def span_header(trace_id: int) -> tuple[int, int] | None:
    """The span id and trace flags a message of the workflow whose trace id is
    ``trace_id`` names in its ``traceparent``: the current span's, when tracing is on and
    it is of that trace; else None."""
    if not _state.on:
        return None
    current = trace.get_current_span().get_span_context()
    if not current.is_valid or current.trace_id != trace_id:
        return None
    return current.span_id, int(current.trace_flags)


def sending(subject: str, message_id: str, workflow: str) -> Any:
    """The ``send {subject}`` PRODUCER span of one publish, current while it lasts (the
    message's ``traceparent`` names it); a context that does nothing when tracing is off."""
    if not _state.on:
        return _NO_SPAN
    return _sending(subject, message_id, workflow)


@contextlib.contextmanager
def _sending(subject: str, message_id: str, workflow: str) -> Iterator[Span]:
    trace_id = trace_number(workflow)
    parent, links = _workflow_context(trace_id)
    attributes = {
        "messaging.system": MESSAGING_SYSTEM,
        "messaging.operation.type": "send",
        "messaging.operation.name": "send",
        "messaging.destination.name": subject,
        "messaging.message.id": message_id,
        "messaging.message.conversation_id": workflow,
    }
    with (
        _root_of(trace_id),
        _state.tracer.start_as_current_span(
            f"send {subject}",
            context=parent,
            kind=SpanKind.PRODUCER,
            links=links,
            attributes=attributes,
        ) as span,
    ):
        yield span


def consuming(subject: str, headers: Mapping[str, str] | None, role: str, attempt: int) -> Any:
    """The ``process {subject}`` CONSUMER span of one delivery to ``role``, the child of
    the span its ``traceparent`` names (the sender's ``send``), current while it lasts; a
    context that does nothing when tracing is off.

    The header is not covered by the message's signature: a span's place in a trace is
    informational, like the trace itself."""
    if not _state.on:
        return _NO_SPAN
    return _consuming(subject, headers, role, attempt)


@contextlib.contextmanager
def _consuming(
    subject: str, headers: Mapping[str, str] | None, role: str, attempt: int
) -> Iterator[Span]:
    attributes: dict[str, Any] = {
        "messaging.system": MESSAGING_SYSTEM,
        "messaging.operation.type": "process",
        "messaging.operation.name": "process",
        "messaging.destination.name": subject,
        "messaging.consumer.group.name": role,
    }
    if headers and (message_id := headers.get("Nats-Msg-Id")):
        attributes["messaging.message.id"] = message_id
    if attempt > 1:
        attributes[ATTEMPT] = attempt
    with _state.tracer.start_as_current_span(
        f"process {subject}",
        context=_PROPAGATOR.extract(headers or {}),
        kind=SpanKind.CONSUMER,
        attributes=attributes,
    ) as span:
        if attempt > 1 and span.is_recording():
            span.add_event("jetmesh.redelivered", {ATTEMPT: attempt})
        yield span


def gave_up(
    subject: str, headers: Mapping[str, str] | None, role: str, reason: str, detail: str
) -> None:
    """A ``dead_letter {subject}`` span, the child of the span the task's ``traceparent``
    names, for a task dead-lettered outside any delivery of it (the max-deliveries
    advisory of a task whose replicas all died): a ``jetmesh.dead_letter`` event and ERROR
    status, as on a ``process`` span."""
    if not _state.on:
        return
    with _state.tracer.start_as_current_span(
        f"dead_letter {subject}",
        context=_PROPAGATOR.extract(headers or {}),
        kind=SpanKind.CLIENT,
        attributes={
            "messaging.system": MESSAGING_SYSTEM,
            "messaging.operation.type": "settle",
            "messaging.operation.name": "dead_letter",
            "messaging.destination.name": subject,
            "messaging.consumer.group.name": role,
            **(
                {"messaging.message.id": headers["Nats-Msg-Id"]}
                if headers and "Nats-Msg-Id" in headers
                else {}
            ),
        },
    ):
        failed("dead_letter", reason, detail)


def received(workflow: str, message_id: str) -> None:
    """Name the verified message's workflow and id on the current ``process`` span."""
    if not _state.on:
        return
    span = trace.get_current_span()
    if span.is_recording():
        span.set_attribute("messaging.message.id", message_id)
        span.set_attribute("messaging.message.conversation_id", workflow)


def span(name: str, attributes: Mapping[str, Any], kind: SpanKind = SpanKind.INTERNAL) -> Any:
    """A span named ``name`` with ``attributes``, current while it lasts (a handler's
    ``invoke_agent``, a model's ``chat``, a tool's ``execute_tool``); a context that does
    nothing when tracing is off. An exception leaving it is recorded and sets ERROR."""
    if not _state.on:
        return _NO_SPAN
    return _state.tracer.start_as_current_span(name, kind=kind, attributes=attributes)


def chat(provider: str, model: str, *, max_tokens: int) -> Any:
    """The ``chat {model}`` CLIENT span of one model call (GenAI conventions), current
    while it lasts; :func:`chat_answered` adds the reply's usage."""
    if not _state.on:
        return _NO_SPAN
    return span(
        f"chat {model}",
        {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": provider,
            "gen_ai.request.model": model,
            "gen_ai.request.max_tokens": max_tokens,
        },
        SpanKind.CLIENT,
    )


def chat_answered(model: str, input_tokens: int, output_tokens: int, stop_reason: str) -> None:
    """The model's answer on the current ``chat`` span: the model that answered, tokens in
    and out, why it stopped."""
    annotate(
        {
            "gen_ai.response.model": model,
            "gen_ai.usage.input_tokens": input_tokens,
            "gen_ai.usage.output_tokens": output_tokens,
            "gen_ai.response.finish_reasons": [stop_reason],
        }
    )


def tool(name: str, **attributes: Any) -> Any:
    """The ``execute_tool {name}`` span of one tool call (GenAI conventions), current
    while it lasts: in the agent that asks for it and in the tool gateway that runs it."""
    if not _state.on:
        return _NO_SPAN
    return span(
        f"execute_tool {name}",
        {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": name, **attributes},
    )


def annotate(attributes: Mapping[str, Any]) -> None:
    """Set ``attributes`` on the current span, if one records."""
    if not _state.on:
        return
    current = trace.get_current_span()
    if current.is_recording():
        current.set_attributes(attributes)


def failed(event: str, reason: str, detail: str = "", **attributes: Any) -> None:
    """Record on the current span (a delivery's ``process``) that its task was refused,
    retried, dead-lettered or denied: an event ``jetmesh.<event>`` with the reason and the
    detail, and ERROR status."""
    if not _state.on:
        return
    current = trace.get_current_span()
    if not current.is_recording():
        return
    fields: dict[str, Any] = {"jetmesh.reason": reason, **attributes}
    if detail:
        fields["jetmesh.detail"] = detail[:1024]
    current.add_event(f"jetmesh.{event}", fields)
    current.set_status(Status(StatusCode.ERROR, f"{event}: {reason}"))
