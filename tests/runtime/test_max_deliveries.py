"""A task whose replicas keep dying before they ack is dead-lettered, not left hanging,
even when no replica of its role is running as it runs out of deliveries.

The replica of a task's last delivery keeps the task in its role's Redis keys; the one
that handles the max-deliveries advisory dead-letters it from there (a role may not read
the tasks stream by sequence). When nothing was kept, the dead letter names the task's
stream sequence and the admin reads the task from the stream."""

from __future__ import annotations

import asyncio
import sys

import msgspec
import nats.errors
import pytest
from nats.js import JetStreamContext
from redis.asyncio import Redis

from jetmesh import Agent, Envelope, KeyStore, MeshClient, MeshSettings, Replica, Subjects
from jetmesh.bus.connection import connect
from jetmesh.bus.streams import advisories_stream, ensure_consumer
from jetmesh.dead_letters import (
    MSG_ID_HEADER,
    REASON_HEADER,
    TASK_SEQ_HEADER,
    UNVERIFIED_WORKFLOW,
    get_dead_letter,
    list_dead_letters,
    with_task,
)
from jetmesh.event_log import LoggedEvent, read_events
from jetmesh.ingress import ingress_task
from jetmesh.memory import keys as redis_keys
from jetmesh.processes import settings_env

pytestmark = pytest.mark.integration


class Job(msgspec.Struct, frozen=True):
    n: int


agent = Agent("crashy")
entered = asyncio.Event()


@agent.handler
async def handle(job: Job) -> Job:
    entered.set()
    await asyncio.Event().wait()  # stalls until its replica dies
    return job


async def _jetmesh(s: MeshSettings, *args: str) -> tuple[int, str, str]:
    """Run ``jetmesh ARGS`` as a process on ``s``: (exit code, out, err)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "jetmesh.cli",
        *args,
        env=settings_env(s),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def _settings(settings: MeshSettings) -> MeshSettings:
    return settings.model_copy(update={"ack_wait_s": 1.5, "max_deliver": 2})


async def _start(s: MeshSettings) -> tuple[KeyStore, MeshClient]:
    keys = KeyStore(s.resolved_keys_dir)
    keys.init_root()
    subjects = Subjects(s.subject_prefix)
    keys.issue("crashy", subjects=subjects, ttl_s=600)
    cli = keys.issue("cli", subjects=subjects, ttl_s=600, ingress=True)
    mesh = MeshClient(s, cli, roots=keys.roots())
    await mesh.start()
    await ensure_consumer(mesh.js, s, "crashy")
    return keys, mesh


async def _send(mesh: MeshClient, workflow: str) -> Envelope:
    token = mesh.mint_token("alice")
    task = await ingress_task(mesh, "crashy", Job(1), token=token, workflow=workflow)
    await mesh.send_task(task)
    return task


async def _announce(js: JetStreamContext, s: MeshSettings) -> None:
    """Ask for the task after AckWait, as a replica coming back would: the server gives up
    on it and announces it (then this one dies too); the advisories stream keeps it."""
    nc = await connect(s.nats_url, "doomed")
    try:
        sub = await nc.jetstream().pull_subscribe_bind("crashy", stream=s.tasks_stream)
        with pytest.raises(nats.errors.TimeoutError):
            await sub.fetch(1, timeout=s.ack_wait_s * 2)
    finally:
        await nc.close()
    for _ in range(100):
        if (await js.stream_info(advisories_stream(s))).state.messages == 1:
            break
        await asyncio.sleep(0.1)
    assert (await js.stream_info(advisories_stream(s))).state.messages == 1


async def _wait_events(
    mesh: MeshClient, workflow: str, kind: str, count: int = 1
) -> list[LoggedEvent]:
    for _ in range(100):
        found = [e for e in await read_events(mesh, workflow) if e.event.kind == kind]
        if len(found) >= count:
            return found
        await asyncio.sleep(0.1)
    return found


async def test_task_out_of_deliveries_by_crash_is_dead_lettered(settings: MeshSettings) -> None:
    s = _settings(settings)
    keys, mesh = await _start(s)
    redis = Redis.from_url(s.redis_url)
    doomed = Replica(agent, s, keys.identity("crashy"), roots=keys.roots())
    try:
        task = await _send(mesh, "01JD0000000000000000000000")
        # A "replica" takes the first delivery and dies (never acks).
        nc = await connect(s.nats_url, "doomed")
        try:
            sub = await nc.jetstream().pull_subscribe_bind("crashy", stream=s.tasks_stream)
            first = await sub.fetch(1, timeout=5)
            assert first[0].metadata.num_delivered == 1
        finally:
            await nc.close()
        # A real replica takes the last delivery, keeps the task, stalls and dies.
        entered.clear()
        await doomed.start()
        await asyncio.wait_for(entered.wait(), 10)
        seq = first[0].metadata.sequence.stream
        key = redis_keys.last_delivery(s.subject_prefix, "crashy", seq)
        assert await redis.exists(key) == 1, "the last delivery was kept"
        await doomed.mesh.nc.close()  # dies: no ack, no nak, no in-progress any more
        await _announce(mesh.js, s)

        replica = Replica(agent, s, keys.identity("crashy"), roots=keys.roots())
        await replica.start()
        try:
            dlq = await mesh.js.subscribe(Subjects(s.subject_prefix).dlq("crashy"))
            dead = await dlq.next_msg(timeout=10)
            assert dead.headers is not None
            assert dead.headers[REASON_HEADER] == "max-deliveries"
            assert dead.headers[TASK_SEQ_HEADER] == str(seq)
            assert dead.headers[MSG_ID_HEADER] == task.id
            assert dead.data == first[0].data  # the original bytes, signature headers kept
            assert replica.handled == 0
            failed = await _wait_events(mesh, task.workflow, "failed")
            assert len(failed) == 1
            assert failed[0].event.reason == "max-deliveries"
            assert failed[0].verified
            assert await redis.exists(key) == 0, "the kept task is deleted once dead-lettered"
        finally:
            await replica.drain()
    finally:
        await doomed.drain(timeout=0.5)
        await redis.aclose()
        await mesh.close()


async def test_a_task_not_kept_is_dead_lettered_by_its_sequence(settings: MeshSettings) -> None:
    """Every delivery died before a replica could keep the task (here: a bare consumer):
    the dead letter names the task's stream sequence, a failed event says so, and the
    admin reads the task itself from the tasks stream."""
    s = _settings(settings)
    keys, mesh = await _start(s)
    try:
        task = await _send(mesh, "01JD0000000000000000000001")
        nc = await connect(s.nats_url, "doomed")
        try:
            sub = await nc.jetstream().pull_subscribe_bind("crashy", stream=s.tasks_stream)
            first = await sub.fetch(1, timeout=5)
            second = await sub.fetch(1, timeout=5)
            assert second[0].metadata.num_delivered == 2
        finally:
            await nc.close()
        await _announce(mesh.js, s)
        replica = Replica(agent, s, keys.identity("crashy"), roots=keys.roots())
        await replica.start()
        try:
            subject = Subjects(s.subject_prefix).dlq("crashy")
            for _ in range(100):
                letters = await list_dead_letters(mesh.js, s.dlq_stream, subject)
                if letters:
                    break
                await asyncio.sleep(0.1)
            (letter,) = letters
            seq = first[0].metadata.sequence.stream
            assert (letter.reason, letter.task_seq, letter.data) == ("max-deliveries", seq, b"")
            assert f"sequence {seq}" in letter.detail
            failed = await _wait_events(mesh, UNVERIFIED_WORKFLOW, "failed")
            assert [e.event.reason for e in failed] == ["max-deliveries"]
            assert f"sequence {seq}" in failed[0].event.detail
            # It names the task by its sequence, the one thing known of it here.
            assert (failed[0].event.seq, failed[0].event.message) == (seq, "")
            # The admin (here: open servers) reads the task by its sequence.
            full = await with_task(
                mesh.js, s.tasks_stream, await get_dead_letter(mesh.js, s.dlq_stream, letter.seq)
            )
            assert full.data == first[0].data
            assert full.headers[MSG_ID_HEADER] == task.id
            code, out, err = await _jetmesh(s, "dlq", "show", str(letter.seq))
            assert code == 0, err
            assert f"task seq  {seq} (read from the tasks stream)" in out
            assert task.workflow in out
        finally:
            await replica.drain()
    finally:
        await mesh.close()


async def test_an_advisory_whose_dead_letter_cannot_be_stored_is_given_up_on(
    settings: MeshSettings,
) -> None:
    """The dead-letter stream is gone: the advisory is tried ``max_deliver`` times with
    backoff, then given up on with a ``dead-letter-failed`` event, not handled for ever."""
    s = _settings(settings)
    keys, mesh = await _start(s)
    try:
        await _send(mesh, "01JD0000000000000000000002")
        nc = await connect(s.nats_url, "doomed")
        try:
            sub = await nc.jetstream().pull_subscribe_bind("crashy", stream=s.tasks_stream)
            first = await sub.fetch(1, timeout=5)
            await sub.fetch(1, timeout=5)
        finally:
            await nc.close()
        replica = Replica(agent, s, keys.identity("crashy"), roots=keys.roots())
        await replica.start()  # (on open servers it declares the streams: delete after)
        await mesh.js.delete_stream(s.dlq_stream)
        try:  # its next pull, after AckWait, makes the server give up on the task
            gave_up = await _wait_events(mesh, UNVERIFIED_WORKFLOW, "dead-letter-failed")
            seq = first[0].metadata.sequence.stream
            assert [e.event.reason for e in gave_up] == ["max-deliveries"]
            assert f"sequence {seq}" in gave_up[0].event.detail
            info = await mesh.js.consumer_info(advisories_stream(s), "crashy")
            for _ in range(50):
                if info.num_ack_pending == 0:
                    break
                await asyncio.sleep(0.1)
                info = await mesh.js.consumer_info(advisories_stream(s), "crashy")
            assert (info.num_pending, info.num_ack_pending) == (0, 0)
            assert info.delivered.consumer_seq == s.max_deliver, "tried max_deliver times"
        finally:
            await replica.drain()
    finally:
        await mesh.close()
