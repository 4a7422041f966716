"""The offline deterministic provider: keyword rules, a hashed bag-of-words embedding and
text templates. It is not a language model and does not pretend to be one.

It is the default provider (``JETMESH_MODEL_PROVIDER=offline``), so the demo meshes and the
tests run with no network and no key, and the same request always gets the same reply. Its
replies name it (provider ``offline-deterministic``, model
``offline-deterministic/templates-v1``), and each reply's text ends with a ``method:`` line
saying which rule produced it. It costs nothing.

A prompt steers it with ``key: value`` lines (in the system prompt or the user turn):
``task:`` picks the rule, and each rule reads its own keys. The conventions are in
docs/models.md; in short:

==============  ===========================================================================
``task``        what it reads
==============  ===========================================================================
``classify``    ``labels: a, b, c``; optional ``keywords <label>: w1, w2``,
                ``label <label>: description``, ``default: <label>``; the text to classify
``draft``       the question; ``snippet <id>: text`` lines; optional ``customer:``, ``team:``,
                ``max_snippets:``, ``require: <point>``
``score``       ``criterion: <text>`` lines (or ``rubric: a; b``); ``draft: <text>`` or the
                text; optional ``threshold:`` (0.7)
``plan``        the question; optional ``max_items:`` (4)
``summarise``   the text; optional ``max_sentences:`` (3)
``report``      ``finding: <text>`` lines; optional ``title:``, ``question:``
``rank``        the query; ``doc <id>: text`` (or ``snippet``) lines; optional ``top:`` (3)
==============  ===========================================================================

Without ``task:``, the rule is inferred from the keys present (``labels`` -> classify,
``criterion`` -> score, ``snippet`` -> draft, ``doc`` -> rank, ``finding`` -> report).

Token counts are estimates (words x 4/3, rounded up), and ``max_tokens`` cuts the output
by the same estimate; ``temperature`` is ignored.

Example:
    >>> import asyncio
    >>> provider = OfflineProvider()
    >>> reply = asyncio.run(provider.complete(build_request(
    ...     "I was charged twice for my subscription",
    ...     system="task: classify\\nlabels: billing, technical, product")))
    >>> reply.text.splitlines()[0], reply.model
    ('billing', 'offline-deterministic/templates-v1')
"""

from __future__ import annotations

import re
from typing import Final

from . import templates
from .base import (
    END_TURN,
    MAX_TOKENS,
    STOP_SEQUENCE,
    ModelReply,
    ModelRequest,
    OnText,
    build_request,
)
from .prompt import Prompt, parse
from .text import TOKENS_PER_WORD, estimate_tokens

PROVIDER: Final = "offline-deterministic"
MODEL: Final = "offline-deterministic/templates-v1"


class OfflineProvider:
    """The deterministic provider: same request, same reply, no network, no cost."""

    name: Final = PROVIDER

    @property
    def model(self) -> str:
        return MODEL

    async def complete(self, request: ModelRequest) -> ModelReply:
        """Answer by the rule the prompt's ``task`` picks (see the module's docstring)."""
        prompt = parse(request)
        text = templates.answer(prompt, MODEL)
        text, stop_reason = _limit(text, request.max_tokens, request.stop)
        spent = estimate_tokens(request.system) + sum(
            estimate_tokens(m.content) for m in request.messages
        )
        return ModelReply(
            text=text,
            model=MODEL,
            provider=PROVIDER,
            input_tokens=spent,
            output_tokens=estimate_tokens(text),
            stop_reason=stop_reason,
        )

    async def stream(self, request: ModelRequest, on_text: OnText) -> ModelReply:
        """As :meth:`complete`, its text handed to ``on_text`` word by word (each word
        with the white space after it), the same pieces every time."""
        reply = await self.complete(request)
        for piece in words(reply.text):
            await on_text(piece)
        return reply

    async def aclose(self) -> None:
        return None


def words(text: str) -> list[str]:
    """``text`` in the pieces the offline provider streams: leading white space, then
    each word with the white space after it; joined, they are ``text``."""
    pieces = re.findall(r"\S+\s*", text)
    lead = text[: len(text) - len(text.lstrip())]
    return [lead, *pieces] if lead else pieces


def _limit(text: str, max_tokens: int, stop: tuple[str, ...]) -> tuple[str, str]:
    """``text`` cut at the first stop string, then to ``max_tokens`` (by the estimate)."""
    reason = END_TURN
    cuts = [text.find(s) for s in stop if s and s in text]
    if cuts:
        text, reason = text[: min(cuts)], STOP_SEQUENCE
    allowed = int(max_tokens / TOKENS_PER_WORD)
    pieces = re.findall(r"\S+\s*", text)
    if len(pieces) > allowed:
        text, reason = "".join(pieces[:allowed]).rstrip(), MAX_TOKENS
    return text, reason


__all__ = ["MODEL", "PROVIDER", "OfflineProvider", "Prompt", "build_request", "parse"]
