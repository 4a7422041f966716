"""A step's result is kept as long as the ledger's records (``memory_ttl_s``, a week by
default); the events its run still had on their way when it was recorded are sent again
only within ``max_message_age_s``. So they are kept beside the result, in a key that lives
only that long, and the result keeps only the reply."""

from __future__ import annotations

from collections.abc import AsyncIterator

import msgspec
import pytest
from redis.asyncio import Redis

from jetmesh import MeshSettings
from jetmesh.envelope import encode, new_id
from jetmesh.memory import keys
from jetmesh.runtime.ledger import CarriedEvent, Recorded, StepLedger

pytestmark = pytest.mark.integration

NOTE = CarriedEvent(
    id="01N0TE",
    subject="mesh.events.wf.note",
    data=msgspec.Raw(b'{"signed":"as published"}'),
    headers={"Mesh-Sig": "abc", "Nats-Msg-Id": "01N0TE"},
    at=1.0,
)
EFFECT = msgspec.structs.replace(NOTE, id="01EFFECT", subject="mesh.events.wf.effect")
REPLY = Recorded(kind="reply", type="shop.Order/1", body=msgspec.Raw(b'{"item":"tea"}'))


@pytest.fixture
async def redis(settings: MeshSettings) -> AsyncIterator[Redis]:
    client = Redis.from_url(settings.redis_url)
    yield client
    await client.aclose()


async def test_the_carried_events_live_beside_the_result_for_their_own_time(
    redis: Redis, settings: MeshSettings
) -> None:
    ledger = StepLedger(redis, settings.subject_prefix, ttl_s=3600, carried_ttl_s=110)
    workflow = new_id()
    assert (await ledger.claim(workflow, "shop", "s", "r1:1:1", 5000)).taken
    await ledger.finish(workflow, "shop", "s", msgspec.structs.replace(REPLY, events=(NOTE,)))

    result = keys.result(settings.subject_prefix, workflow, "shop", "s")
    carried = keys.result_events(settings.subject_prefix, workflow, "shop", "s")
    assert await redis.get(result) == encode(REPLY), "the result holds the reply alone"
    assert 3590 < await redis.ttl(result) <= 3600
    assert 100 < await redis.ttl(carried) <= 110
    # a duplicate is answered from the record, with the events to send again
    claimed = await ledger.claim(workflow, "shop", "s", "r2:2:1", 5000)
    assert not claimed.taken
    assert claimed.result == msgspec.structs.replace(REPLY, events=(NOTE,))

    # once they have expired, the result answers alone
    await redis.delete(carried)
    assert (await ledger.claim(workflow, "shop", "s", "r2:2:2", 5000)).result == REPLY


async def test_a_result_with_nothing_on_its_way_writes_no_events_key(
    redis: Redis, settings: MeshSettings
) -> None:
    ledger = StepLedger(redis, settings.subject_prefix, ttl_s=3600, carried_ttl_s=110)
    workflow = new_id()
    await ledger.claim(workflow, "shop", "s", "r1:1:1", 5000)
    await ledger.finish(workflow, "shop", "s", REPLY)
    carried = keys.result_events(settings.subject_prefix, workflow, "shop", "s")
    assert not await redis.exists(carried)
    assert (await ledger.claim(workflow, "shop", "s", "r2:2:1", 5000)).result == REPLY


async def test_a_result_recorded_with_its_events_inside_is_read_the_same(
    redis: Redis, settings: MeshSettings
) -> None:
    """A record written before the events had a key of their own (an older replica's, in
    a fleet being upgraded) still gives its events; with some beside it too, both."""
    ledger = StepLedger(redis, settings.subject_prefix, ttl_s=3600, carried_ttl_s=110)
    workflow = new_id()
    inside = msgspec.structs.replace(REPLY, events=(NOTE,))
    result = keys.result(settings.subject_prefix, workflow, "shop", "s")
    await redis.set(result, encode(inside), ex=3600)
    assert (await ledger.claim(workflow, "shop", "s", "r1:1:1", 5000)).result == inside
    carried = keys.result_events(settings.subject_prefix, workflow, "shop", "s")
    await redis.set(carried, encode((EFFECT,)), ex=110)
    both = msgspec.structs.replace(REPLY, events=(NOTE, EFFECT))
    assert (await ledger.claim(workflow, "shop", "s", "r1:1:2", 5000)).result == both
