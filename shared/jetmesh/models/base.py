"""What every model provider speaks: requests, replies, and the provider protocol.

A :class:`ModelRequest` is provider-neutral (messages, an optional system prompt, limits);
each provider turns it into its own wire format and its answer back into a
:class:`ModelReply` with the text, the model that answered, token counts and why it stopped.

Example:
    >>> request = ModelRequest(messages=(ModelMessage("user", "hello"),), max_tokens=64)
    >>> request.messages[0].role
    'user'
    >>> len(request_digest(request))
    32
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Annotated, Final, Protocol, runtime_checkable

import msgspec

MODEL_REPLY_TYPE: Final = "mesh.ModelReply/1"

DEFAULT_MAX_TOKENS: Final = 1024
"""Output limit of a request that does not set one."""

END_TURN: Final = "end_turn"
"""The model finished on its own (OpenAI ``stop``, Anthropic ``end_turn``)."""
MAX_TOKENS: Final = "max_tokens"
"""The output hit ``max_tokens`` (OpenAI ``length``)."""
STOP_SEQUENCE: Final = "stop_sequence"
"""The output reached one of the request's ``stop`` strings."""


class ModelMessage(msgspec.Struct, frozen=True):
    """One turn of a conversation with a model."""

    role: str
    """``user`` or ``assistant`` (``system`` turns are folded into the system prompt)."""
    content: str


class ModelRequest(msgspec.Struct, frozen=True, kw_only=True):
    """A request to a model, the same for every provider."""

    messages: tuple[ModelMessage, ...]
    system: str = ""
    """The system prompt ("" for none)."""
    max_tokens: Annotated[int, msgspec.Meta(gt=0)] = DEFAULT_MAX_TOKENS
    temperature: float | None = None
    """None: the provider's default."""
    stop: tuple[str, ...] = ()
    """Strings that end the output when the model produces them."""
    model: str = ""
    """The model to ask; "" for the provider's configured model (``JETMESH_MODEL_NAME``)."""


class ModelReply(msgspec.Struct, frozen=True, kw_only=True):
    """A model's answer, as recorded in the workflow's ``model`` event."""

    __mesh_type__ = MODEL_REPLY_TYPE

    text: str
    model: str
    """The model that answered, as the provider named it."""
    provider: str
    """``openai``, ``anthropic`` or ``offline-deterministic``."""
    input_tokens: int
    output_tokens: int
    stop_reason: str
    """``end_turn``, ``max_tokens``, ``stop_sequence``, or the provider's own word for
    anything else (``content_filter``, ``tool_use``, ...)."""


@runtime_checkable
class ModelProvider(Protocol):
    """A source of model replies: an HTTP API, or the offline deterministic provider."""

    @property
    def name(self) -> str:
        """The provider's name, recorded with every call."""
        ...

    @property
    def model(self) -> str:
        """The model asked when a request names none."""
        ...

    async def complete(self, request: ModelRequest) -> ModelReply:
        """Answer ``request``.

        Raises:
            ModelError: the provider refused the request or answered nonsense.
            ModelUnavailable: unreachable, timed out, overloaded or rate limited on every try.
        """
        ...

    async def aclose(self) -> None:
        """Release connections. Safe to call twice."""
        ...


OnText = Callable[[str], Awaitable[None]]
"""Takes each piece of a streamed output as it comes."""


@runtime_checkable
class StreamingProvider(ModelProvider, Protocol):
    """A provider that can hand on its output as it comes."""

    async def stream(self, request: ModelRequest, on_text: OnText) -> ModelReply:
        """Answer ``request``, passing each piece of the output to ``on_text`` as it
        comes; the reply has the whole text.

        Raises:
            ModelError, ModelUnavailable: as :meth:`ModelProvider.complete`; a failure
                after some output was handed on is raised like one before it.
        """
        ...


async def stream_complete(
    provider: ModelProvider, request: ModelRequest, on_text: OnText
) -> ModelReply:
    """``provider``'s reply to ``request``, its output handed to ``on_text`` as it comes;
    a provider that cannot stream hands it on whole, once answered."""
    if isinstance(provider, StreamingProvider):
        return await provider.stream(request, on_text)
    reply = await provider.complete(request)
    if reply.text:
        await on_text(reply.text)
    return reply


class Turn(Protocol):
    """Anything with a role and a content: a :class:`ModelMessage`, or a
    :class:`~jetmesh.memory.Message` read from a conversation."""

    @property
    def role(self) -> str: ...

    @property
    def content(self) -> str: ...


def build_request(
    prompt: str | Sequence[Turn],
    *,
    system: str = "",
    max_tokens: int | None = None,
    temperature: float | None = None,
    stop: Sequence[str] = (),
    model: str = "",
) -> ModelRequest:
    """A request from a prompt (one user turn) or a list of turns.

    ``system`` turns in the list are moved into the system prompt, after ``system``.

    Raises:
        ValueError: no user or assistant turn.
    """
    turns = [ModelMessage("user", prompt)] if isinstance(prompt, str) else list(prompt)
    systems = [system] if system else []
    messages: list[ModelMessage] = []
    for turn in turns:
        if turn.role == "system":
            systems.append(turn.content)
        else:
            messages.append(ModelMessage(turn.role, turn.content))
    if not messages:
        raise ValueError("a model request needs at least one user or assistant turn")
    return ModelRequest(
        messages=tuple(messages),
        system="\n\n".join(systems),
        max_tokens=max_tokens if max_tokens is not None else DEFAULT_MAX_TOKENS,
        temperature=temperature,
        stop=tuple(stop),
        model=model,
    )


DIGEST_PARTS: Final = ("system prompt", "messages", "options")
"""What each part of a request digest covers (options: max_tokens, temperature, stop,
model)."""


def request_digest(request: ModelRequest) -> str:
    """A short hash of the request, recorded with each call so that a re-run can tell when
    the code asked something else: three parts of 10 hex digits (SHA-256) joined by ``-``,
    one per :data:`DIGEST_PARTS`, so it can also tell which part changed."""
    options = (request.max_tokens, request.temperature, request.stop, request.model)
    parts = (request.system, request.messages, options)
    return "-".join(hashlib.sha256(msgspec.json.encode(p)).hexdigest()[:10] for p in parts)


def changed_parts(recorded: str, now: str) -> list[str]:
    """The parts of a request (:data:`DIGEST_PARTS`) whose digests differ; every part
    when either digest is not in the three-part form."""
    old, new = recorded.split("-"), now.split("-")
    if len(old) != len(DIGEST_PARTS) or len(new) != len(DIGEST_PARTS):
        return list(DIGEST_PARTS) if recorded != now else []
    return [name for name, a, b in zip(DIGEST_PARTS, old, new, strict=True) if a != b]
