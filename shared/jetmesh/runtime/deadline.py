"""The deadline rule: which deliveries a task's deadline refuses, and which it does not.

A task carries its caller's deadline (``ctx.call``'s timeout, counted from sending). The
rule is applied after the step ledger has been consulted, so a step with a recorded result
is always answered from the record, whatever the deadline. Of the work not yet done, the
deadline refuses only what nobody has started:

- **refused** (``deadline-passed``): the task's first delivery arrives after the deadline,
  and its step has no result and was never begun: no live lease (no other delivery is
  running it) and no earlier claim (the step ledger's ``#begun`` mark, set by a step's
  first claim and taken back when the deadline refuses that claim). Nothing of it ran;
  nobody waits for it.
- **resumed**: a redelivery (attempt 2 and later), a delivery that found its step running
  under another delivery's lease and took it over, or the first delivery of a task whose
  step an earlier claim began (the same step sent again by a caller, after the delivery
  that began it died). Its step was started before the deadline (a first delivery after
  it is refused), may have made calls and side effects, and its result is what a caller
  that runs again and sends the same step is answered with. It is bounded by
  ``max_deliver`` as any task is, not by the deadline.

Example:
    >>> deadline_refusal(deadline=100.0, attempt=1, started=False, now=102.5)[:40]
    "first delivered 2.5 s after the caller's"
    >>> deadline_refusal(deadline=100.0, attempt=2, started=False, now=102.5) is None
    True
"""

from __future__ import annotations

DEADLINE_PASSED = "deadline-passed"
"""The reason code of a task refused by its deadline."""


def deadline_refusal(
    *, deadline: float | None, attempt: int, started: bool, now: float
) -> str | None:
    """The detail of a ``deadline-passed`` refusal, or None when the delivery is to run.

    Args:
        deadline: the task's deadline (Unix time), None for none.
        attempt: the delivery's number (1 for the first).
        started: the step was found running under another delivery's lease (this
            delivery waited it out and took it over), or an earlier claim began it.
        now: the current Unix time.
    """
    if deadline is None or deadline >= now or attempt > 1 or started:
        return None
    return (
        f"first delivered {now - deadline:.1f} s after the caller's deadline: "
        "the step had not started and has no result, so it was not run"
    )
