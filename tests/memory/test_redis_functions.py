"""Roles run no scripts of their own: the admin step loads the mesh's function library and
roles may only call it (``FCALL``), on servers started as `jetmesh up` starts them.

A script of a role's own could busy-loop and stall Redis for every role; ``FUNCTION LOAD``
or ``FLUSH`` could replace or remove the functions every role's ledger runs on.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis
from redis.exceptions import NoPermissionError

from jetmesh import NotProvisioned
from jetmesh.envelope import new_id
from jetmesh.logins import admin_login, role_login
from jetmesh.memory import functions
from jetmesh.memory.connection import connect
from jetmesh.provision import provision
from jetmesh.runtime.ledger import StepLedger
from tests.harness.agents import Plan, Report, counter, planner
from tests.harness.secured import SecuredMesh

pytestmark = pytest.mark.integration

BUSY_LOOP = "local i = 0 while true do i = i + 1 end"


@pytest.fixture
async def admin(secured: SecuredMesh) -> AsyncIterator[Redis]:
    client = connect(
        secured.settings.redis_url, retry_s=0, **admin_login(secured.settings).redis_options()
    )
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
async def kb(secured: SecuredMesh) -> AsyncIterator[Redis]:
    """Redis as the ``counter`` role's user: the compromised role."""
    client = connect(
        secured.settings.redis_url,
        retry_s=0,
        **role_login(secured.settings, "counter").redis_options(),
    )
    try:
        yield client
    finally:
        await client.aclose()


async def test_the_admin_step_loaded_the_library_and_roles_may_only_call_it(
    kb: Redis, admin: Redis
) -> None:
    assert await functions.loaded_version(admin) == functions.VERSION
    assert await functions.loaded_version(kb) == functions.VERSION  # FCALL_RO as a role
    refused = [
        ("EVAL", BUSY_LOOP, 0),
        ("EVAL_RO", "return 1", 0),
        ("EVALSHA", "e0e1f9fabfc9d4800c877a703b823ac0578ff8db", 0),
        ("SCRIPT", "LOAD", BUSY_LOOP),
        ("SCRIPT", "EXISTS", "e0e1f9fabfc9d4800c877a703b823ac0578ff8db"),
        ("SCRIPT", "FLUSH"),
        ("SCRIPT", "KILL"),
        ("FUNCTION", "LOAD", "REPLACE", functions.SOURCE),
        ("FUNCTION", "FLUSH"),
        ("FUNCTION", "DELETE", functions.LIBRARY),
        ("FUNCTION", "RESTORE", b"x"),
        ("FUNCTION", "LIST"),
        ("FUNCTION", "DUMP"),
    ]
    for command in refused:
        with pytest.raises(NoPermissionError):
            await kb.execute_command(*command)
    assert await functions.loaded_version(admin) == functions.VERSION, "still the admin's"
    started = asyncio.get_running_loop().time()
    assert await admin.ping()
    assert asyncio.get_running_loop().time() - started < 1.0, "nothing busy in Redis"


async def test_a_role_finds_the_library_missing_and_the_mesh_recovers_after_the_admin_step(
    secured: SecuredMesh, admin: Redis, kb: Redis
) -> None:
    """As after a restart of a Redis without persistence: a role cannot load the library,
    gets NotProvisioned naming `jetmesh up`, its tasks go back; the admin step loads it
    again and the same task completes."""
    await admin.execute_command("FUNCTION", "FLUSH")
    ledger = StepLedger(kb, secured.settings.subject_prefix, ttl_s=60)
    with pytest.raises(NotProvisioned, match=r"function library 'jetmesh'.*jetmesh up"):
        await ledger.claim(new_id(), "counter", "s", "r1", 5000)

    await secured.start_replicas(counter, planner)
    cli = await secured.ingress()
    asked = asyncio.create_task(
        cli.request(
            "planner", Plan(pause_s=0), token=cli.mint_token("alice"), returns=Report, timeout=30
        )
    )
    await asyncio.sleep(1.0)
    assert not asked.done(), "the task waits: sent back while the library is missing"
    assert await functions.loaded_version(admin) is None, "no role loaded it"

    done = await provision(secured.settings, secured.policy)
    assert done.redis is not None
    assert done.redis.library == "loaded"
    report = await asyncio.wait_for(asked, 30)
    assert report.parts == [1, 2]


async def test_an_admin_connection_loads_a_missing_library_on_first_use(
    admin: Redis, secured: SecuredMesh
) -> None:
    """Open development servers and the admin's own tools: the ``default`` user loads it."""
    await admin.execute_command("FUNCTION", "FLUSH")
    ledger = StepLedger(admin, secured.settings.subject_prefix, ttl_s=60)
    assert await ledger.claim(new_id(), "counter", "s", "r1", 5000) == (True, None, True)
    assert await functions.loaded_version(admin) == functions.VERSION


async def test_a_newer_library_replaces_an_older_one_and_never_the_reverse(admin: Redis) -> None:
    older = functions.SOURCE.replace(f"return {functions.VERSION}\n", "return 0\n", 1)
    await admin.execute_command("FUNCTION", "LOAD", "REPLACE", older)
    assert await functions.loaded_version(admin) == 0
    assert await functions.load_library(admin) == "loaded"
    assert await functions.loaded_version(admin) == functions.VERSION
    newer = functions.SOURCE.replace(
        f"return {functions.VERSION}\n", f"return {functions.VERSION + 1}\n", 1
    )
    await admin.execute_command("FUNCTION", "LOAD", "REPLACE", newer)
    assert await functions.load_library(admin) == "kept"
    assert await functions.loaded_version(admin) == functions.VERSION + 1
