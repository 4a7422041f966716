"""Router: classify a task and forward it to the role (or roles) its class names.

The router is any handler that calls :func:`route`. It classifies the task (a function of
yours, or ``ctx.model`` with a ``task: classify`` prompt), looks the class up in a
:class:`Routes` table, records its decision as a ``routed`` event (the class in ``key``,
the targets in ``target``, ``table`` or ``fallback`` in ``reason``, and why in
``detail``), and forwards the task with ``ctx.call``: same workflow, same caller token,
the router's task as the parent, a step key of its own. A class the table does not know
goes to the table's fallback. Several targets get the same task in parallel and their
replies are merged.

Example:
    >>> routes = Routes({"billing": "billing", "technical": "technical",      # doctest: +SKIP
    ...                  "outage": ("technical", "status")}, fallback="human")
    >>> routed = await route(ctx, ticket, routes, returns=Answer, text=ticket.text,
    ...                      merge=lambda replies: Answer(...))                # doctest: +SKIP
    >>> routed.label, routed.targets, routed.result                           # doctest: +SKIP
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from .._exceptions import ConfigError
from ..addresses import check_token
from ..runtime.context_base import ContextBase
from ..runtime.gathering import Failed, Ok

R = TypeVar("R")

ROUTED = "routed"
"""Event: the router's decision (class in ``key``, targets in ``target``, comma separated,
``table`` or ``fallback`` in ``reason``, the classifier's reason in ``detail``)."""
UNKNOWN = "unknown"
"""The class a model classification answers when no label fits."""


@dataclass(frozen=True)
class Classification:
    """A task's class, and why."""

    label: str
    reason: str = ""


Classifier = Callable[[Any], Classification | str | Awaitable[Classification | str]]
"""Classifies a task body: returns (or awaits) a :class:`Classification` or a bare label."""


def _targets(value: str | Sequence[str], what: str) -> tuple[str, ...]:
    targets = (value,) if isinstance(value, str) else tuple(value)
    if not targets or len(set(targets)) != len(targets):
        raise ConfigError(f"route {what} needs one or more different targets: {targets}")
    for target in targets:
        check_token(target, "agent name")
    return targets


@dataclass(frozen=True)
class Routes:
    """The routing table: class -> target role(s), and where an unknown class goes."""

    table: Mapping[str, str | Sequence[str]]
    fallback: str | Sequence[str]
    _resolved: dict[str, tuple[str, ...]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        resolved = {label.lower(): _targets(t, repr(label)) for label, t in self.table.items()}
        _targets(self.fallback, "fallback")
        object.__setattr__(self, "_resolved", resolved)

    @property
    def labels(self) -> list[str]:
        """The classes of the table, in its order."""
        return list(self.table)

    def pick(self, label: str) -> tuple[tuple[str, ...], bool]:
        """The targets of ``label`` (case-insensitive) and whether they are the fallback."""
        found = self._resolved.get(label.strip().lower())
        if found is not None:
            return found, False
        return _targets(self.fallback, "fallback"), True


@dataclass(frozen=True)
class Routed(Generic[R]):
    """The router's decision and the (merged) reply."""

    label: str
    targets: tuple[str, ...]
    reason: str
    """Why the classifier chose ``label``."""
    fallback: bool
    """``label`` is not in the table: the task went to the fallback."""
    result: R
    failed: tuple[Failed, ...] = ()
    """With several targets: those that failed (the merge had the others)."""


async def classify_with_model(
    ctx: ContextBase, text: str, labels: Sequence[str], *, hints: str = ""
) -> Classification:
    """Ask ``ctx.model`` for the label of ``text``: a ``task: classify`` prompt with
    ``labels`` and ``default: unknown``; the first line of the answer is the label, the
    rest (confidence, method) the reason. ``hints`` adds prompt lines (``keywords <label>:
    ...``, ``label <label>: description``)."""
    system = f"task: classify\nlabels: {', '.join(labels)}\ndefault: {UNKNOWN}"
    reply = await ctx.model.complete(text, system=f"{system}\n{hints}".strip(), max_tokens=64)
    lines = [line.strip() for line in reply.text.splitlines() if line.strip()]
    label = lines[0] if lines else UNKNOWN
    tail = f" ({reply.model})"
    details = [line.removeprefix("method: ").removesuffix(tail) for line in lines[1:]]
    return Classification(label, f"model {reply.model}: " + "; ".join(details))


async def route(
    ctx: ContextBase,
    body: Any,
    routes: Routes,
    *,
    returns: type[R],
    classify: Classifier | None = None,
    text: str | None = None,
    merge: Callable[[dict[str, R]], R] | None = None,
    timeout: float | None = None,
) -> Routed[R]:
    """Classify ``body``, forward it to the route of its class, return the reply.

    Args:
        ctx: the router's context.
        body: the task to forward (sent unchanged to every target).
        routes: the table, with its fallback.
        returns: the type of the targets' replies.
        classify: the classifier; without it, ``ctx.model`` classifies ``text`` among
            the table's classes (:func:`classify_with_model`).
        text: what the model classifies (required without ``classify``).
        merge: combines the replies of several targets (by target, in route order);
            required when a class routes to more than one.
        timeout: each forwarded call's deadline, in seconds.

    Raises:
        ConfigError: no classifier and no text, or several targets and no ``merge``.
        MeshError: the target's failure (one target), or the first failure when every
            target failed (several).
    """
    if classify is not None:
        found = classify(body)
        decided = await found if inspect.isawaitable(found) else found
    elif text is not None:
        decided = await classify_with_model(ctx, text, routes.labels)
    else:
        raise ConfigError("route() needs a classify function or the text for the model")
    got = decided if isinstance(decided, Classification) else Classification(decided)
    targets, fallback = routes.pick(got.label)
    if len(targets) > 1 and merge is None:
        raise ConfigError(f"class {got.label!r} routes to {', '.join(targets)}: give merge=")
    because = f"unknown class, fallback; {got.reason}" if fallback else got.reason
    await ctx.emit_event(
        ROUTED,
        key=got.label[:64],
        target=",".join(targets),
        reason="fallback" if fallback else "table",
        detail=f"{got.label} -> {', '.join(targets)}: {because}"[:1024],
    )
    if len(targets) == 1:
        result = await ctx.call(targets[0], body, returns=returns, timeout=timeout)
        return Routed(got.label, targets, got.reason, fallback, result)
    outcomes = await ctx.gather(
        [ctx.call(t, body, returns=returns) for t in targets], timeout=timeout, on_failure="partial"
    )
    replies = {o.agent: o.value for o in outcomes if isinstance(o, Ok)}
    failed = tuple(o for o in outcomes if isinstance(o, Failed))
    if not replies:
        raise failed[0].error
    assert merge is not None
    return Routed(got.label, targets, got.reason, fallback, merge(replies), failed)
