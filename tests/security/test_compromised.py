"""One compromised role against the running mesh: every trust decision is taken on the
verified signer, bound to workflow, step and call.

The attacker holds exactly ``kb``'s secrets (:class:`tests.security.compromised.CompromisedRole`)
on servers that enforce the policy, with every role running as its own process. ``kb`` is
called by ``billing``, so its NATS user may publish on billing's reply subjects and on
``mesh.event.>``, and it may read every workflow's events. Each attack must be refused
with its own reason, leave no effect in the system it targets (counted there, as the
admin), leave one audit record, and the mesh must serve the next request.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator, Callable

import msgspec
import pytest
from redis.exceptions import NoPermissionError, ResponseError

from jetmesh import Envelope, Event, EventPayload, PublishFailed
from jetmesh.bus.direct import read_from
from jetmesh.dead_letters import UNVERIFIED_WORKFLOW
from jetmesh.envelope import decode_envelope, encode_envelope, new_id, type_name
from jetmesh.event_log import LoggedEvent, build_tree
from jetmesh.identity.verifier import MSG_ID_HEADER
from jetmesh.memory import keys
from jetmesh.memory.functions import FINISH
from jetmesh.processes import settings_env
from jetmesh.replay.history import history_of
from jetmesh.runtime.ledger import Recorded
from tests.security.compromised import CompromisedRole, TargetMesh
from tests.security.target_agents import Approval, Outcome, Paid, Refund, Score

pytestmark = pytest.mark.integration

WAIT_S = 20.0


@pytest.fixture(scope="module")
async def target(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[TargetMesh]:
    mesh = TargetMesh(tmp_path_factory.mktemp("target"))
    try:
        yield await mesh.start()
    finally:
        await mesh.aclose()


@pytest.fixture
async def kb(target: TargetMesh) -> CompromisedRole:
    return await target.compromise("kb")


def ask(target: TargetMesh, refund: Refund, workflow: str) -> asyncio.Task[Outcome]:
    assert target.cli is not None
    return asyncio.create_task(
        target.cli.request(
            "billing", refund, token=target.token(), returns=Outcome, workflow=workflow, timeout=30
        )
    )


async def seen_by(
    attacker: CompromisedRole, workflow: str, until: Callable[[list[Envelope]], bool]
) -> list[Envelope]:
    """The workflow's events as the attacker reads them (its role may direct-get the events
    stream), re-read until ``until`` holds."""
    mesh = attacker.mesh
    deadline = time.monotonic() + WAIT_S
    subject = mesh.subjects.workflow_events(workflow)
    while True:
        got = [
            decode_envelope(s.data)
            async for s in read_from(mesh.js, mesh.settings.events_stream, subject)
        ]
        if until(got) or time.monotonic() > deadline:
            return got
        await asyncio.sleep(0.05)


def events_of(envelopes: list[Envelope], kind: str, agent: str | None = None) -> list[Event]:
    out = [msgspec.json.decode(e.body, type=Event) for e in envelopes]
    return [e for e in out if e.kind == kind and (agent is None or e.agent == agent)]


async def serves_on(target: TargetMesh) -> None:
    """The mesh answers the next request, and pays it once."""
    workflow = new_id()
    outcome = await ask(target, Refund(order="next", amount=1.0), workflow)
    assert outcome.status == "refunded"
    assert await target.paid(workflow) == 1.0


def rejected(logged: list[LoggedEvent], reason: str) -> list[LoggedEvent]:
    return [e for e in logged if e.event.kind == "rejected" and e.event.reason == reason]


async def test_the_attacker_holds_exactly_one_roles_secrets(
    target: TargetMesh, kb: CompromisedRole
) -> None:
    root = next(iter(target.keys.roots()))
    assert kb.held() == sorted(
        ["kb.cert", "kb.key", "nats/kb.nk", "redis/kb.pass", f"roots/{root}.pub"]
    )
    assert kb.mesh.login.user == "kb"
    assert kb.mesh.login.redis_user == "kb"
    await serves_on(target)


# -- 1. forged replies ----------------------------------------------------------------------


@pytest.mark.parametrize("callee", ["critic", "payments"])
async def test_a_reply_to_a_call_to_another_role_is_refused(
    target: TargetMesh, kb: CompromisedRole, callee: str
) -> None:
    """kb may answer billing's calls to kb; it answers billing's call to ``callee`` first
    (a score of 0.99, a payment that never happened), with a task id read from the log."""
    workflow = new_id()
    asked = ask(
        target,
        Refund(order="o1", amount=10.0, critic_pause_s=1.5, pay_pause_s=1.5),
        workflow,
    )
    log = await seen_by(kb, workflow, lambda got: bool(events_of(got, "started", callee)))
    (started,) = events_of(log, "started", callee)
    (call,) = [e for e in events_of(log, "call", "billing") if e.target == callee]
    body: Score | Paid = Score(0.99) if callee == "critic" else Paid("pay-forged", 9999.0)
    forged = kb.mesh.envelope(
        kind="reply",
        workflow=workflow,
        to="billing",
        body=body,
        caller=log[0].caller,  # the caller token travels with every event
        parent=started.task,
        step=call.callee_step,
        type_=type_name(type(body)),
    )
    await kb.publish(kb.mesh.subjects.reply("billing", call.instance), forged)

    outcome = await asked
    assert outcome.status == "refunded"
    assert (outcome.score, outcome.paid, outcome.amount) == (0.4, "pay-o1", 10.0), "real answers"
    assert await target.paid(workflow) == 10.0, "paid once, the real amount"
    logged = await target.events(workflow)
    (audit,) = rejected(logged, "forged-reply")
    assert (audit.signer, audit.verified) == ("billing", True)
    assert "signed by kb" in audit.event.detail
    letters = [d for d in await target.dead_letters("billing") if d.reason == "forged-reply"]
    assert [d.envelope().id for d in letters if d.envelope()].count(forged.id) == 1
    await serves_on(target)


# -- 3. signals and approvals ---------------------------------------------------------------


@pytest.mark.parametrize("forged_ok", [True, False], ids=["approve", "deny"])
async def test_a_role_cannot_decide_a_persons_approval_with_a_reused_token(
    target: TargetMesh, kb: CompromisedRole, forged_ok: bool
) -> None:
    """bob approved an earlier refund; his caller token is in that workflow's log. kb
    stores an approval signal (or a denial, to block the refund) for a refund now waiting
    for a person, with bob's token. It does not count; carol's decision does."""
    assert target.cli is not None
    earlier = new_id()
    first = ask(target, Refund(order="e", amount=2.0, approval=True), earlier)
    await seen_by(kb, earlier, lambda got: bool(events_of(got, "waiting")))
    await target.cli.signal(earlier, "approval", Approval(True), token=target.token("bob"))
    assert (await first).approved_by == "bob"
    log = await seen_by(kb, earlier, lambda got: bool(events_of(got, "signal")))
    (bobs,) = [e for e in log if msgspec.json.decode(e.body, type=Event).kind == "signal"]

    workflow = new_id()
    asked = ask(target, Refund(order="w", amount=5.0, approval=True), workflow)
    waiting = await seen_by(kb, workflow, lambda got: bool(events_of(got, "waiting")))
    (wait,) = events_of(waiting, "waiting")
    signal = Event(
        kind="signal",
        agent="kb",
        at=time.time(),
        key="approval",
        step=wait.step,
        caller="bob",
        body=EventPayload(
            type=type_name(Approval), value=msgspec.Raw(msgspec.json.encode(Approval(forged_ok)))
        ),
    )
    forged = kb.mesh.event_envelope(workflow, signal, caller=bobs.caller)
    await kb.store(kb.mesh.subjects.event(workflow, "signal"), forged)
    await target.cli.signal(
        workflow, "approval", Approval(not forged_ok), token=target.token("carol")
    )

    outcome = await asked
    assert outcome.approved_by == "carol"
    assert outcome.status == ("denied" if forged_ok else "refunded")
    assert await target.paid(workflow) == (0.0 if forged_ok else 5.0)
    logged = await target.events(workflow)
    (audit,) = rejected(logged, "signal-refused")
    assert audit.signer == "billing"
    assert "signed by kb" in audit.event.detail
    letters = [d for d in await target.dead_letters("billing") if d.reason == "signal-refused"]
    assert [d.envelope().id for d in letters if d.envelope()].count(forged.id) == 1
    await serves_on(target)


# -- 4. events credited to their signer -----------------------------------------------------


async def test_events_are_credited_to_their_signer_not_the_agent_they_name(
    target: TargetMesh, kb: CompromisedRole
) -> None:
    """kb writes into a finished workflow: a ``completed`` naming billing with a forged
    result, an event naming payments, and a payments hop that billing never called."""
    workflow = new_id()
    assert (await ask(target, Refund(order="t", amount=3.0), workflow)).status == "refunded"
    log = await seen_by(kb, workflow, lambda got: bool(events_of(got, "completed", "billing")))
    (billing_done,) = events_of(log, "completed", "billing")
    caller = log[0].caller
    now = time.time()
    lie = Outcome(status="refunded", score=0.99, paid="pay-9999", amount=9999.0)
    forgeries = [
        Event(
            kind="completed",
            agent="billing",
            at=now,
            task=billing_done.task,
            parent=billing_done.parent,
            step=billing_done.step,
            body=EventPayload(type=type_name(Outcome), value=msgspec.Raw(msgspec.json.encode(lie))),
        ),
        Event(
            kind="started",
            agent="payments",
            at=now,
            task=new_id(),
            parent=billing_done.task,
            step=f"{billing_done.step}/payments.7",
        ),
        Event(
            kind="completed",
            agent="kb",
            at=now,
            task=new_id(),
            parent=billing_done.task,
            step=f"{billing_done.step}/payments.8",
        ),
    ]
    for event in forgeries:
        envelope = kb.mesh.event_envelope(workflow, event, caller=caller)
        await kb.store(kb.mesh.subjects.event(workflow, event.kind), envelope)

    logged = await target.events(workflow)
    forged = [e for e in logged if not e.verified]
    assert [e.signer for e in forged] == ["kb", "kb"], "the two naming another role"
    assert all(e.problem.startswith("forged: signed by kb") for e in forged)
    (root,) = build_tree(logged)
    (billing,) = root.children
    assert (billing.agent, billing.status, billing.verified) == ("billing", "completed", False)
    hops = {(c.agent, c.verified) for c in billing.children}
    assert ("kb", False) in hops, "a hop nobody called is shown as forged"
    assert ("payments", True) in hops
    assert ("critic", True) in hops
    never = next(c for c in billing.children if c.agent == "kb" and c.step.endswith(".8"))
    assert never.detail.startswith("forged: billing logged no call to kb")
    replayed = next(t for t in history_of(workflow, logged).tasks() if t.agent == "billing")
    assert replayed.result is not None
    assert replayed.result.body is not None
    assert msgspec.json.decode(replayed.result.body, type=Outcome).amount == 3.0, "not the lie"
    assert await target.paid(workflow) == 3.0
    code, tree, err = await jetmesh_cli(target, "events", workflow)
    assert code == 0, err
    assert "FORGED" in tree
    code, raw, err = await jetmesh_cli(target, "events", workflow, "--raw")
    assert code == 0, err
    assert "kb as billing" in raw
    assert "kb as payments" in raw
    await serves_on(target)


# -- 2. the step ledger: only its owner writes it -------------------------------------------


@pytest.mark.parametrize(
    "kind", ["journal", "once", "wait", "result", "lease", "journal-shared-layout"]
)
async def test_a_role_cannot_write_another_roles_ledger(
    target: TargetMesh, kb: CompromisedRole, kind: str
) -> None:
    """While billing waits for a person, kb writes what would make it pay a forged receipt
    without calling (its journal), skip or reset its effect claim or its wait clock, or make
    payments answer from a forged result. Redis refuses every write (NOPERM, in ACL LOG)."""
    assert target.cli is not None
    workflow = new_id()
    asked = ask(target, Refund(order="j", amount=7.0, approval=True), workflow)
    waiting = await seen_by(kb, workflow, lambda got: bool(events_of(got, "waiting")))
    (wait,) = events_of(waiting, "waiting")
    p = target.settings.subject_prefix
    pay_step = f"{wait.step}/payments.3"
    key = {
        "journal": keys.journal(p, workflow, "billing", pay_step),
        "once": keys.once(p, workflow, "billing", wait.step, "pay"),
        "wait": keys.wait(p, workflow, "billing", wait.step, "approval"),
        "result": keys.result(p, workflow, "payments", pay_step),
        "lease": keys.lease(p, workflow, "payments", pay_step),
        "journal-shared-layout": f"{p}:journal:{workflow}:{pay_step}",
    }[kind]
    lie = Recorded(
        kind="reply",
        type=type_name(Paid),
        body=msgspec.Raw(msgspec.json.encode(Paid("pay-9999", 9999.0))),
    )
    since = time.time()
    with pytest.raises(NoPermissionError):
        await kb.redis.set(key, msgspec.json.encode(lie))
    await target.cli.signal(workflow, "approval", Approval(True), token=target.token("carol"))

    outcome = await asked
    assert (outcome.status, outcome.paid, outcome.amount) == ("refunded", "pay-j", 7.0)
    assert await target.paid(workflow) == 7.0
    audit = [e for e in await target.acl_log("kb", since) if e["object"] == key]
    assert len(audit) == 1
    assert audit[0]["reason"] == "key"
    await serves_on(target)


# -- 6. no scripts of its own ---------------------------------------------------------------

BUSY = "local n = 0 for i = 1, 20000000 do n = n + 1 end return n"
EVIL = "#!lua name=evil\nredis.register_function('spin', function() return 1 end)"


@pytest.mark.parametrize(
    "command",
    [
        ("EVAL", BUSY, "0"),
        ("EVAL_RO", BUSY, "0"),
        ("SCRIPT", "LOAD", BUSY),
        ("FUNCTION", "LOAD", EVIL),
        ("FUNCTION", "FLUSH"),
        ("FUNCTION", "DELETE", "jetmesh"),
    ],
    ids=["eval", "eval-ro", "script-load", "function-load", "function-flush", "function-delete"],
)
async def test_a_role_cannot_run_or_change_scripts(
    target: TargetMesh, kb: CompromisedRole, command: tuple[str, ...]
) -> None:
    """A busy loop as kb would stall every role's Redis; a flushed library would stop the
    step ledger of all. Roles may only FCALL the functions the admin step loaded."""
    since = time.time()
    with pytest.raises(NoPermissionError):
        await kb.redis.execute_command(*command)
    audit = await target.acl_log("kb", since)
    assert len(audit) == 1
    assert audit[0]["reason"] == "command"
    assert target.admin is not None
    (library,) = await target.admin.redis.function_list()  # flat: name, value, ...
    assert dict(zip(library[::2], library[1::2], strict=True))[b"library_name"] == b"jetmesh"
    await serves_on(target)


async def test_a_role_cannot_use_the_mesh_functions_on_another_roles_keys(
    target: TargetMesh, kb: CompromisedRole
) -> None:
    """FCALL checks the keys it is given against the caller's ACL patterns."""
    p = target.settings.subject_prefix
    workflow = new_id()
    result = keys.result(p, workflow, "payments", "billing/payments.3")
    lease = keys.lease(p, workflow, "payments", "billing/payments.3")
    since = time.time()
    with pytest.raises(NoPermissionError):
        await kb.redis.fcall(FINISH, 2, result, lease, b"{}", 60)
    assert await target.acl_log("kb", since)
    assert target.admin is not None
    assert await target.admin.redis.exists(result) == 0


# -- 5. a refusal cannot escape the audit trail ---------------------------------------------

NATS_HEADERS = {
    "Nats-Expected-Stream": "MESH_TASKS",
    "Nats-Expected-Last-Sequence": "1",
    "Nats-Expected-Last-Subject-Sequence": "1",
    "Nats-Expected-Last-Msg-Id": "nope",
    "Nats-Rollup": "all",
    "Nats-TTL": "1s",
    "Nats-Marker-Reason": "MaxAge",
    "Nats-Batch-Id": "b1",
    "Nats-Batch-Sequence": "1",
    "Nats-Batch-Commit": "1",
    "Nats-Schedule": "@at 2020-01-01T00:00:00Z",
    "Nats-Required-Api-Level": "99",
}


async def test_a_refused_message_with_stream_instructions_is_dead_lettered_once(
    target: TargetMesh, kb: CompromisedRole
) -> None:
    """kb sends billing a forged reply carrying every ``Nats-*`` instruction a publisher
    can set, twice: the dead letters keep none of them, so MESH_DLQ stores each, with its
    ``rejected`` event (before, ``Nats-Expected-Stream`` made the dead letter itself
    refused and the refusal left no trace)."""
    workflow = new_id()
    asked = ask(target, Refund(order="h", amount=4.0, critic_pause_s=1.5), workflow)
    log = await seen_by(kb, workflow, lambda got: bool(events_of(got, "started", "critic")))
    (started,) = events_of(log, "started", "critic")
    (call,) = [e for e in events_of(log, "call", "billing") if e.target == "critic"]
    forged = kb.mesh.envelope(
        kind="reply",
        workflow=workflow,
        to="billing",
        body=Score(0.99),
        caller=log[0].caller,
        parent=started.task,
        step=call.callee_step,
        type_=type_name(Score),
    )
    data, headers = kb.mesh.seal(forged)
    subject = kb.mesh.subjects.reply("billing", call.instance)
    for _ in range(2):  # the same message again: refused as a replay, its own dead letter
        await kb.mesh.nc.publish(subject, data, headers={**headers, **NATS_HEADERS})
    await kb.mesh.nc.flush()

    assert (await asked).score == 0.4
    logged = await target.events(workflow)
    assert len(rejected(logged, "forged-reply")) >= 1
    letters = [
        d
        for d in await target.dead_letters("billing")
        if (env := d.envelope()) is not None and env.id == forged.id
    ]
    assert sorted(d.reason for d in letters) == ["forged-reply", "replayed"]  # once each
    assert not [h for d in letters for h in d.headers if h in NATS_HEADERS]
    await serves_on(target)


# -- 8. operator tools on hostile data ------------------------------------------------------


async def jetmesh_cli(target: TargetMesh, *args: str) -> tuple[int, str, str]:
    """``jetmesh ARGS`` as a process, as the operator (the admin's keys directory)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "jetmesh.cli",
        *args,
        env=settings_env(target.settings),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_operator_tools_print_hostile_data_as_text(
    target: TargetMesh, kb: CompromisedRole
) -> None:
    """kb writes rich markup and control characters into an event and a dead letter with a
    non-ASCII key id; ``jetmesh events`` and ``jetmesh dlq list`` print them as text."""
    workflow = new_id()
    assert (await ask(target, Refund(order="m", amount=1.0), workflow)).status == "refunded"
    log = await seen_by(kb, workflow, lambda got: bool(events_of(got, "completed", "billing")))
    hostile = "[/dim][bold red]PAID 9999[/] \x1b[2J\u202e"
    event = Event(kind="note", agent="kb", at=time.time(), detail=hostile, task=new_id())
    await kb.store(
        kb.mesh.subjects.event(workflow, "note"),
        kb.mesh.event_envelope(workflow, event, caller=log[0].caller),
    )
    await kb.mesh.publisher.publish(
        kb.mesh.subjects.dlq("kb"),
        b'{"kind": "task"}',
        {"Mesh-Key": "kb-\u00e9\u00e9\u00e9", "Mesh-Dlq-Reason": "[/dim]", "Nats-Msg-Id": new_id()},
    )

    code, out, err = await jetmesh_cli(target, "events", workflow)
    assert code == 0, err
    assert "[/dim][bold red]PAID 9999[/]" in out, "markup shown as text"
    assert "\x1b" not in out
    code, out, err = await jetmesh_cli(target, "dlq", "list", "--agent", "kb")
    assert code == 0, err
    assert "[/dim]" in out


# -- 9. redrive verifies the dead letter ----------------------------------------------------


async def test_a_planted_dead_letter_is_not_redriven(
    target: TargetMesh, kb: CompromisedRole
) -> None:
    """kb files, on its own dead-letter subject, a task it got from billing dressed as a
    billing task "safe to redrive"; ``jetmesh dlq redrive`` verifies it, refuses it, sends
    nothing. A real dead letter of billing's is redriven on the same enforced servers."""
    assert target.admin is not None
    workflow = new_id()
    assert (await ask(target, Refund(order="p", amount=1.0), workflow)).status == "refunded"
    planted = kb.mesh.envelope(
        kind="task",
        workflow=workflow,
        to="billing",
        body=Refund(order="p", amount=9999.0),
        caller=target.token(),
        step="billing",
        type_=type_name(Refund),
    )
    data, headers = kb.mesh.seal(planted)
    await kb.mesh.publisher.publish(
        kb.mesh.subjects.dlq("kb"),
        data,
        {
            **headers,
            "Mesh-Dlq-Agent": "billing",
            "Mesh-Dlq-Reason": "max-deliveries",
            "Mesh-Dlq-Detail": "safe to redrive",
            "Mesh-Dlq-Subject": target.admin.subjects.task("billing"),
            "Nats-Msg-Id": new_id(),
        },
    )
    (letter,) = [
        d
        for d in await target.dead_letters("kb")
        if (env := d.envelope()) is not None and env.id == planted.id
    ]
    before = await target.admin.js.consumer_info(target.settings.tasks_stream, "billing")
    code, out, err = await jetmesh_cli(target, "dlq", "redrive", str(letter.seq))
    assert code != 0
    assert "RedriveRefused" in err + out or "refused" in (err + out).lower()
    after = await target.admin.js.consumer_info(target.settings.tasks_stream, "billing")
    assert after.delivered.stream_seq == before.delivered.stream_seq, "nothing was sent"
    assert await target.paid(workflow) == 1.0
    await serves_on(target)


# -- 7. bounded storage ---------------------------------------------------------------------


async def test_a_role_cannot_grow_storage_without_bound(
    target: TargetMesh, kb: CompromisedRole
) -> None:
    """An event past the stream's message size is refused by the stream; a ``SETRANGE``
    that would make one of kb's own keys 200 MiB is refused by Redis (``proto-max-bulk-len``),
    and Redis's memory does not move."""
    assert target.admin is not None
    s = target.settings
    oversized = b"x" * (s.message_limit_bytes + 1)
    with pytest.raises(PublishFailed):
        await kb.mesh.publisher.publish(
            kb.mesh.subjects.event(new_id(), "note"), oversized, {"Nats-Msg-Id": new_id()}
        )
    info = await target.admin.js.stream_info(s.events_stream)
    assert info.config.max_bytes == s.events_max_bytes
    assert info.config.max_msgs == s.events_max_msgs

    used = (await target.admin.redis.info("memory"))["used_memory"]
    own = keys.memory(s.subject_prefix, new_id(), "kb", "blob")
    with pytest.raises(ResponseError, match="maximum allowed size"):
        await kb.redis.setrange(own, 200 * 1024 * 1024, "x")
    assert (await target.admin.redis.info("memory"))["used_memory"] < used + 1024 * 1024
    config = await target.admin.redis.config_get("maxmemory*")
    assert int(config["maxmemory"]) == s.redis_max_memory_bytes
    assert config["maxmemory-policy"] == "noeviction"
    await serves_on(target)


# -- 10. loose ends: one reading of every message ------------------------------------------


async def test_a_reply_naming_a_field_twice_is_refused_before_it_is_read(
    target: TargetMesh, kb: CompromisedRole
) -> None:
    """Parsers disagree on which of two ``body`` members wins; billing refuses the reply as
    ``malformed`` under kb's valid signature, before any binding check reads it."""
    workflow = new_id()
    asked = ask(target, Refund(order="d", amount=2.0, critic_pause_s=1.5), workflow)
    log = await seen_by(kb, workflow, lambda got: bool(events_of(got, "started", "critic")))
    (call,) = [e for e in events_of(log, "call", "billing") if e.target == "critic"]
    reply = kb.mesh.envelope(
        kind="reply",
        workflow=workflow,
        to="billing",
        body=Score(0.4),
        caller=log[0].caller,
        parent=new_id(),
        step=call.callee_step,
        type_=type_name(Score),
    )
    data = encode_envelope(reply)
    twice = data[:-1] + b',"body":{"score":0.99}}'
    headers = {MSG_ID_HEADER: reply.id, **kb.mesh.signer.headers(twice)}
    subject = kb.mesh.subjects.reply("billing", call.instance)
    await kb.mesh.nc.publish(subject, twice, headers=headers)
    await kb.mesh.nc.flush()

    assert (await asked).score == 0.4
    letters = [d for d in await target.dead_letters("billing") if d.data == twice]
    assert [d.reason for d in letters] == ["malformed"]
    # an envelope that cannot be read does not name its workflow: audited apart
    unread = await target.events(UNVERIFIED_WORKFLOW)
    assert len([e for e in rejected(unread, "malformed") if subject in e.event.detail]) == 1
    await serves_on(target)
