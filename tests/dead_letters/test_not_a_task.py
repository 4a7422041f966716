"""A dead letter that holds no task cannot be sent again: ``NotATask`` (a
``RedriveRefused``, reason ``not-a-task``) says what it holds, before anything is
verified or sent."""

from __future__ import annotations

import time

import pytest

from jetmesh import NotATask, RedriveRefused
from jetmesh.dead_letters import DeadLetter
from jetmesh.dead_letters.redrive import verify_original
from jetmesh.envelope import Envelope, encode_envelope, new_id


def letter(data: bytes) -> DeadLetter:
    return DeadLetter(
        seq=7,
        agent="planner",
        reason="unsigned",
        detail="no Mesh-Sig header",
        subject="mesh.agent.planner.task",
        at=time.time(),
        data=data,
        headers={},
        stored_on="mesh.dlq.planner",
    )


def envelope(kind: str) -> bytes:
    return encode_envelope(
        Envelope(
            id=new_id(),
            kind=kind,  # type: ignore[arg-type]
            workflow=new_id(),
            sender="counter",
            to="planner",
            created=time.time(),
        )
    )


@pytest.mark.parametrize(
    ("data", "detail"),
    [
        (b"not json", "its bytes are not an envelope, not a task"),
        (b"", "it holds no bytes (its task is no longer in the tasks stream), not a task"),
        (envelope("reply"), "it holds a reply, not a task"),
        (envelope("event"), "it holds an event, not a task"),
    ],
)
async def test_a_dead_letter_without_a_task_is_not_a_task(data: bytes, detail: str) -> None:
    with pytest.raises(NotATask) as refused:
        await verify_original(None, letter(data))  # type: ignore[arg-type]  # not reached
    assert isinstance(refused.value, RedriveRefused)
    assert (refused.value.seq, refused.value.reason) == (7, "not-a-task")
    assert refused.value.detail.startswith(detail), refused.value.detail
