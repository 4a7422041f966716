"""GET /v1/workflows/{id} and its Server-Sent Events: the workflow's verified events, for
the caller who started it only."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.services.gateway.conftest import ALICE_KEY, BOB_KEY, Served, auth

pytestmark = pytest.mark.integration


def sse(text: str) -> list[dict[str, str]]:
    """The events of an SSE body (comments, such as heartbeats, left out)."""
    out = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        fields: dict[str, str] = {}
        for line in block.split("\n"):
            name, sep, value = line.partition(": ")
            if sep and name in ("id", "event", "data"):
                fields[name] = value
        if fields:
            out.append(fields)
    return out


async def started(served: Served, body: dict[str, Any]) -> str:
    r = await served.post("echo", body, headers={"Prefer": "wait=10"})
    assert r.status_code == 200, r.text
    workflow: str = r.json()["workflow"]
    return workflow


async def test_the_caller_reads_its_workflow_and_nobody_else_does(served: Served) -> None:
    workflow = await started(served, {"text": "hi"})
    r = await served.http.get(f"/v1/workflows/{workflow}", headers=auth(ALICE_KEY))
    assert r.status_code == 200, r.text
    got = r.json()
    assert (got["workflow"], got["agent"]) == (workflow, "echo")
    kinds = [(e["kind"], e["agent"], e["verified"]) for e in got["events"]]
    assert ("accepted", "gateway", True) in kinds
    assert ("completed", "echo", True) in kinds
    done = next(e for e in got["events"] if e["kind"] == "completed")
    assert done["task"] == got["task"]
    assert done["body"]["text"] == "HI"
    seqs = [e["seq"] for e in got["events"]]
    assert seqs == sorted(seqs)

    for path in (f"/v1/workflows/{workflow}", f"/v1/workflows/{workflow}/events"):
        r = await served.http.get(path, headers=auth(BOB_KEY))
        assert (r.status_code, r.json()["reason"]) == (404, "unknown-workflow")
    for unknown in ("W00000000000000000000000000", "not.a.token", "x" * 65):
        r = await served.http.get(f"/v1/workflows/{unknown}", headers=auth(ALICE_KEY))
        assert (r.status_code, r.json()["reason"]) == (404, "unknown-workflow")
    r = await served.http.get(f"/v1/workflows/{workflow}")
    assert (r.status_code, r.json()["reason"]) == (401, "missing-credentials")


async def test_events_stream_until_the_root_task_ends_and_resume_after_an_id(
    served: Served,
) -> None:
    r = await served.post("echo", {"text": "later", "pause_s": 0.3})
    assert r.status_code == 202
    workflow = r.json()["workflow"]
    r = await served.http.get(f"/v1/workflows/{workflow}/events", headers=auth(ALICE_KEY))
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/event-stream")
    events = sse(r.text)
    assert events[0]["event"] == "accepted"
    assert events[-1]["event"] == "completed"
    ids = [int(e["id"]) for e in events]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)

    resumed = await served.http.get(
        f"/v1/workflows/{workflow}/events",
        headers=auth(ALICE_KEY) | {"Last-Event-ID": events[0]["id"]},
    )
    assert [e["id"] for e in sse(resumed.text)] == [e["id"] for e in events[1:]]
    at_end = await served.http.get(
        f"/v1/workflows/{workflow}/events",
        headers=auth(ALICE_KEY) | {"Last-Event-ID": events[-1]["id"]},
    )
    assert (at_end.status_code, sse(at_end.text)) == (200, [])
    bad = await served.http.get(
        f"/v1/workflows/{workflow}/events", headers=auth(ALICE_KEY) | {"Last-Event-ID": "x"}
    )
    assert (bad.status_code, bad.json()["reason"]) == (400, "bad-request")


async def test_a_refused_root_task_ends_its_stream(served: Served) -> None:
    r = await served.post("echo", {"text": "no"})
    workflow = r.json()["workflow"]
    r = await served.http.get(f"/v1/workflows/{workflow}/events", headers=auth(ALICE_KEY))
    assert sse(r.text)[-1]["event"] in ("failed", "rejected")


async def test_streamed_chunks_come_in_the_event_stream_in_order_and_resume(
    served: Served,
) -> None:
    r = await served.post("echo", {"text": "one two three", "words": True})
    assert r.status_code == 202
    workflow = r.json()["workflow"]
    r = await served.http.get(f"/v1/workflows/{workflow}/events", headers=auth(ALICE_KEY))
    events = sse(r.text)
    chunks = [json.loads(e["data"]) for e in events if e["event"] == "chunk"]
    assert [(c["key"], c["body"]) for c in chunks] == [("0", "ONE"), ("1", "TWO"), ("2", "THREE")]
    assert {(c["agent"], c["verified"]) for c in chunks} == {("echo", True)}
    kinds = [e["event"] for e in events]
    assert kinds.index("completed") > max(i for i, k in enumerate(kinds) if k == "chunk")

    first = next(e for e in events if e["event"] == "chunk")
    resumed = await served.http.get(
        f"/v1/workflows/{workflow}/events",
        headers=auth(ALICE_KEY) | {"Last-Event-ID": first["id"]},
    )
    again = [json.loads(e["data"]) for e in sse(resumed.text) if e["event"] == "chunk"]
    assert [c["body"] for c in again] == ["TWO", "THREE"]
