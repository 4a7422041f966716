"""Every Redis key jetmesh writes, in one place (also listed in docs/memory.md).

    <prefix>:wf:<workflow>:<agent>:<key>       working memory value (hash: v, d, w)
    <prefix>:conv:<workflow>:<agent>:<name>    conversation (list of JSON messages)
    <prefix>:journal:<agent>:<workflow>:<step> reply of a call, as the caller received it
    <prefix>:journal:<agent>:<workflow>:<step>#begun  the step was claimed once (its own
                                               journal may hold entries)
    <prefix>:result:<workflow>:<agent>:<step>  result of a handled task, for duplicates
    <prefix>:result:<workflow>:<agent>:<step>#events  the events of its run not stored yet
                                               when it was recorded (for max_message_age_s)
    <prefix>:lease:<workflow>:<agent>:<step>   the replica running that task now
    <prefix>:once:<agent>:<workflow>:<step>:<key>   a side effect's claim and result
    <prefix>:wait:<agent>:<workflow>:<step>:<name>  when a step began waiting for a signal
    <prefix>:replay:<run>                      scratch prefix of a re-run's memory
    <prefix>:last:<agent>:<stream seq>         a task's bytes kept on its last delivery
    <prefix>:spend:<agent>:<scope>:<window>:<name>  model tokens and cost the role's calls
                                               spent for a caller or tenant in a budget's
                                               window (hash: tokens, cost_usd)

``<prefix>`` is the subject prefix (``mesh``). Workflow ids and agent names are subject
tokens (no ``:``); memory key names are checked the same way; steps may contain ``/`` and
``.`` but never ``:`` (:func:`check_step`: a receiver refuses such a task), so a role's
Redis ACL patterns (``mesh:result:*:<agent>:*``; a glob's ``*`` cannot stop at a ``:``)
match no other role's keys that jetmesh reads.

What a role records about its own calls and waits (journal, once, wait) drives what it
does on a re-run (``ctx.call`` takes a journaled reply without calling), so only that role
may write it: the role's name comes first (ACL pattern ``mesh:journal:<agent>:*``), so no
step name, whatever it holds, makes another role's pattern match it.
"""

from __future__ import annotations

from .._exceptions import Malformed
from ..addresses import check_token
from ..envelope import MAX_STEP_CHARS, is_step
from ..ids import new_id


def workflow_memory(prefix: str, workflow: str) -> str:
    """Where every role's working memory of ``workflow`` starts (``<agent>:<key>`` follows)."""
    return f"{prefix}:wf:{workflow}:"


def workflow_conversations(prefix: str, workflow: str) -> str:
    """Where every role's conversations of ``workflow`` start (``<agent>:<name>`` follows)."""
    return f"{prefix}:conv:{workflow}:"


def memory(prefix: str, workflow: str, agent: str, key: str) -> str:
    return f"{workflow_memory(prefix, workflow)}{agent}:{check_token(key, 'memory key')}"


def conversation(prefix: str, workflow: str, agent: str, name: str) -> str:
    name = check_token(name, "conversation name")
    return f"{workflow_conversations(prefix, workflow)}{agent}:{name}"


def journal(prefix: str, workflow: str, agent: str, step: str) -> str:
    """The reply ``agent`` (the caller) got for its call ``step``: the calling role's own
    key, role first (see the module's docstring)."""
    return f"{prefix}:journal:{agent}:{workflow}:{step}"


def begun(prefix: str, workflow: str, agent: str, step: str) -> str:
    """Set by ``agent``'s first claim of its ``step``: until then nothing of the step is
    journaled, and its calls need not be looked up. In the role's own journal namespace
    (its ACL pattern already); ``#`` is outside the step character set, so no call's
    journal key is equal to it."""
    return f"{journal(prefix, workflow, agent, step)}#begun"


def result(prefix: str, workflow: str, agent: str, step: str) -> str:
    return f"{prefix}:result:{workflow}:{agent}:{step}"


def result_events(prefix: str, workflow: str, agent: str, step: str) -> str:
    """The events of the run that wrote ``agent``'s result for ``step`` that were not
    stored yet when it was recorded, sent again with an answer from the record. Beside the
    result, in the role's result namespace (its ACL pattern already); ``#`` is outside the
    step character set, so no step's result key is equal to it."""
    return f"{result(prefix, workflow, agent, step)}#events"


def lease(prefix: str, workflow: str, agent: str, step: str) -> str:
    return f"{prefix}:lease:{workflow}:{agent}:{step}"


def once(prefix: str, workflow: str, agent: str, step: str, key: str) -> str:
    """The claim and result of ``agent``'s side effect ``key`` in ``step``."""
    return f"{once_prefix(prefix, workflow, agent, step)}{check_token(key, 'effect key')}"


def once_prefix(prefix: str, workflow: str, agent: str, step: str) -> str:
    """What the keys of ``agent``'s side effects in ``step`` start with."""
    return f"{prefix}:once:{agent}:{workflow}:{step}:"


def wait(prefix: str, workflow: str, agent: str, step: str, name: str) -> str:
    """When ``agent``'s step first began waiting for signal ``name`` (its timeout counts
    from it)."""
    return f"{prefix}:wait:{agent}:{workflow}:{step}:{check_token(name, 'signal name')}"


def last_delivery(prefix: str, agent: str, stream_seq: int) -> str:
    """A task of ``agent`` kept by the replica that took its last delivery, for the
    max-deliveries advisory (:mod:`jetmesh.runtime.last_delivery`); the role's own key."""
    return f"{prefix}:last:{agent}:{stream_seq}"


def spend(prefix: str, agent: str, scope: str, window: str, name: str) -> str:
    """What ``agent``'s model calls spent for the caller or tenant ``name`` (``scope``) in
    a budget's ``window`` (``<seconds>s<number>``): the role's own key, role first, which
    every role may read and only it may write (:mod:`jetmesh.runtime.budgets`). ``name``
    comes last: a subject may hold ``:``."""
    return f"{prefix}:spend:{agent}:{scope}:{window}:{name}"


def ledger_step(step: str, task_id: str) -> str:
    """The step key of a task's ledger entries (result, lease): its ``step``, or
    ``#<task id>`` for a task sent without one. ``#`` is outside the step character set,
    so no sent step is equal to it; it holds no ``:``, so no role's key pattern can match
    across it (``id:<task id>`` made a role named ``id`` match every role's entries)."""
    return step or f"#{task_id}"


def replay_scratch(prefix: str) -> str:
    """A new key prefix for the working memory of one re-run (``jetmesh replay --rerun``):
    its keys are ``<prefix>:replay:<run>:wf:...``, apart from every workflow's own."""
    return f"{prefix}:replay:{new_id().lower()}"


def check_step(step: str) -> str:
    """``step`` if it is a task's step key: 1 to 1024 of the ASCII characters
    ``A-Z a-z 0-9 _ - . /`` (:data:`jetmesh.envelope.STEP_RE`), as the mesh makes them
    (``<role>``, then ``<step>/<role>.<n>`` per call), or empty (a task without a step,
    keyed by its id, which the verifier has checked is a subject token).

    Raises:
        Malformed: anything else: too long, or with ``:`` (one role's key patterns would
            match keys another role reads: ``mesh:result:*:kb:*`` matches billing's result
            of a step ``x:kb:y``), a glob or subject wildcard, a space, a control or
            non-ASCII character.
    """
    if step and not is_step(step):
        raise Malformed(
            f"step {step[:64]!a}{'...' if len(step) > 64 else ''} is not 1-{MAX_STEP_CHARS} "
            "of A-Z a-z 0-9 _ - . / (steps are parts of Redis keys)"
        )
    return step
