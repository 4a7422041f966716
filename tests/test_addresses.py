"""Subject builders, token validation, wildcard matching and addressing."""

from __future__ import annotations

import pytest

from jetmesh import Subjects
from jetmesh.addresses import check_token, expected_kinds, subject_matches

S = Subjects("mesh")


def test_builders() -> None:
    assert S.task("billing") == "mesh.agent.billing.task"
    assert S.reply("billing", "i-1") == "mesh.agent.billing.reply.i-1"
    assert S.event("01JD", "completed") == "mesh.event.01JD.completed"
    assert S.event("01JD", "approval.requested") == "mesh.event.01JD.approval.requested"
    assert S.dlq("billing") == "mesh.dlq.billing"
    assert S.workflow_events("01JD") == "mesh.event.01JD.>"
    assert (S.all_tasks, S.all_events, S.all_dlq) == (
        "mesh.agent.*.task",
        "mesh.event.>",
        "mesh.dlq.>",
    )


def test_prefix_is_used_everywhere() -> None:
    acme = Subjects("acme")
    built = [acme.task("a"), acme.reply("a", "b"), acme.event("w", "k"), acme.dlq("a")]
    assert all(s.startswith("acme.") for s in built)
    assert acme.all_tasks.startswith("acme.")


BAD_TOKENS = [
    pytest.param("", id="empty"),
    pytest.param("a.b", id="dot"),
    pytest.param("*", id="star"),
    pytest.param(">", id="gt"),
    pytest.param("a b", id="space"),
    pytest.param("a\tb", id="tab"),
    pytest.param("a\nb", id="newline"),
    pytest.param("x" * 65, id="65-chars"),
    pytest.param("$JS.API.STREAM.DELETE.MESH_TASKS", id="js-api-injection"),
    pytest.param("$JS", id="dollar"),
    pytest.param("billing.task.>", id="wildcard-tail"),
    pytest.param("bill\u00e9", id="non-ascii"),
    pytest.param("billing\n", id="trailing-newline"),
]


@pytest.mark.parametrize("value", BAD_TOKENS)
def test_check_token_rejects(value: str) -> None:
    with pytest.raises(ValueError, match="invalid agent name"):
        check_token(value, "agent name")


@pytest.mark.parametrize("value", ["a", "billing", "Agent_2", "x-y", "x" * 64, "01JD0000"])
def test_check_token_accepts(value: str) -> None:
    assert check_token(value) == value


@pytest.mark.parametrize("value", BAD_TOKENS)
def test_builders_reject_bad_tokens(value: str) -> None:
    with pytest.raises(ValueError, match="invalid agent name"):
        S.task(value)
    with pytest.raises(ValueError, match="invalid instance id"):
        S.reply("billing", value)
    with pytest.raises(ValueError, match="invalid workflow id"):
        S.event(value, "completed")
    with pytest.raises(ValueError, match="invalid agent name"):
        S.dlq(value)


@pytest.mark.parametrize("prefix", ["", "a.b", "*", "mesh>"])
def test_bad_prefix_rejected(prefix: str) -> None:
    with pytest.raises(ValueError, match="subject prefix"):
        Subjects(prefix)


@pytest.mark.parametrize(
    "kind",
    [
        "",
        "Completed",
        "a.b.c",
        "*",
        ">",
        "a..b",
        "1st",
        "a b",
        pytest.param("completed\n"),
    ],
)
def test_bad_event_kind_rejected(kind: str) -> None:
    with pytest.raises(ValueError, match="invalid event kind"):
        S.event("01JD", kind)


@pytest.mark.parametrize(
    ("pattern", "subject", "expected"),
    [
        ("mesh.agent.billing.task", "mesh.agent.billing.task", True),
        ("mesh.agent.billing.task", "mesh.agent.kb.task", False),
        ("mesh.agent.*.task", "mesh.agent.kb.task", True),
        ("mesh.agent.*.task", "mesh.agent.kb.reply.i1", False),
        ("mesh.agent.*.task", "mesh.agent.task", False),
        ("mesh.agent.*.reply.*", "mesh.agent.kb.reply.i1", True),
        ("mesh.agent.*.reply.*", "mesh.agent.kb.reply", False),
        ("mesh.event.>", "mesh.event.w.completed", True),
        ("mesh.event.>", "mesh.event.w.approval.granted", True),
        ("mesh.event.>", "mesh.event", False),
        ("mesh.event.>", "mesh.events.w", False),
        (">", "anything.at.all", True),
        ("*", "one", True),
        ("*", "one.two", False),
        ("mesh.dlq.billing", "mesh.dlq.billing.extra", False),
        ("mesh.dlq.billing", "mesh.dlq", False),
    ],
)
def test_subject_matches(pattern: str, subject: str, expected: bool) -> None:
    assert subject_matches(pattern, subject) is expected


@pytest.mark.parametrize(
    ("subject", "agent"),
    [
        ("mesh.agent.billing.task", "billing"),
        ("mesh.agent.billing.reply.i1", "billing"),
        ("mesh.agent.billing.reply", None),
        ("mesh.agent.billing", None),
        ("mesh.agent.billing.task.extra", None),
        ("mesh.agent.billing.reply.i1.x", None),
        ("mesh.agent.billing.other", None),
        ("other.agent.billing.task", None),
        ("mesh.event.w.completed", None),
        ("mesh.dlq.billing", None),
    ],
)
def test_addressee(subject: str, agent: str | None) -> None:
    assert S.addressee(subject) == agent


@pytest.mark.parametrize(
    ("subject", "kinds"),
    [
        ("mesh.agent.billing.task", {"task"}),
        ("mesh.agent.billing.reply.i1", {"reply", "error"}),
        ("mesh.event.w.completed", {"event"}),
        ("mesh.event.w.approval.granted", {"event"}),
        ("mesh.dlq.billing", set()),
        ("elsewhere", set()),
    ],
)
def test_expected_kinds(subject: str, kinds: set[str]) -> None:
    assert expected_kinds(subject) == kinds
