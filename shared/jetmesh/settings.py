"""One settings object for every jetmesh process.

Every value has a default that works on a developer machine with the embedded servers, and
every value can be set from the environment with the ``JETMESH_`` prefix::

    JETMESH_NATS_URL=nats://10.0.0.5:4222 JETMESH_CONCURRENCY=32 jetmesh run app:agent

Example:
    >>> settings = MeshSettings(subject_prefix="acme")
    >>> settings.subject_prefix
    'acme'
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["DEFAULT_NATS_URL", "DEFAULT_REDIS_URL", "DEFAULT_STATE_DIR", "MeshSettings"]

DEFAULT_NATS_URL = "nats://127.0.0.1:4222"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
DEFAULT_STATE_DIR = Path(".jetmesh")

KIB = 1024
MIB = 1024 * KIB

HEADER_ROOM_BYTES = 64 * KIB
"""Room for a message's headers (signature, key id, trace context, a dead letter's
reason) on top of ``max_payload_bytes`` in the servers' own limits."""


class MeshSettings(BaseSettings):
    """Settings shared by agents, the CLI and the embedded servers."""

    model_config = SettingsConfigDict(env_prefix="JETMESH_", frozen=True, extra="ignore")

    nats_url: str = DEFAULT_NATS_URL
    """NATS server URL(s), comma separated for a cluster."""

    redis_url: str = DEFAULT_REDIS_URL
    """Redis URL for working memory."""

    redis_retry_s: float = Field(default=30.0, ge=0)
    """How long a Redis command is retried while the server is unreachable (a restart)."""

    redis_wait_replicas: int = Field(default=0, ge=0, le=5)
    """With Redis replicas (a Sentinel URL), how many must have the step ledger's writes
    (results, leases, journal) and the claims and records of ``ctx.once`` effects before
    the step goes on (``WAIT``): a failover then cannot lose them, and an effect cannot
    run twice because its claim was lost. 0: do not wait (one Redis server; replication
    is asynchronous). ``jetmesh up --cluster`` sets 1."""

    redis_wait_timeout_ms: int = Field(default=1000, gt=0)
    """How long a write waits for ``redis_wait_replicas`` replicas; past it the step goes
    on with a warning (the replica is down or behind: the next failover may lose it)."""

    state_dir: Path = DEFAULT_STATE_DIR
    """Project-local directory for embedded server data, pid files and development keys."""

    keys_dir: Path | None = None
    """Where keys and certificates live; defaults to ``<state_dir>/keys``."""

    policy_file: Path | None = None
    """The policy (TOML) of agent roles: calls, scopes, tools (docs/security.md), laid over
    the library's own roles (``cli``, ``toolgate``), and the files it includes; without it,
    those roles alone. Read by ``jetmesh up`` and ``jetmesh policy`` when no file is given."""

    tool_secrets_file: Path | None = None
    """The tool gateway's credentials (TOML, or JSON by suffix: ``tool = "credential"``),
    read again when the file changes; only ``toolgate`` reads it (docs/toolgate.md). The
    environment's ``JETMESH_TOOL_<TOOL>_CREDENTIAL`` is asked after it."""

    subject_prefix: str = Field(default="mesh", pattern=r"^[A-Za-z0-9_-]+$")
    """First token of every jetmesh subject."""

    tasks_stream: str = "MESH_TASKS"
    """JetStream stream holding every task."""

    events_stream: str = "MESH_EVENTS"
    """JetStream stream holding every workflow event (the audit trail)."""

    dlq_stream: str = "MESH_DLQ"
    """JetStream stream holding dead letters."""

    registry_bucket: str = "MESH_KEYS"
    """JetStream key-value bucket of agent certificates, by key id."""

    stream_replicas: int = Field(default=1, ge=1, le=5)
    """Replicas of each stream and of the registry bucket, unless one of the settings below
    says otherwise for it: 1 on one nats-server, 3 on a cluster (``jetmesh up --cluster 3``
    sets 3; docs/durability.md says what each promises). A stream's replicas can be changed
    later by running the admin step again."""

    tasks_replicas: int | None = Field(default=None, ge=1, le=5)
    """Replicas of MESH_TASKS and its max-deliveries advisories; None: ``stream_replicas``."""

    events_replicas: int | None = Field(default=None, ge=1, le=5)
    """Replicas of MESH_EVENTS (the audit trail); None: ``stream_replicas``."""

    dlq_replicas: int | None = Field(default=None, ge=1, le=5)
    """Replicas of MESH_DLQ; None: ``stream_replicas``."""

    registry_replicas: int | None = Field(default=None, ge=1, le=5)
    """Replicas of the certificate registry bucket; None: ``stream_replicas``."""

    group_commit: bool | None = None
    """Group commit: a process's tasks and events that queue while the server stores the
    last ones go as one JetStream atomic batch per stream, so they share the server's
    fsync (MESH_TASKS and MESH_EVENTS are made with ``allow_atomic``; nats-server 2.12 or
    later; docs/durability.md#group-commit). None (the default): on when
    ``nats_sync_interval`` is ``always``, where each message alone costs an fsync; off
    with a flush interval, where a batch's staging costs the server more than it saves."""

    nats_sync_interval: str = Field(default="always", pattern=r"^(always|[0-9]+(ms|s|m|h))$")
    """How often the embedded nats-servers fsync JetStream's files: ``always`` (every
    write before it is acknowledged) or a duration such as ``2m`` (nats-server's own
    default: an acknowledged message can be lost on power loss within it). A server's
    setting, so it applies to every stream on it; servers ``jetmesh up`` did not start
    keep their own."""

    tasks_max_age_s: float = Field(default=7 * 24 * 3600, gt=0)
    """How long tasks stay in MESH_TASKS (for audit and redrive)."""

    events_max_age_s: float = Field(default=30 * 24 * 3600, gt=0)
    """How long workflow events stay in MESH_EVENTS."""

    tasks_max_bytes: int = Field(default=512 * MIB, gt=0)
    """Largest size of MESH_TASKS. When it is full a new task is refused (the caller gets
    ``PublishFailed``: backpressure) and no stored task is dropped to make room; handled
    tasks stay until ``tasks_max_age_s``, so size it above a week of tasks."""

    tasks_max_msgs: int = Field(default=500_000, gt=0)
    """Most tasks MESH_TASKS holds; past it, as past ``tasks_max_bytes``."""

    events_max_bytes: int = Field(default=1024 * MIB, gt=0)
    """Largest size of MESH_EVENTS (the audit trail). When it is full the oldest events are
    dropped to make room (docs/durability.md says why not the newest)."""

    events_max_msgs: int = Field(default=2_000_000, gt=0)
    """Most events MESH_EVENTS holds; past it, as past ``events_max_bytes``."""

    dlq_max_bytes: int = Field(default=128 * MIB, gt=0)
    """Largest size of MESH_DLQ. When it is full a new dead letter is refused; stored ones
    stay until an operator redrives or purges them, or 30 days pass."""

    dlq_max_msgs: int = Field(default=50_000, gt=0)
    """Most dead letters MESH_DLQ holds."""

    dlq_max_msgs_per_role: int = Field(default=5_000, gt=0)
    """Most dead letters of one role (one subject, ``<prefix>.dlq.<role>``): a role past it
    has its new dead letters refused, and the other roles' still go in."""

    advisories_max_bytes: int = Field(default=32 * MIB, gt=0)
    """Largest size of the max-deliveries advisories stream (``<tasks>_ADVISORIES``); when
    it is full the oldest (already handled) advisories are dropped."""

    advisories_max_msgs: int = Field(default=100_000, gt=0)
    """Most advisories that stream holds."""

    redis_max_memory_bytes: int = Field(default=1024 * MIB, ge=0)
    """Redis's memory limit (``maxmemory``, with ``maxmemory-policy noeviction``: a write
    past it is refused with ``OOM``, raised as ``MemoryFull``, and nothing is evicted). The
    embedded redis-server starts with it; the admin step sets it on a server that has none.
    0: leave the server's own."""

    duplicate_window_s: float = Field(default=120.0, gt=0)
    """JetStream de-duplication window for ``Nats-Msg-Id``."""

    max_message_age_s: float = Field(default=110.0, gt=0)
    """A message created longer ago than this is rejected as stale.

    ``max_message_age_s + 2 * clock_skew_s`` must not exceed ``duplicate_window_s``: a message
    may be stored up to ``clock_skew_s`` before its ``created`` and stays fresh until
    ``created + max_message_age_s + clock_skew_s``; inside the window JetStream drops an exact
    replay, after it the receiver rejects it as stale, so no replay gets through.
    """

    clock_skew_s: float = Field(default=5.0, ge=0)
    """Tolerated clock difference between hosts for ``created`` and token times."""

    max_payload_bytes: int = Field(default=256 * 1024, gt=0)
    """Largest envelope accepted, in bytes. The servers enforce it too: each stream's
    ``max_msg_size`` and the embedded nats-server's ``max_payload`` are this plus room for
    headers (``message_limit_bytes``, ``server_max_payload_bytes``)."""

    batch_signing: bool = True
    """Sign messages sealed together with one signature over a Merkle root
    (``ed25519-merkle-sha256``); off: one ``ed25519`` signature per message, for receivers
    that only know that scheme."""

    concurrency: int = Field(default=64, gt=0)
    """Tasks one replica runs at once."""

    gc_young_threshold: int = Field(default=20_000, ge=0)
    """In a process jetmesh starts (``jetmesh run``, a service's ``python -m``,
    ``jetmesh load run``): allocations between two collections of Python's youngest
    generation, the objects it held when it started frozen out of every collection
    (:mod:`jetmesh.runtime.gc_tuning`); 0 leaves Python's collector as it is."""

    max_ack_pending: int = Field(default=1024, gt=0)
    """Tasks in flight for one role across all its replicas (JetStream ``max_ack_pending``)."""

    ack_wait_s: float = Field(default=10.0, gt=0)
    """How long JetStream waits for an ack before redelivering a task. A running task is
    kept by in-progress acks every ``ack_wait_s / 3``, so this is how long a task whose
    replica died waits before another replica resumes it; it must leave room for that
    within a call's deadline (``call_timeout_s`` at least ``2 * ack_wait_s``). A setting of
    the role's consumer, as ``max_deliver`` and ``max_ack_pending`` are: on servers that
    enforce the policy a replica cannot change it, so a new value takes effect when the
    admin step runs again (``jetmesh admin provision`` or ``jetmesh up``, which print each
    role's consumer as the server holds it); on open servers each replica updates it when
    it starts."""

    max_deliver: int = Field(default=5, gt=0)
    """Deliveries of one task before it is dead-lettered."""

    retry_backoff_s: tuple[float, ...] = (0.2, 1.0, 5.0)
    """Delay before each redelivery after a failure; the last value repeats."""

    reply_lost_after_s: float = Field(default=20.0, gt=0)
    """A call whose reply has not come in this long looks for it in the workflow's log,
    again as often until its deadline: a reply is not stored, and one in flight when its
    nats-server died is gone, while the callee's signed ``completed`` event holds it
    (docs/durability.md)."""

    call_timeout_s: float = Field(default=30.0, gt=0)
    """Default deadline of ``ctx.call``: at least ``2 * ack_wait_s``, so that a task whose
    replica died is redelivered (after at most ``ack_wait_s``) while its caller still waits,
    with time left to run again. A step of up to ``(call_timeout_s - ack_wait_s) / 2`` of
    work (10 s with the defaults) that loses its replica once still answers in time."""

    call_preflight: Literal["off", "schema", "served"] = "schema"
    """What ``ctx.call`` checks before it sends a task, from the callee's answers to the NATS
    service API (``$SRV.INFO.<role>``, cached per process: :mod:`jetmesh.runtime.preflight`).
    ``"schema"``: a body that fails the input schema the callee publishes for its type is
    refused (``BodyRejected``); a role nobody serves still gets the task, queued until a
    replica comes (durability). ``"served"``: the same, and a call to a role that no
    replica serves and that was not seen within ``call_preflight_ttl_s`` is refused
    (``NoReplicas``) instead of waiting out its timeout. ``"off"``: nothing is asked."""

    call_preflight_timeout_s: float = Field(default=0.5, gt=0)
    """How long the pre-flight waits for a callee's ``$SRV.INFO`` answer; past it the call
    is sent unchecked and a role seen served stays so (the answer is only a hint; the
    callee checks anyway)."""

    call_preflight_ttl_s: float = Field(default=30.0, gt=0)
    """How long a callee's answer (served, its schemas) is kept before it is asked again,
    in the background while calls go on with it. A role found unserved is asked again
    after 2 s at most."""

    max_call_depth: int = Field(default=8, gt=0)
    """How deep calls may nest: the depth of a step key is its number of nested calls
    (``triage/billing.1/kb.1`` is 2). A call deeper is refused before it is sent
    (``PlanTooDeep``), and a task that arrives deeper is dead-lettered as ``plan-too-deep``."""

    max_fan_out: int = Field(default=64, gt=0)
    """Calls one task may make (``ctx.call``, ``ctx.gather``); one more is refused before it
    is sent (``FanOutExceeded``)."""

    drain_timeout_s: float = Field(default=20.0, gt=0)
    """How long a stopping replica waits for in-flight tasks."""

    health_port: int | None = Field(default=None, ge=0, le=65535)
    """Port of an agent process's HTTP health endpoints (``/healthz``, ``/readyz``); None:
    no endpoints; 0: a free port, printed at start (``jetmesh run --health-port``)."""

    health_host: str = "127.0.0.1"
    """Address the health endpoints listen on (``0.0.0.0`` in a container)."""

    step_ledger: bool = True
    """Journal calls, record step results and lease running steps in Redis, so that a
    handler survives the crash of its replica and a step never runs twice at once; off:
    plain at-least-once delivery, no Redis on the task path."""

    memory_ttl_s: int = Field(default=7 * 24 * 3600, gt=0)
    """Expiry of working memory, conversations, journal entries and results, in seconds."""

    memory_max_value_bytes: int = Field(default=512 * 1024, gt=0)
    """Largest value one working-memory key may hold."""

    token_ttl_s: float = Field(default=3600.0, gt=0)
    """Lifetime of caller tokens minted by ``jetmesh keys token`` and the CLI."""

    cert_ttl_s: float = Field(default=30 * 24 * 3600.0, gt=0)
    """Lifetime of agent certificates issued by ``jetmesh keys issue``."""

    model_provider: Literal["offline", "openai", "anthropic"] = "offline"
    """Where ``ctx.model`` goes: ``offline`` (deterministic rules and templates, no network),
    ``openai`` (any OpenAI-compatible Chat Completions server) or ``anthropic``."""

    model_base_url: str = ""
    """The provider's URL; "" for its public API (``https://api.openai.com/v1``,
    ``https://api.anthropic.com``). Ollama: ``http://127.0.0.1:11434/v1``."""

    model_api_key: SecretStr | None = None
    """The provider's API key (never logged)."""

    model_name: str = ""
    """The model asked (``gpt-4o-mini``, ``claude-3-5-haiku-latest``); required for
    ``openai`` and ``anthropic``."""

    model_timeout_s: float = Field(default=60.0, gt=0)
    """Deadline of one try of a model call."""

    model_max_retries: int = Field(default=2, ge=0)
    """Tries after the first on connection errors, timeouts, 429 and 5xx."""

    model_prices_file: Path | None = None
    """A TOML price table added over the shipped one (see docs/models.md)."""

    @model_validator(mode="after")
    def _check_windows(self) -> MeshSettings:
        if self.max_message_age_s + 2 * self.clock_skew_s > self.duplicate_window_s:
            raise ValueError(
                "max_message_age_s + 2 * clock_skew_s must not exceed duplicate_window_s, "
                "or a replay could arrive after de-duplication forgot it and still look fresh"
            )
        return self

    @model_validator(mode="after")
    def _check_redelivery_room(self) -> MeshSettings:
        if self.call_timeout_s < 2 * self.ack_wait_s:
            raise ValueError(
                f"call_timeout_s ({self.call_timeout_s:g}) must be at least 2 * ack_wait_s "
                f"({2 * self.ack_wait_s:g}): a task whose replica died comes back after up to "
                "ack_wait_s, and its caller's deadline must leave room for that redelivery "
                "to run and answer (docs/durability.md, timeouts)"
            )
        return self

    @model_validator(mode="after")
    def _check_stream_limits(self) -> MeshSettings:
        for name in ("tasks", "events", "dlq", "advisories"):
            if getattr(self, f"{name}_max_bytes") < self.server_max_payload_bytes:
                raise ValueError(
                    f"{name}_max_bytes must hold at least one message of the largest size "
                    f"({self.server_max_payload_bytes} bytes: max_payload_bytes and headers)"
                )
        return self

    @property
    def message_limit_bytes(self) -> int:
        """The ``max_msg_size`` of the tasks, events and advisories streams: an envelope of
        ``max_payload_bytes`` and its headers."""
        return self.max_payload_bytes + HEADER_ROOM_BYTES

    @property
    def server_max_payload_bytes(self) -> int:
        """The embedded nats-server's ``max_payload`` and MESH_DLQ's ``max_msg_size``: a
        stored message again, with a dead letter's headers added."""
        return self.max_payload_bytes + 2 * HEADER_ROOM_BYTES

    @property
    def redis_max_bulk_bytes(self) -> int:
        """The embedded redis-server's ``proto-max-bulk-len``: the largest string one
        command may send or make (``SETRANGE``, ``APPEND``), above the largest value
        jetmesh writes (a journaled reply, a working-memory value); Redis's floor is 1 MiB."""
        return max(
            MIB, max(self.max_payload_bytes, self.memory_max_value_bytes) + HEADER_ROOM_BYTES
        )

    @property
    def resolved_keys_dir(self) -> Path:
        """The keys directory, defaulting to ``<state_dir>/keys``."""
        return self.keys_dir if self.keys_dir is not None else self.state_dir / "keys"

    def backoff_for(self, attempt: int) -> float:
        """Delay before redelivery number ``attempt`` (1-based)."""
        steps = self.retry_backoff_s or (1.0,)
        return steps[min(attempt, len(steps)) - 1]
