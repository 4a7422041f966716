"""The step leases a replica's running tasks hold in the step ledger.

A task claims its step before its handler runs: it takes the step's lease (held for an
AckWait, renewed while it runs), or finds the step's recorded result (then the handler
must not run), or waits while another delivery of the same step holds the lease. The
lease is released when the task gives up on the step without a result, and forgotten when
the task ends (a recorded result ends it in the ledger).

Example:
    >>> leases = StepLeases(ledger, "billing", lease_ms=10_000)          # doctest: +SKIP
    >>> recorded, started, first = await leases.claim(workflow, step, holder)  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import contextlib

from .ledger import Recorded, StepLedger

LEASE_POLL_S = 0.2
"""How often a duplicate of a running step looks for its result."""


class StepLeases:
    """The leases of one replica of ``agent``, by the asyncio task that holds each."""

    def __init__(self, ledger: StepLedger, agent: str, *, lease_ms: int) -> None:
        self.ledger = ledger
        self.agent = agent
        self.lease_ms = lease_ms
        self._held: dict[asyncio.Task[None], tuple[str, str, str]] = {}
        """(workflow, agent, step) of each running task's lease."""

    async def claim(
        self, workflow: str, step: str, holder: str
    ) -> tuple[Recorded | None, bool, bool]:
        """Take the step's lease, or wait while another replica runs it. Returns the
        step's recorded result if it has one (then the handler must not run), whether
        another delivery's lease was found (the step had been started), and whether this
        is the step's first claim ever (nothing of it journaled yet).

        Raises:
            whatever :meth:`StepLedger.claim` raises (the ledger unreachable).
        """
        current = asyncio.current_task()
        waited = False
        while True:
            taken, recorded, first = await self.ledger.claim(
                workflow, self.agent, step, holder, self.lease_ms
            )
            if recorded is not None:  # (the script takes no lease when there is a result)
                return recorded, waited, False
            if taken:
                if current is not None:
                    self._held[current] = (workflow, self.agent, step)
                return None, waited, first
            waited = True
            await asyncio.sleep(LEASE_POLL_S)  # a duplicate: wait for the running one

    async def release(self, workflow: str, step: str, holder: str, *, unmark: bool = False) -> None:
        """Give the step's lease back (the task gives up on the step, no result);
        ``unmark``: and its begun mark (a first claim that did not run the step)."""
        current = asyncio.current_task()
        if current is not None:
            self._held.pop(current, None)
        with contextlib.suppress(Exception):
            await self.ledger.release(workflow, self.agent, step, holder, unmark=unmark)

    def forget(self, task: asyncio.Task[None]) -> None:
        """``task`` has ended: its lease is no longer renewed."""
        self._held.pop(task, None)

    async def renew(self) -> None:
        """Renew every running task's lease for another ``lease_ms`` (best effort)."""
        with contextlib.suppress(Exception):
            await self.ledger.renew(list(self._held.values()), self.lease_ms)
