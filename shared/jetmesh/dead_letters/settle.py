"""Settling a side effect in doubt: a person's decision, recorded, on a dead letter whose
step left a claim that never finished.

A run that dies between doing a side effect and recording it (a tool gateway killed
mid-call, a replica killed inside ``ctx.once``) leaves the effect's claim ``running`` in its
role's own Redis keys (:mod:`jetmesh.memory.effect_claims`). The next run does not guess:
the gateway refuses the tool ``tool-in-doubt``, a handler's ``ctx.once`` raises
``EffectInDoubt`` until its task is dead-lettered. Only a person who has checked the target
(under the idempotency key ``<workflow>/<step>``) knows whether the effect happened, and
:func:`settle` carries out what they found:

- it did not happen (``happened=False``): the step's claims in doubt are removed, each only
  while it is still the claim that was read (a run that records it meanwhile wins: the
  settling is refused ``claim-changed``), and the task is sent again as a redrive sends
  it (:func:`.redrive.send_again`): the step runs again, and the effect once;
- it happened (``happened=True``): the claims stay, so the step is never run again, and
  the dead letter is removed.

Either way a ``settled`` event in the workflow says who decided what, for which claims.

The dead letter is first verified, once, as its role's original task
(:func:`.redrive.verify_or_refuse`: a refusal is audited): the claims are named by that
signed task's workflow, role and step, never by the dead letter's unsigned headers. A
step with no claim in doubt is refused ``nothing-in-doubt``: there is nothing to settle.
On servers that enforce the policy the operator (the admin) reads and removes the claims,
which are in the role's own keys that no other role may write, and the dead letter; the
ingress writes the events and sends the task again.

Example:
    >>> letter = await get_dead_letter(admin, settings.dlq_stream, 42)  # doctest: +SKIP
    >>> await settle(cli, letter, happened=False, by="alice", operator=admin)  # doctest: +SKIP
"""

from __future__ import annotations

from typing import NamedTuple

from redis.exceptions import WatchError

from .._exceptions import SettleRefused
from ..envelope import Envelope
from ..memory import keys
from ..memory.effect_claims import RUNNING, decode_claim
from .reading import DeadLetter
from .redrive import Operating, Redriving, send_again, task_event, verify_or_refuse

SETTLED = "settled"
"""Event kind: a person's decision on a dead letter's side effects in doubt."""


class Settled(NamedTuple):
    """What :func:`settle` did."""

    claims: tuple[str, ...]
    """The Redis keys of the claims that were in doubt."""
    task: Envelope | None
    """The task sent again (it did not happen), or None (it did)."""


async def claims_in_doubt(
    operator: Operating, workflow: str, agent: str, step: str
) -> dict[str, bytes]:
    """The claims of ``agent``'s side effects in ``step`` of ``workflow`` that are still
    ``running``, by key, as stored (a live run's claim looks the same: settle only what a
    dead letter shows has no run any more)."""
    redis = operator.redis
    start = keys.once_prefix(operator.settings.subject_prefix, workflow, agent, step)
    found: dict[str, bytes] = {}
    async for key in redis.scan_iter(match=_glob_literal(start) + "*", count=1000):
        raw = await redis.get(key)
        if raw is None:
            continue
        try:
            claim = decode_claim(raw)
        except ValueError:  # msgspec's DecodeError and ValidationError
            continue
        if claim.state == RUNNING:
            name = key.decode() if isinstance(key, bytes) else key
            found[name] = raw if isinstance(raw, bytes) else raw.encode()
    return found


async def settle(
    ingress: Redriving,
    letter: DeadLetter,
    *,
    happened: bool,
    by: str,
    operator: Operating | None = None,
) -> Settled:
    """Carry out a person's finding on ``letter``'s side effects in doubt (see the module's
    docstring).

    Args:
        ingress: verifies the dead letter, writes the events, sends the task again.
        letter: the dead letter, read with its task (``with_task``).
        happened: what the person found at the target.
        by: who decided, as the ``settled`` event names them.
        operator: reads and removes the claims and the dead letter (the admin on servers
            that enforce the policy); ``ingress`` by default.

    Raises:
        RedriveRefused: the dead letter does not hold its role's original task (nothing
            done, a ``redrive-refused`` event written).
        SettleRefused: its step holds no claim in doubt, or a claim changed meanwhile
            (nothing removed or sent).
    """
    operator = operator or ingress
    original, chain = await verify_or_refuse(ingress, letter)
    step = original.step or original.id
    claims = await claims_in_doubt(operator, original.workflow, original.to, step)
    if not claims:
        raise SettleRefused(
            letter.seq,
            "nothing-in-doubt",
            f"{original.to} holds no side effect in doubt for step {step} of workflow "
            f"{original.workflow} (settled already? `jetmesh dlq redrive {letter.seq}` sends "
            "the task again)",
        )
    keys_in_doubt = tuple(sorted(claims))
    names = ", ".join(key.rsplit(":", 1)[1] for key in keys_in_doubt)
    if happened:
        detail = (
            f"dead letter {letter.seq}: {names} in doubt; {by} found it happened: the claim "
            "stays (the step is not run again) and the dead letter is removed"
        )
    else:
        detail = (
            f"dead letter {letter.seq}: {names} in doubt; {by} found it did not happen: the "
            "claim is removed and the task sent again"
        )
        for key, raw in claims.items():
            await _remove_if_unchanged(operator, letter.seq, key, raw)
    reason = "happened" if happened else "did-not-happen"
    await ingress.emit(
        original.workflow,
        task_event(ingress, original, SETTLED, task=original.id, reason=reason, detail=detail),
        caller=original.caller,
    )
    if happened:
        await operator.delete_msg(operator.settings.dlq_stream, letter.seq)
        return Settled(keys_in_doubt, None)
    task = await send_again(ingress, letter, original, chain, operator=operator)
    return Settled(keys_in_doubt, task)


async def _remove_if_unchanged(operator: Operating, seq: int, key: str, raw: bytes) -> None:
    """Delete ``key`` if it still holds ``raw`` (a WATCH transaction: the admin's, so no
    function of the library is needed for it).

    Raises:
        SettleRefused: it changed (its run recorded it, or another settling took it).
    """
    async with operator.redis.pipeline(transaction=True) as pipe:
        try:
            await pipe.watch(key)
            if await pipe.get(key) != raw:
                raise WatchError
            pipe.multi()  # type: ignore[no-untyped-call]
            pipe.delete(key)
            await pipe.execute()
        except WatchError:
            raise SettleRefused(
                seq,
                "claim-changed",
                f"{key} changed while it was being settled: read the step's events again",
            ) from None


def _glob_literal(text: str) -> str:
    """``text`` as a Redis glob pattern that matches only itself."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)
