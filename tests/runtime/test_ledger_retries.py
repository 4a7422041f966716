"""Ledger commands are safe to send twice: the Redis client retries a command whose
connection broke, and Redis may have run the first one."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from jetmesh import MeshSettings
from jetmesh.envelope import new_id
from jetmesh.memory import keys
from jetmesh.runtime.ledger import StepLedger

pytestmark = pytest.mark.integration


@pytest.fixture
async def ledger(settings: MeshSettings) -> AsyncIterator[StepLedger]:
    redis = Redis.from_url(settings.redis_url)
    yield StepLedger(redis, settings.subject_prefix, ttl_s=60)
    await redis.aclose()


async def test_a_claim_sent_again_by_its_holder_is_still_taken(ledger: StepLedger) -> None:
    workflow = new_id()
    assert await ledger.claim(workflow, "a", "s", "replica-1:7:1", 5000) == (True, None, True)
    # sent again (its reply lost): taken, and no longer the first (the journal is read)
    assert await ledger.claim(workflow, "a", "s", "replica-1:7:1", 5000) == (True, None, False)
    assert await ledger.claim(workflow, "a", "s", "replica-2:7:2", 5000) == (False, None, False)


async def test_only_a_steps_first_claim_ever_finds_its_journal_empty(
    ledger: StepLedger, settings: MeshSettings
) -> None:
    """A claim after the lease was given up or ran out (a retry, a replica that died, a
    caller's re-run sending the step again) may find journal entries of the runs before:
    it is not the first, though no lease is held any more."""
    workflow = new_id()
    assert (await ledger.claim(workflow, "a", "s", "r1:7:1", 5000)).first
    await ledger.release(workflow, "a", "s", "r1:7:1")
    assert await ledger.claim(workflow, "a", "s", "r1:7:2", 5000) == (True, None, False)
    await ledger._redis.delete(keys.lease(settings.subject_prefix, workflow, "a", "s"))  # ran out
    assert await ledger.claim(workflow, "a", "s", "r2:8:1", 5000) == (True, None, False)
    assert (await ledger.claim(workflow, "a", "s/a.1", "r2:8:1", 5000)).first, "another step"
    assert (await ledger.claim(workflow, "b", "s", "r3:9:1", 5000)).first, "another role's"
    # the mark is the role's own key, kept longer than the step's journal entries (60 s)
    begun = keys.begun(settings.subject_prefix, workflow, "a", "s")
    assert begun.startswith(f"{settings.subject_prefix}:journal:a:")
    assert 60 < await ledger._redis.ttl(begun) <= 120


async def test_an_effect_claim_sent_again_runs_the_effect_once(
    ledger: StepLedger, settings: MeshSettings
) -> None:
    """The SET of the claim went through but its reply was lost: the retried call finds
    its own claim and runs the effect (once), instead of reporting it in doubt."""
    workflow, runs = new_id(), []
    redis_key = keys.once(settings.subject_prefix, workflow, "a", "s", "mail")
    await ledger._redis.set(redis_key, b'{"state":"running","holder":"r1#1"}')

    async def effect() -> int:
        runs.append(1)
        return 42

    assert await ledger.once(workflow, "a", "s", "mail", effect, int, holder="r1#1") == 42
    assert runs == [1]
    assert await ledger.once(workflow, "a", "s", "mail", effect, int, holder="r2#2") == 42
    assert runs == [1]
