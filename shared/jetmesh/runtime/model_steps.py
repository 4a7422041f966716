"""``ctx.model``: model calls as steps of a handler, numbered, journaled and accounted.

Each call takes the next step key of its task (``<step>/model.<n>``, counted with the
task's ``ctx.call``s, so keys never collide and a re-run asks for the same ones). On the
mesh, a call's reply is journaled in the step ledger under that key before the handler
sees it: a handler that runs again after a crash gets it back from the journal and the
provider is not asked (or paid) twice, as long as it asks the same request (same
digest). Every call, journaled or not, writes a ``model`` event with the provider, the
model, tokens, latency, cost and the reply, which ``jetmesh replay --rerun`` answers from.

Example:
    >>> reply = await ctx.model.complete(                                # doctest: +SKIP
    ...     ticket.text, system="task: classify\\nlabels: billing, technical, product"
    ... )
    >>> reply.text.splitlines()[0]                                      # doctest: +SKIP
    'billing'
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import msgspec

from .. import events as ev
from .._exceptions import ConfigError, ModelError
from ..envelope import encode
from ..identity.tokens import Caller
from ..models import ModelProvider, ModelReply, ModelRequest, PriceTable, request_digest
from ..models.base import MODEL_REPLY_TYPE, Turn, build_request, stream_complete
from ..telemetry import metrics, traces
from .budgets import Spending, check_budget
from .ledger import Recorded, StepLedger

FROM_JOURNAL = "from the journal: not asked again"
"""The ``detail`` of a ``model`` event whose reply came from the journal."""

_reply = msgspec.json.Decoder(ModelReply)


@dataclass(frozen=True)
class Models:
    """A process's model provider and the prices its calls are accounted with."""

    provider: ModelProvider
    prices: PriceTable


class ModelStepContext(Protocol):
    """What a model call takes of the handler's context it is a step of
    (:class:`~jetmesh.runtime.context.Context` is one)."""

    @property
    def workflow(self) -> str: ...

    @property
    def agent(self) -> str: ...

    @property
    def caller(self) -> Caller: ...

    @property
    def log(self) -> logging.LoggerAdapter[logging.Logger]: ...

    async def emit_event(self, kind: str, **fields: Any) -> None: ...


class ModelChunks(Protocol):
    """Where a streamed model call's output goes: the task's chunks
    (:class:`~jetmesh.runtime.streaming.ChunkSink` is one)."""

    async def text(self, text: str, step: str) -> None:
        """The next piece of model call ``step``'s output."""
        ...

    async def flush(self) -> None:
        """Until every piece handed on is stored."""
        ...

    async def skip(self, step: str) -> None:
        """Model call ``step`` was answered from the journal: its pieces are not sent
        again."""
        ...


class StepModel:
    """``ctx.model``: the configured model, called as a step of the handler.

    Args:
        next_step: numbers the next step of the task (``ctx.next_step``).
        complete: answers a request as the step it was numbered (the context's own way:
            journaled on the mesh, from the history in a re-run), streaming its output
            as the task's chunks when asked to.
    """

    def __init__(
        self,
        next_step: Callable[[str], str],
        complete: Callable[[ModelRequest, str, bool], Awaitable[ModelReply]],
    ) -> None:
        self._next_step = next_step
        self._complete = complete

    def complete(
        self,
        prompt: str | Sequence[Turn],
        *,
        system: str = "",
        max_tokens: int | None = None,
        temperature: float | None = None,
        stop: Sequence[str] = (),
        model: str = "",
        stream: bool = False,
    ) -> Awaitable[ModelReply]:
        """Ask the model; returns its reply (text, model, tokens, stop reason).

        With ``stream=True`` the output also goes out as it comes, piece by piece, as the
        task's chunks (``ctx.stream``); the reply is journaled whole as without it. A
        reply taken from the journal does not stream again.

        The step key is taken when ``complete`` is invoked, not when it is awaited, so
        calls passed to ``ctx.gather`` get their keys in argument order.

        Args:
            prompt: one user turn, or the turns of a conversation (``ModelMessage``, or
                ``Message`` from ``ctx.conversation``); ``system`` turns join ``system``.
            system: the system prompt.
            max_tokens: the output limit (default 1024).
            temperature: None for the provider's default.
            stop: strings that end the output.
            model: another model than the configured one (``JETMESH_MODEL_NAME``).

        Raises:
            ModelError: the provider refused the request.
            ModelUnavailable: the provider could not answer after its retries.
        """
        request = build_request(
            prompt,
            system=system,
            max_tokens=max_tokens,
            temperature=temperature,
            stop=stop,
            model=model,
        )
        step = self._next_step("model")
        return self._complete(request, step, stream)


def model_fields(
    step: str,
    digest: str,
    reply: ModelReply,
    cost: float | None,
    duration_ms: float | None,
    detail: str = "",
) -> dict[str, Any]:
    """The fields of the ``model`` event of an answered call."""
    return {
        "target": reply.provider,
        "callee_step": step,
        "type": MODEL_REPLY_TYPE,
        "model": reply.model,
        "tokens_in": reply.input_tokens,
        "tokens_out": reply.output_tokens,
        "cost_usd": cost,
        "duration_ms": duration_ms,
        "digest": digest,
        "detail": detail,
        "body": ev.EventPayload(type=MODEL_REPLY_TYPE, value=msgspec.Raw(encode(reply))),
    }


async def complete_step(
    ctx: ModelStepContext,
    models: Models | None,
    ledger: StepLedger | None,
    request: ModelRequest,
    step: str,
    spending: Spending | None = None,
    chunks: ModelChunks | None = None,
    *,
    journal_empty: bool = False,
) -> ModelReply:
    """A model call of a handler on the mesh: from the journal if this step already asked
    the same request, else from the provider, journaled, and recorded in an event; in a
    ``chat {model}`` span, tracing on (:func:`~jetmesh.telemetry.traces.chat`). With
    ``chunks``, the provider's output also goes there as it comes (not when answered from
    the journal). ``journal_empty``: the handler's step runs for the first time, so the
    journal is not looked up."""
    if not traces.tracing_on() or models is None:
        return await _complete_step(
            ctx, models, ledger, request, step, spending, chunks, journal_empty
        )
    model = request.model or models.provider.model
    with traces.chat(models.provider.name, model, max_tokens=request.max_tokens):
        reply = await _complete_step(
            ctx, models, ledger, request, step, spending, chunks, journal_empty
        )
        traces.chat_answered(
            reply.model, reply.input_tokens, reply.output_tokens, reply.stop_reason
        )
        return reply


async def _complete_step(
    ctx: ModelStepContext,
    models: Models | None,
    ledger: StepLedger | None,
    request: ModelRequest,
    step: str,
    spending: Spending | None,
    chunks: ModelChunks | None,
    journal_empty: bool,
) -> ModelReply:
    if models is None:
        raise ConfigError("this context has no model provider")
    digest = request_digest(request)
    if ledger is not None and not journal_empty:
        recorded = await ledger.journaled(ctx.workflow, ctx.agent, step)
        if recorded is not None and recorded.digest == digest:
            reply = _reply.decode(recorded.body)
            traces.annotate({traces.FROM_RECORD: True})
            cost = models.prices.cost(reply.model, reply.input_tokens, reply.output_tokens)
            await ctx.emit_event(
                ev.MODEL, **model_fields(step, digest, reply, cost, None, FROM_JOURNAL)
            )
            if chunks is not None:
                await chunks.skip(step)
            return reply
        if recorded is not None:
            ctx.log.warning("model call %s asks another request than its journal entry", step)
    provider = models.provider
    model = request.model or provider.model
    await check_budget(
        ctx,
        spending,
        request,
        models.prices,
        provider=provider.name,
        model=model,
        step=step,
        digest=digest,
    )
    started = time.perf_counter()
    try:
        if chunks is None:
            reply = await provider.complete(request)
        else:
            sink = chunks

            async def on_text(text: str) -> None:
                await sink.text(text, step)

            reply = await stream_complete(provider, request, on_text)
            await sink.flush()
    except ModelError as exc:
        await ctx.emit_event(
            ev.MODEL,
            target=provider.name,
            callee_step=step,
            model=request.model or provider.model,
            digest=digest,
            duration_ms=(time.perf_counter() - started) * 1000,
            reason=exc.code,
            detail=str(exc)[:1024],
        )
        raise
    duration_ms = (time.perf_counter() - started) * 1000
    body = msgspec.Raw(encode(reply))
    if ledger is not None:
        record = Recorded(kind="reply", type=MODEL_REPLY_TYPE, body=body, digest=digest)
        await ledger.journal(ctx.workflow, ctx.agent, step, record)
    cost = models.prices.cost(reply.model, reply.input_tokens, reply.output_tokens)
    metrics.model_used(
        ctx.agent,
        caller=ctx.caller.subject,
        tenant=ctx.caller.tenant,
        model=reply.model,
        tokens_in=reply.input_tokens,
        tokens_out=reply.output_tokens,
        cost_usd=cost,
    )
    if spending is not None:
        await spending.count(ctx.caller, reply, cost)
    await ctx.emit_event(ev.MODEL, **model_fields(step, digest, reply, cost, duration_ms))
    return reply
