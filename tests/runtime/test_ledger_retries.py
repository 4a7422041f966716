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
    assert await ledger.claim(workflow, "a", "s", "replica-1:7:1", 5000) == (True, None)
    assert await ledger.claim(workflow, "a", "s", "replica-1:7:1", 5000) == (True, None)
    assert await ledger.claim(workflow, "a", "s", "replica-2:7:2", 5000) == (False, None)


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
