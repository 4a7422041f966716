"""From a role's declaration to the NATS subjects and Redis keys it needs, and no more.

For an agent role ``R`` of a mesh with prefix ``p`` (tasks stream ``T``, registry ``B``):

publish
    ``p.agent.<callee>.task`` and ``$SRV.INFO.<callee>`` (``ctx.call``'s pre-flight: is it
    served, what its handlers take; answered on the role's inbox) for each role ``R`` may
    call; ``p.agent.<caller>.reply.*`` for each role that may call ``R`` (its replies);
    ``p.event.>`` (events of the workflows it takes part in); ``p.dlq.R`` (its own dead
    letters); and the JetStream API calls of its own consumers only:
    ``$JS.API.CONSUMER.MSG.NEXT.<stream>.R``, ``$JS.API.CONSUMER.INFO.<stream>.R`` and acks
    on ``$JS.ACK.<stream>.R.>`` for the tasks stream and the advisories stream (no read of
    the tasks stream by sequence: a task that runs out of deliveries is dead-lettered from
    what its last delivery kept in the role's own Redis keys ``p:last:R:*``, see
    ``runtime/last_delivery.py``); reads of the registry (``$JS.API.STREAM.INFO.KV_B``,
    ``$JS.API.DIRECT.GET.KV_B[.>]``, ``$JS.API.STREAM.MSG.GET.KV_B``); direct gets of the
    events stream ``E`` (``$JS.API.DIRECT.GET.E``: the event tree and signal waits read the
    log with no consumer); the policy's extra ``publish`` subjects.
subscribe
    ``p.agent.R.reply.*`` (replies to its calls) and ``_INBOX.R.>`` (the role's own inbox
    prefix: JetStream acks, pull deliveries and API responses); extra ``consume`` subjects;
    the NATS service API's requests that reach its replicas (``$SRV.<VERB>``,
    ``$SRV.<VERB>.R`` and ``$SRV.<VERB>.R.*`` for PING, INFO and STATS: live discovery,
    ``runtime/discovery.py``), answered through ``allow_responses`` (one reply to a
    request it received, nothing else: no publish to another role's inbox).
    Tasks are not read by subscription: they come through the role's consumer, which an
    admin creates with the filter subject ``p.agent.R.task``.
Redis keys (``memory/keys.py``)
    its own namespaces only, with the role's name in the key: ``p:wf:*:R:*`` (working
    memory), ``p:conv:*:R:*`` (conversations), ``p:result:*:R:*`` and ``p:lease:*:R:*``
    (its step results and leases); ``p:journal:R:*`` (replies its calls received),
    ``p:once:R:*`` (its side-effect claims), ``p:wait:R:*`` (when its waits began) and
    ``p:spend:R:*`` (what its model calls spent against budgets), the role first so that
    no step name lets the pattern reach another role's; then the policy's extra
    ``redis_keys`` (an outside system the role reaches through Redis). No key is shared
    between roles: what a role acts on is written by that role only. One pattern is read
    only: ``p:spend:*``, every role's spending, which a budget check adds up
    (``runtime/budgets.py``).

An ingress has no consumer: it publishes tasks to the roles it calls and events, and
subscribes to its replies and inbox. The ``cli`` ingress also publishes the service API's
requests ``$SRV.PING``, ``$SRV.INFO`` and ``$SRV.STATS`` (``jetmesh agents``).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..addresses import Subjects
from ..bus.streams import advisories_stream
from ..settings import MeshSettings
from .model import Policy

OWN_KEY_KINDS = ("wf", "conv", "result", "lease")
"""Redis key kinds with the agent's name as the token after the workflow."""

ROLE_FIRST_KINDS = ("journal", "once", "wait", "spend")
"""Redis key kinds with the agent's name first (``p:journal:R:*``): what a role records of
its own calls, effects and waits, which it acts on when it runs again; no step name can
make another role's pattern match them."""


SERVICE_API_VERBS = ("PING", "INFO", "STATS")
"""The NATS service API's requests a replica answers (``$SRV.<VERB>...``)."""

DISCOVERY_ASKER = "cli"
"""The ingress that may ask every service (``jetmesh agents``)."""


def discovery_listens(role: str) -> list[str]:
    """The service API subjects ``role``'s replicas subscribe to: every service's, the
    role's, and one instance of it."""
    out = []
    for verb in SERVICE_API_VERBS:
        out += [f"$SRV.{verb}", f"$SRV.{verb}.{role}", f"$SRV.{verb}.{role}.*"]
    return out


def discovery_asks() -> list[str]:
    """The service API requests the :data:`DISCOVERY_ASKER` publishes."""
    return [f"$SRV.{verb}" for verb in SERVICE_API_VERBS]


def preflight_asks(callees: list[str]) -> list[str]:
    """The service API request a role's ``ctx.call`` pre-flight sends to each role it may
    call (``$SRV.INFO.<callee>``, :mod:`jetmesh.runtime.preflight`): INFO alone, since its
    answer says both that the callee is served and what its handlers take. Only the
    callee's replicas receive it (no other role may subscribe to it), and they answer it
    through ``allow_responses`` on the caller's own inbox."""
    return [f"$SRV.INFO.{callee}" for callee in callees]


def inbox_prefix(role: str) -> str:
    """The inbox prefix a role's connections use (``nats.connect(inbox_prefix=...)``)."""
    return f"_INBOX.{role}"


@dataclass(frozen=True)
class RolePermissions:
    """What the servers let one role do."""

    name: str
    ingress: bool
    scopes: frozenset[str]
    consume: str | None
    """The filter subject of the role's consumer (its task subject); None for an ingress."""
    consumers: tuple[tuple[str, str], ...]
    """(stream, consumer) pairs the role fetches from."""
    publish: tuple[str, ...]
    subscribe: tuple[str, ...]
    redis_keys: tuple[str, ...]
    """Redis key patterns (glob), own namespaces first, then the shared ones."""
    inbox_prefix: str
    responds: bool = False
    """Whether it may answer a request it received (``allow_responses``): replicas answer
    the service API's requests (live discovery)."""
    redis_reads: tuple[str, ...] = ()
    """Redis key patterns (glob) it may read and not write: every role's spending."""


def _dedupe(items: list[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


def redis_key_patterns(prefix: str, role: str) -> tuple[str, ...]:
    """The Redis key patterns an agent role's replicas read and write."""
    own = [f"{prefix}:{kind}:*:{role}:*" for kind in OWN_KEY_KINDS]
    own.append(f"{prefix}:last:{role}:*")  # its tasks kept on their last delivery
    own += [f"{prefix}:{kind}:{role}:*" for kind in ROLE_FIRST_KINDS]
    return tuple(own)


def registry_reads(bucket: str) -> list[str]:
    """JetStream API subjects that read the key registry bucket ``bucket``."""
    stream = f"KV_{bucket}"
    return [
        f"$JS.API.STREAM.INFO.{stream}",
        f"$JS.API.DIRECT.GET.{stream}",
        f"$JS.API.DIRECT.GET.{stream}.>",
        f"$JS.API.STREAM.MSG.GET.{stream}",
    ]


def events_reads(stream: str) -> str:
    """The JetStream API subject of direct gets (``next_by_subj``) on the events stream."""
    return f"$JS.API.DIRECT.GET.{stream}"


def role_permissions(policy: Policy, role: str, settings: MeshSettings) -> RolePermissions:
    """Derive what ``role`` may do on the servers from its declaration.

    Raises:
        ConfigError: ``role`` is not in the policy.
    """
    grant = policy.role(role)
    subjects = Subjects(settings.subject_prefix)
    p = subjects.prefix
    publish = [subjects.task(callee) for callee in sorted(grant.calls)]
    publish.append(f"{p}.event.>")
    publish.append(subjects.dlq(role))  # what it refuses, replies included
    consumers: tuple[tuple[str, str], ...] = ()
    consume = None
    redis: tuple[str, ...] = ()
    redis_reads: tuple[str, ...] = ()
    if not grant.ingress:
        consume = subjects.task(role)
        consumers = ((settings.tasks_stream, role), (advisories_stream(settings), role))
        publish += [f"{p}.agent.{caller}.reply.*" for caller in sorted(policy.callers(role))]
        for stream, consumer in consumers:
            publish += [
                f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{consumer}",
                f"$JS.API.CONSUMER.INFO.{stream}.{consumer}",
                f"$JS.ACK.{stream}.{consumer}.>",
            ]
        redis = (*redis_key_patterns(p, role), *grant.redis_keys)
        redis_reads = (f"{p}:spend:*",)
    publish += registry_reads(settings.registry_bucket)
    publish.append(events_reads(settings.events_stream))
    if grant.ingress and role == DISCOVERY_ASKER:
        publish += discovery_asks()
    publish += preflight_asks(sorted(grant.calls))
    publish += grant.publish
    subscribe = [f"{p}.agent.{role}.reply.*", f"{inbox_prefix(role)}.>", *grant.consume]
    if not grant.ingress:
        subscribe += discovery_listens(role)
    return RolePermissions(
        name=role,
        ingress=grant.ingress,
        scopes=grant.scopes,
        consume=consume,
        consumers=consumers,
        publish=_dedupe(publish),
        subscribe=_dedupe(subscribe),
        redis_keys=redis,
        inbox_prefix=inbox_prefix(role),
        responds=not grant.ingress,
        redis_reads=redis_reads,
    )


def all_permissions(policy: Policy, settings: MeshSettings) -> list[RolePermissions]:
    """Every role's permissions, sorted by name."""
    return [role_permissions(policy, name, settings) for name in sorted(policy.roles)]
