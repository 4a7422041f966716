"""A call's chunk feed: chunks in index order, each once, whatever order they arrive in."""

from __future__ import annotations

import msgspec
import pytest

from jetmesh import Malformed
from jetmesh import events as ev
from jetmesh.envelope import Envelope
from jetmesh.runtime.streaming import MAX_AHEAD, Chunk, ChunkFeed, chunk_id, chunk_of


def chunk(index: int, value: str = "") -> Chunk:
    return Chunk(index, "str", msgspec.Raw(msgspec.json.encode(value or f"c{index}")))


def taken(feed: ChunkFeed) -> list[int]:
    out = []
    while (c := feed.take()) is not None:
        out.append(c.index)
    return out


def test_out_of_order_chunks_wait_for_the_missing_index() -> None:
    feed = ChunkFeed()
    assert feed.put(chunk(1))
    assert taken(feed) == []
    assert feed.put(chunk(0))
    assert taken(feed) == [0, 1]
    assert feed.next_index == 2


def test_a_duplicate_or_an_old_index_is_dropped() -> None:
    feed = ChunkFeed()
    assert feed.put(chunk(0))
    assert not feed.put(chunk(0, "again"))
    assert feed.put(chunk(2))
    assert not feed.put(chunk(2))
    assert feed.dropped == 2
    assert [c.value for c in [feed.take()]] == ["c0"]


def test_a_feed_resumes_after_an_index() -> None:
    feed = ChunkFeed(after=4)
    assert not feed.put(chunk(3))
    assert feed.put(chunk(5))
    assert taken(feed) == [5]


def test_at_the_end_the_chunks_after_a_gap_are_handed_on_in_order() -> None:
    feed = ChunkFeed()
    for index in (0, 3, 2):
        feed.put(chunk(index))
    assert taken(feed) == [0]
    feed.finish()
    assert taken(feed) == [2, 3]
    assert feed.next_index == 4


def test_a_chunk_too_far_ahead_is_dropped() -> None:
    feed = ChunkFeed()
    assert not feed.put(chunk(MAX_AHEAD))
    assert feed.put(chunk(MAX_AHEAD - 1))


def test_a_live_envelope_that_carries_no_chunk_of_its_task_is_malformed() -> None:
    feed = ChunkFeed()

    def envelope(body: object, parent: str = "T1") -> Envelope:
        return Envelope(
            id="E1",
            kind="reply",
            workflow="W",
            sender="writer",
            to="cli",
            created=0.0,
            type=ev.EVENT_TYPE,
            parent=parent,
            step="writer",
            body=msgspec.Raw(msgspec.json.encode(body)),
        )

    good = ev.Event(
        kind=ev.CHUNK,
        agent="writer",
        at=0.0,
        task="T1",
        key="0",
        body=ev.EventPayload(type="str", value=msgspec.Raw(b'"hi"')),
    )
    with pytest.raises(Malformed, match="not an event"):
        feed.add(envelope("text"))
    with pytest.raises(Malformed, match="chunk of task T1 sent for task T2"):
        feed.add(envelope(good, parent="T2"))
    with pytest.raises(Malformed, match="not a chunk event"):
        feed.add(envelope(msgspec.structs.replace(good, kind=ev.COMPLETED)))
    with pytest.raises(Malformed, match="not a chunk event"):
        feed.add(envelope(msgspec.structs.replace(good, key="-1")))
    feed.add(envelope(good))
    assert [(c.index, c.value) for c in [feed.take()] if c] == [(0, "hi")]


def test_a_chunk_is_stored_under_its_task_and_index() -> None:
    assert chunk_id("01JD7W3K8Q4Z6X2B9M5N0P1R3T", 7) == "01JD7W3K8Q4Z6X2B9M5N0P1R3T-c7"
    event = ev.Event(kind=ev.CHUNK, agent="a", at=0.0, key="3", callee_step="s/model.1")
    with pytest.raises(Malformed):
        chunk_of(event)  # no body
