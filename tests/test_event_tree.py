"""Shaping a workflow's events into a tree of hops, without servers."""

from __future__ import annotations

from msgspec.structs import replace

from jetmesh import events as ev
from jetmesh.event_log import LoggedEvent, _open, build_tree

WF = "01JD0000000000000000000000"


def logged(
    kind: str, agent: str, task: str | None, parent: str | None, step: str, **fields: object
) -> LoggedEvent:
    event = ev.Event(
        kind=kind,
        agent=agent,
        at=0.0,
        task=task,
        parent=parent,
        step=step,
        caller="alice",
        **fields,
    )  # type: ignore[arg-type]
    return LoggedEvent(event, WF, agent, True, caller="alice")


def two_hops(*, with_callee: bool) -> list[LoggedEvent]:
    out = [
        logged(ev.ACCEPTED, "cli", None, None, "triage", target="triage"),
        # the caller's call event comes before anything else about its own task
        logged(
            ev.CALL,
            "triage",
            "t1",
            None,
            "triage",
            target="billing",
            callee_step="triage/billing.1",
        ),
    ]
    if with_callee:
        out.append(
            logged(
                ev.COMPLETED,
                "billing",
                "t2",
                "t1",
                "triage/billing.1",
                duration_ms=2.0,
                type="Ticket",
            )
        )
    out.append(logged(ev.COMPLETED, "triage", "t1", None, "triage", duration_ms=5.0, type="Ticket"))
    return out


def test_hops_nest_under_the_task_that_called_them() -> None:
    (root,) = build_tree(two_hops(with_callee=True))
    assert root.status == "accepted"
    (triage,) = root.children
    assert (triage.agent, triage.step, triage.status, triage.duration_ms) == (
        "triage",
        "triage",
        "completed",
        5.0,
    )
    (billing,) = triage.children
    assert (billing.agent, billing.step, billing.caller) == ("billing", "triage/billing.1", "alice")
    assert not _open(root)


def test_a_tree_is_open_while_a_called_task_has_no_events_yet() -> None:
    (root,) = build_tree(two_hops(with_callee=False))
    assert _open(root)


def test_custom_events_become_notes_and_failures_show_their_reason() -> None:
    events = [
        logged("routed", "triage", "t1", None, "triage", detail="billing: keyword rules"),
        logged(ev.RETRIED, "triage", "t1", None, "triage", reason="RuntimeError", detail="x"),
        logged(ev.FAILED, "triage", "t1", None, "triage", reason="max-deliveries", detail="y"),
    ]
    (node,) = build_tree(events)
    assert node.notes == ["routed: billing: keyword rules"]
    assert node.status == "failed"
    assert node.detail == "max-deliveries: y"


def test_a_task_belongs_to_the_role_it_was_sent_to_whoever_writes_first() -> None:
    """kb writes, in its own name, a completed event for billing's task before billing
    does: the task stays billing's, with billing's status, and kb's event is forged."""
    events = two_hops(with_callee=False)
    events.insert(2, logged(ev.COMPLETED, "kb", "t2", "t1", "triage/billing.1", detail="lie"))
    events.insert(3, logged(ev.COMPLETED, "billing", "t2", "t1", "triage/billing.1"))
    (root,) = build_tree(events)
    (triage,) = root.children
    (billing,) = triage.children
    assert (billing.agent, billing.status, billing.verified) == ("billing", "completed", False)
    assert [(e.signer, e.verified) for e in billing.events] == [("kb", False), ("billing", True)]
    assert billing.events[0].problem == "forged: signed by kb in billing's task"


def test_a_hop_its_caller_never_called_is_forged() -> None:
    events = two_hops(with_callee=True)
    events.insert(3, logged(ev.COMPLETED, "kb", "t9", "t1", "triage/kb.7"))
    (root,) = build_tree(events)
    (triage,) = root.children
    invented = next(c for c in triage.children if c.task == "t9")
    assert (invented.agent, invented.verified) == ("kb", False)
    assert invented.detail == "forged: triage logged no call to kb at step triage/kb.7"
    assert all(c.verified for c in triage.children if c.task != "t9")


def test_asking_again_in_the_same_workflow_is_one_entry_and_a_step_sent_again() -> None:
    """A caller that asks again (the same workflow, step and role) gets no second root:
    the entry notes it, and the second task of the same step is marked as sent again."""
    events = two_hops(with_callee=True)
    events += [
        logged(ev.ACCEPTED, "cli", None, None, "triage", target="triage"),
        logged(
            ev.COMPLETED,
            "triage",
            "t1b",
            None,
            "triage",
            detail="-> Ticket (step already done: recorded result sent again)",
        ),
    ]
    (root,) = build_tree(events)
    assert [n.split(" at ")[0] for n in root.notes] == ["asked again"]
    first, again = root.children
    assert (first.task, again.task) == ("t1", "t1b")
    assert first.notes == []
    assert again.notes == ["sent again: the same step"]


def test_a_started_event_stored_after_completed_leaves_the_task_finished() -> None:
    """Events are published without holding up the handler: a ``started`` whose publish
    waited out a server restart can be stored after its ``completed``."""
    events = two_hops(with_callee=True)
    events.insert(3, logged(ev.STARTED, "billing", "t2", "t1", "triage/billing.1", attempt=2))
    (root,) = build_tree(events)
    (triage,) = root.children
    (billing,) = triage.children
    assert (billing.status, billing.attempts) == ("completed", 2)
    assert not _open(root)


def test_a_call_event_written_into_another_roles_task_takes_no_hop_over() -> None:
    """kb writes, in its own name and before triage does, a call event into triage's task
    naming itself at the step triage is about to call billing at: billing's task stays
    billing's, and kb's call is forged."""
    events = two_hops(with_callee=True)
    events.insert(
        1,
        logged(ev.CALL, "kb", "t1", None, "triage", target="kb", callee_step="triage/billing.1"),
    )
    (root,) = build_tree(events)
    (triage,) = root.children
    (billing,) = triage.children
    assert (billing.agent, billing.verified, billing.status) == ("billing", True, "completed")
    assert [(e.signer, e.verified) for e in triage.events][:1] == [("kb", False)]


def at(
    when: float, kind: str, agent: str, task: str, parent: str | None, step: str, **kw: object
) -> LoggedEvent:
    """``logged``, at ``when`` (seconds)."""
    item = logged(kind, agent, task, parent, step, **kw)
    return LoggedEvent(replace(item.event, at=when), WF, agent, True, caller="alice")


def resumed(*, billing_done_at: float, caller_gave_up: bool) -> list[LoggedEvent]:
    """triage calls billing at 1 s; billing is killed once and completes on its second
    attempt; a redelivery of the finished step is answered from the ledger."""
    step = "triage/billing.1"
    out = [
        logged(ev.ACCEPTED, "cli", None, None, "triage", target="triage"),
        at(1.0, ev.CALL, "triage", "t1", None, "triage", target="billing", callee_step=step),
        at(2.0, "routed", "billing", "t2", "t1", step, detail="to refunds"),
        at(12.0, ev.STARTED, "billing", "t2", "t1", step, attempt=2),
        at(12.5, "routed", "billing", "t2", "t1", step, detail="to refunds"),
        at(billing_done_at, ev.COMPLETED, "billing", "t2", "t1", step, duration_ms=3.0, attempt=2),
        at(
            billing_done_at + 9,
            ev.COMPLETED,
            "billing",
            "t2",
            "t1",
            step,
            duration_ms=0.0,
            attempt=3,
            reason=ev.FROM_LEDGER,
        ),
    ]
    if caller_gave_up:
        out.append(
            at(
                11.0,
                ev.RETRIED,
                "triage",
                "t1",
                None,
                "triage",
                reason="MeshTimeout",
                detail="no reply from billing",
            )
        )
    return sorted(out, key=lambda item: item.event.at)


def test_a_resumed_step_shows_its_run_time_its_total_and_the_ledger_answer() -> None:
    (root,) = build_tree(resumed(billing_done_at=13.0, caller_gave_up=False))
    (billing,) = root.children[0].children
    assert (billing.status, billing.attempts, billing.duration_ms) == ("completed", 3, 3.0)
    assert billing.answered_again == 1
    assert billing.notes == [
        "21.0 s from call to last answer",
        "answered from the ledger (the handler did not run again)",
        "routed: to refunds",
    ], "one routed note for the two runs that emitted it"


def test_a_step_finished_after_its_caller_gave_up_is_marked() -> None:
    (root,) = build_tree(resumed(billing_done_at=13.0, caller_gave_up=True))
    (billing,) = root.children[0].children
    assert "finished after its caller's timeout" in billing.notes
    (root,) = build_tree(resumed(billing_done_at=10.0, caller_gave_up=True))
    (billing,) = root.children[0].children
    assert "finished after its caller's timeout" not in billing.notes, "it finished in time"


def _timed_out(when: float, callee_step: str) -> LoggedEvent:
    """triage's ``reply`` event for its call of ``callee_step``: none came in time."""
    return at(
        when,
        ev.REPLY,
        "triage",
        "t1",
        None,
        "triage",
        target="billing",
        callee_step=callee_step,
        reason=ev.TIMED_OUT,
    )


def test_a_caller_that_caught_the_timeout_marks_the_late_step() -> None:
    """The caller's handler caught MeshTimeout and went on (no retry, no failure): its
    ``reply`` event with reason timeout says when it gave up."""
    events = [
        *resumed(billing_done_at=13.0, caller_gave_up=False),
        _timed_out(11.0, "triage/billing.1"),
    ]
    (root,) = build_tree(sorted(events, key=lambda item: item.event.at))
    (billing,) = root.children[0].children
    assert "finished after its caller's timeout" in billing.notes


def test_another_calls_timeout_does_not_mark_the_step() -> None:
    """The caller's task was retried for a timeout of its other call: a log with the
    callers' timeout events takes them, not the retry, so billing.1 is not marked."""
    events = [
        *resumed(billing_done_at=13.0, caller_gave_up=True),
        _timed_out(10.5, "triage/billing.2"),
    ]
    (root,) = build_tree(sorted(events, key=lambda item: item.event.at))
    (billing,) = root.children[0].children
    assert "finished after its caller's timeout" not in billing.notes
