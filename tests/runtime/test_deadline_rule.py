"""The deadline rule and the timeouts' relation: what a task's deadline refuses, and the
settings that leave room for one redelivery within a call's deadline."""

from __future__ import annotations

import os

import pydantic
import pytest

from jetmesh import MeshSettings
from jetmesh.runtime.deadline import deadline_refusal


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("JETMESH_"):
            monkeypatch.delenv(name)


def test_a_first_delivery_after_the_deadline_is_refused_saying_nothing_ran() -> None:
    detail = deadline_refusal(deadline=100.0, attempt=1, started=False, now=103.25)
    assert detail is not None
    assert detail.startswith("first delivered 3.2 s after the caller's deadline")
    assert "had not started" in detail


@pytest.mark.parametrize(
    ("attempt", "started", "deadline", "now"),
    [
        (2, False, 100.0, 150.0),  # a redelivery: a replica took it before the deadline
        (5, False, 100.0, 150.0),
        (1, True, 100.0, 150.0),  # found running under another delivery's lease
        (1, False, 100.0, 99.0),  # in time
        (1, False, 100.0, 100.0),  # at the deadline, not after it
        (1, False, None, 1e12),  # no deadline
    ],
)
def test_work_that_started_or_is_in_time_is_not_refused(
    attempt: int, started: bool, deadline: float | None, now: float
) -> None:
    assert deadline_refusal(deadline=deadline, attempt=attempt, started=started, now=now) is None


def test_default_timeouts_leave_room_for_one_redelivery() -> None:
    s = MeshSettings()
    assert (s.ack_wait_s, s.call_timeout_s) == (10.0, 30.0)
    assert s.call_timeout_s >= 2 * s.ack_wait_s
    # a step of (call_timeout - ack_wait) / 2 killed at its end: redelivered, run again, in time
    work = (s.call_timeout_s - s.ack_wait_s) / 2
    assert work == 10.0
    assert work + s.ack_wait_s + work <= s.call_timeout_s


@pytest.mark.parametrize(
    "values",
    [
        {"ack_wait_s": 30.0},  # the old default: a redelivery came after the caller gave up
        {"ack_wait_s": 10.0, "call_timeout_s": 19.9},
        {"call_timeout_s": 5.0},
    ],
)
def test_a_call_timeout_without_room_for_a_redelivery_is_refused(values: dict[str, float]) -> None:
    with pytest.raises(
        pydantic.ValidationError, match=r"call_timeout_s .* at least 2 \* ack_wait_s"
    ):
        MeshSettings(**values)


def test_the_relation_is_checked_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JETMESH_ACK_WAIT_S", "20")
    with pytest.raises(ValueError, match="ack_wait_s"):
        MeshSettings()
    monkeypatch.setenv("JETMESH_CALL_TIMEOUT_S", "40")
    assert MeshSettings().call_timeout_s == 40.0
