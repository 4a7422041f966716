"""Step keys: the documented character set (1 to 1024 of ``A-Z a-z 0-9 _ - . /``) accepts
every step the mesh makes and refuses anything that could change the meaning of a Redis key
or a pattern."""

from __future__ import annotations

import time
from typing import Any

import msgspec
import pytest

from jetmesh import Malformed
from jetmesh.addresses import Subjects
from jetmesh.envelope import MAX_STEP_CHARS, STEP_RE, Envelope
from jetmesh.identity.tokens import Caller
from jetmesh.identity.verifier import Verifier
from jetmesh.memory.keys import check_step
from jetmesh.runtime.context_base import ContextBase
from jetmesh.runtime.limits import depth

TASK = "mesh.agent.billing.task"


class _Steps(ContextBase):
    """A context that only makes step keys (the runtime's own ``next_step``)."""

    def _memory_space(self) -> Any:
        raise NotImplementedError

    async def _call(self, *args: Any) -> Any:
        raise NotImplementedError

    async def _complete(self, *args: Any) -> Any:
        raise NotImplementedError

    async def once(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError

    async def wait_for(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError

    async def emit_event(self, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError

    async def stream(self, *args: Any) -> bool:
        raise NotImplementedError


def steps_made_by_the_mesh(max_depth: int, role: str) -> list[str]:
    """``<role>`` at ingress, then the step of a call made by each task's handler (after
    999 calls before it), down to ``max_depth``, through the roles the runtime itself
    uses for model calls, approvals and tools."""
    step, made = role, [role]
    caller = Caller("alice", "t", frozenset(), 2e9, "j", "cli")
    for n in range(max_depth):
        task = Envelope(
            id="01J", kind="task", workflow="01J", sender="x", to=role, created=0.0, step=step
        )
        ctx = _Steps(task, caller, agent=role, attempt=1, concurrency=1)
        for _ in range(999):
            ctx.next_step(role)
        step = ctx.next_step(("model", "approval", "toolgate", role)[n % 4])
        made.append(step)
    return made


def test_every_step_the_mesh_makes_is_accepted() -> None:
    longest_role = "r" * 64  # an agent name is at most 64 characters
    made = steps_made_by_the_mesh(8, longest_role) + steps_made_by_the_mesh(8, "triage")
    assert made[-1] == "triage/model.1000/approval.1000/toolgate.1000/triage.1000" + (
        "/model.1000/approval.1000/toolgate.1000/triage.1000"
    )
    for step in made:
        assert check_step(step) == step
    assert depth(made[-1]) == 8


@pytest.mark.parametrize(
    "step",
    [
        "triage:kb:x",  # ':' separates Redis keys
        "triage\n",
        "tri\nage",
        "triage\r",
        "triage\x00",
        "triage\t",
        "triage *",
        "*",
        "triage/kb.?",
        "triage/[kb]",
        "triage>",
        "tri age",
        "tri\u00e9ge",  # non-ASCII
        "\u0442riage",  # a Cyrillic look-alike
        "triage\u200b",  # zero-width space
        "x" * (MAX_STEP_CHARS + 1),
    ],
    ids=repr,
)
def test_a_step_outside_the_set_is_malformed(step: str) -> None:
    with pytest.raises(Malformed) as refused:
        check_step(step)
    assert refused.value.reason == "malformed"
    detail = str(refused.value)
    assert detail.isascii()
    assert "\n" not in detail
    assert len(detail) < 200


def test_the_longest_step_is_accepted() -> None:
    assert check_step("x" * MAX_STEP_CHARS) == "x" * MAX_STEP_CHARS


def test_a_task_may_have_no_step() -> None:
    """The runtime then keys it by its id (``id:<id>``), a subject token (verifier)."""
    assert check_step("") == ""


def test_the_set_is_ascii_only_whatever_the_regex_flags() -> None:
    for code in range(0x80, 0x3000):
        assert STEP_RE.match(f"a{chr(code)}") is None


@pytest.mark.parametrize("bad_id", ["x:kb:y", "01J\n", "01J*", "", "i" * 65, "\u00e9"], ids=repr)
async def test_an_envelope_id_that_is_not_a_subject_token_is_malformed(
    pki: Any, gateway: Any, token: str, envelope: Any, chain: Any, sealed: Any, bad_id: str
) -> None:
    """A task without a step is keyed by its id, so the id is held to a subject token."""
    verifier = Verifier(
        pki.trust(), Subjects("mesh"), max_payload_bytes=1 << 20, max_age_s=110, clock_skew_s=5
    )
    good = chain(envelope(sender="gateway", to="billing", caller=token), gateway)
    data, headers = sealed(gateway, good)
    assert (await verifier.verify(TASK, data, headers, stored_at=time.time())).envelope == good
    bad = msgspec.structs.replace(good, id=bad_id)
    data, headers = sealed(gateway, bad)
    with pytest.raises(Malformed, match="envelope id"):
        await verifier.verify(TASK, data, headers, stored_at=time.time())
