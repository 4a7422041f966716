"""Budget counters as a compromised role: with exactly ``counter``'s secrets on servers that
enforce the policy, it can read every role's spending (the sum a budget check needs) and
write its own, but it cannot lower, reset or erase what another role spent: those keys
are the other role's own (Redis ACL ``~<prefix>:spend:<role>:*``, read-only
``%R~<prefix>:spend:*`` for the rest)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from redis.exceptions import NoPermissionError

from jetmesh import Agent
from jetmesh.memory import keys
from jetmesh.policy.derive import role_permissions
from jetmesh.policy.servers import redis_rules
from tests.harness.secured import SecuredMesh
from tests.security.compromised import CompromisedRole

pytestmark = pytest.mark.integration

WINDOW = "3600s500000"


@pytest.fixture
async def counter(secured: SecuredMesh, tmp_path: Path) -> AsyncIterator[CompromisedRole]:
    attacker = CompromisedRole.steal(
        "counter", secured.keys.directory, tmp_path / "stolen", secured.settings
    )
    await attacker.start()
    try:
        yield attacker
    finally:
        await attacker.aclose()


@pytest.fixture
async def planners_spending(secured: SecuredMesh) -> str:
    """``planner``'s counter for the tenant acme, written as planner."""
    key = keys.spend(secured.settings.subject_prefix, "planner", "tenant", WINDOW, "acme")
    planner = await secured.start_replicas(_idle("planner"))
    await planner[0].mesh.redis.hset(key, mapping={"tokens": 900, "cost_usd": "0.9"})
    return key


def _idle(name: str) -> Agent:
    agent = Agent(name)

    @agent.handler
    async def idle(x: int) -> int:
        return x

    return agent


async def test_a_role_reads_another_roles_spending(
    counter: CompromisedRole, planners_spending: str
) -> None:
    assert await counter.redis.hget(planners_spending, "tokens") == b"900"


@pytest.mark.parametrize(
    "command",
    [
        ("HINCRBY", "tokens", "-900"),
        ("HSET", "tokens", "0"),
        ("HINCRBYFLOAT", "cost_usd", "-0.9"),
        ("HDEL", "tokens"),
        ("DEL",),
        ("EXPIRE", "1"),
        ("UNLINK",),
    ],
)
async def test_a_role_cannot_lower_or_erase_another_roles_spending(
    secured: SecuredMesh,
    counter: CompromisedRole,
    planners_spending: str,
    command: tuple[str, ...],
) -> None:
    verb, *args = command
    with pytest.raises(NoPermissionError):
        await counter.redis.execute_command(verb, planners_spending, *args)
    planner = secured.replicas[0].mesh.redis
    assert await planner.hgetall(planners_spending) == {b"tokens": b"900", b"cost_usd": b"0.9"}
    assert await planner.ttl(planners_spending) == -1


async def test_a_role_writes_its_own_spending(
    counter: CompromisedRole, secured: SecuredMesh
) -> None:
    """What it can do: count (or inflate) its own, which a check adds to the others'."""
    own = keys.spend(secured.settings.subject_prefix, "counter", "tenant", WINDOW, "acme")
    assert await counter.redis.hincrby(own, "tokens", 5) == 5


def test_the_acl_gives_a_role_its_own_counters_and_a_read_of_the_others(
    secured: SecuredMesh,
) -> None:
    p = secured.settings.subject_prefix
    perms = role_permissions(secured.policy, "counter", secured.settings)
    rules = redis_rules(perms)
    assert f"~{p}:spend:counter:*" in rules
    assert f"%R~{p}:spend:*" in rules
    assert not any(r.startswith("~") and ":spend:" in r and ":counter:" not in r for r in rules)
    assert role_permissions(secured.policy, "cli", secured.settings).redis_reads == ()
