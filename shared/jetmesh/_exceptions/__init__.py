"""The jetmesh exception tree.

Every error jetmesh raises derives from :class:`MeshError`::

    MeshError
    ├── ConfigError                   bad settings, missing keys or certificates
    │   ├── PolicyError               a policy file that cannot be read or does not validate
    │   └── NotProvisioned            a stream, consumer, registry or certificate the admin
    │                                 step makes is missing (``jetmesh up``)
    ├── ServerStartError (+ RuntimeError)  an embedded server did not come up
    ├── MeshTimeout (+ TimeoutError)  a call's deadline passed
    ├── CallFailed                    the called agent answered with an error
    ├── CallNotSent                   ``ctx.call``'s pre-flight refused the call: nothing sent
    │   ├── NoReplicas                no replica serves the role, none seen lately
    │   └── BodyRejected              the body fails the callee's published input schema
    ├── BudgetExceeded                a model call would pass a caller's or tenant's budget
    ├── PublishFailed                 the stream refused a message, or no stream takes it
    │   └── PublishRefused            the policy or nats-server does not let this client
    │                                 publish there (``jetmesh publish`` to a role not called)
    ├── RedriveRefused                a dead letter whose task does not verify as the
    │   │                             original of the role it is filed for; nothing sent
    │   ├── NotATask                  a dead letter whose bytes are no task envelope (a
    │   │                             refused reply, event or raw message): nothing to send
    │   └── SettleRefused             a dead letter whose step holds no side effect in
    │                                 doubt, or whose claim changed while being settled
    ├── RegistryUnavailable           a certificate could not be read (servers away, a
    │                                 cluster electing a leader): nothing decided, try later
    ├── RejectedMessage               a message failed verification; ``reason`` is a stable code
    │   ├── Oversized                 body over ``max_payload_bytes``
    │   ├── Unsigned                  no signature headers, or an unknown scheme
    │   ├── UnknownKey                key id not in the registry
    │   ├── UntrustedCertificate      certificate not signed by the mesh root, or malformed
    │   ├── ExpiredKey                certificate expired (or not yet valid)
    │   ├── RevokedKey                key id revoked in the registry
    │   ├── BadSignature              signature does not match the published bytes
    │   ├── Malformed                 not a JSON envelope
    │   ├── Misaddressed              subject does not match ``to``, or sender not allowed there
    │   ├── Stale                     ``created`` too old or in the future
    │   ├── Replayed                  an envelope id seen before
    │   ├── ForgedReply               a reply not signed by the role called, or not for that
    │   │                             call (workflow, step, call id)
    │   ├── SignalRefused             a signal from a signer the wait does not accept, or
    │   │                             bound to another step
    │   ├── InvalidToken              caller token missing, forged or not from an ingress
    │   │   └── ExpiredToken          caller token (or a delegation link) expired
    │   ├── BadDelegation             chain missing, broken, spliced, or not from an ingress
    │   │   └── WidenedDelegation     a hop handed on more scopes, or longer, than it got
    │   ├── SchemaViolation           body does not match the handler's input type
    │   └── PlanLimitExceeded         a call beyond the plan's limits, refused before it is sent
    │       ├── PlanTooDeep           its step would nest deeper than ``max_call_depth``
    │       └── FanOutExceeded        one task would make more than ``max_fan_out`` calls
    ├── MemoryRefused                 working memory refused a write
    │   ├── MemoryConflict            the value changed since it was read (compare-and-set)
    │   ├── MemoryTooLarge            the value is over the size limit
    │   ├── MemoryDenied              Redis refused the role a key outside its patterns
    │   └── MemoryFull                Redis is at its ``maxmemory`` and refused a write
    ├── EffectInDoubt                 a side effect was started and its outcome is unknown
    ├── ScopeDenied                   a hop asked for a scope outside caller ∩ agent grant
    ├── ToolRefused                   a tool call not carried out; ``reason`` is a stable code
    │   ├── UnknownTool               the tool gateway has no tool of that name
    │   ├── ToolNotGranted            the requesting role has no such tool in the policy
    │   ├── CallerInvalid             the caller token no longer verifies at the gateway
    │   ├── ToolScopeDenied           the tool's scope is not delegated to the request
    │   ├── CredentialMissing         the gateway holds no credential for the tool
    │   ├── ApprovalMissing           an approval is needed and none came with the request
    │   ├── ApprovalDenied            the person asked denied it
    │   ├── ApprovalMismatch          the approval is for another workflow, step, tool or args
    │   ├── ApprovalReused            the approval was used before (it is single-use)
    │   ├── ApprovalInvalid           forged, malformed, not from an ingress, or revoked
    │   │   └── ApprovalExpired       past its expiry
    │   ├── ToolInDoubt (+ EffectInDoubt)  a run of the tool for this step was left
    │   │                             unrecorded, and the tool says no way to settle it
    │   └── McpToolError              an MCP server's tool answered with an error
    │       └── McpUnauthorized       the MCP server refused the gateway's credential
    ├── SignalTimeout (+ TimeoutError)  no signal within a wait's timeout
    │   └── ApprovalTimeout           nobody approved or denied in time, and no escalation
    ├── ModelError                    a model provider refused a request, or answered nonsense
    │   └── ModelUnavailable          unreachable, timed out, overloaded or rate limited
    └── HandlerControl                raised by handlers to steer delivery
        ├── Retry                     redeliver after ``delay`` seconds
        └── Reject                    dead-letter now with ``reason``, no retry
"""

from __future__ import annotations

from .base import (
    ConfigError,
    EffectInDoubt,
    HandlerControl,
    MeshError,
    MeshTimeout,
    NotProvisioned,
    PolicyError,
    PublishFailed,
    PublishRefused,
    RegistryUnavailable,
    Reject,
    Retry,
    ScopeDenied,
    ServerStartError,
)
from .calls import (
    ApprovalTimeout,
    BodyRejected,
    BudgetExceeded,
    CallFailed,
    CallNotSent,
    ModelError,
    ModelUnavailable,
    NoReplicas,
    NotATask,
    RedriveRefused,
    SettleRefused,
    SignalTimeout,
)
from .memory import (
    MemoryConflict,
    MemoryDenied,
    MemoryFull,
    MemoryRefused,
    MemoryTooLarge,
)
from .rejected import (
    BadDelegation,
    BadSignature,
    ExpiredKey,
    ExpiredToken,
    FanOutExceeded,
    ForgedReply,
    InvalidToken,
    Malformed,
    Misaddressed,
    Oversized,
    PlanLimitExceeded,
    PlanTooDeep,
    RejectedMessage,
    Replayed,
    RevokedKey,
    SchemaViolation,
    SignalRefused,
    Stale,
    UnknownKey,
    Unsigned,
    UntrustedCertificate,
    WidenedDelegation,
)
from .tools import (
    ApprovalDenied,
    ApprovalExpired,
    ApprovalInvalid,
    ApprovalMismatch,
    ApprovalMissing,
    ApprovalReused,
    CallerInvalid,
    CredentialMissing,
    McpToolError,
    McpUnauthorized,
    ToolInDoubt,
    ToolNotGranted,
    ToolRefused,
    ToolScopeDenied,
    UnknownTool,
)

__all__ = [
    "ApprovalDenied",
    "ApprovalExpired",
    "ApprovalInvalid",
    "ApprovalMismatch",
    "ApprovalMissing",
    "ApprovalReused",
    "ApprovalTimeout",
    "BadDelegation",
    "BadSignature",
    "BodyRejected",
    "BudgetExceeded",
    "CallFailed",
    "CallNotSent",
    "CallerInvalid",
    "ConfigError",
    "CredentialMissing",
    "EffectInDoubt",
    "ExpiredKey",
    "ExpiredToken",
    "FanOutExceeded",
    "ForgedReply",
    "HandlerControl",
    "InvalidToken",
    "Malformed",
    "McpToolError",
    "McpUnauthorized",
    "MemoryConflict",
    "MemoryDenied",
    "MemoryFull",
    "MemoryRefused",
    "MemoryTooLarge",
    "MeshError",
    "MeshTimeout",
    "Misaddressed",
    "ModelError",
    "ModelUnavailable",
    "NoReplicas",
    "NotATask",
    "NotProvisioned",
    "Oversized",
    "PlanLimitExceeded",
    "PlanTooDeep",
    "PolicyError",
    "PublishFailed",
    "PublishRefused",
    "RedriveRefused",
    "RegistryUnavailable",
    "Reject",
    "RejectedMessage",
    "Replayed",
    "Retry",
    "RevokedKey",
    "SchemaViolation",
    "ScopeDenied",
    "ServerStartError",
    "SettleRefused",
    "SignalRefused",
    "SignalTimeout",
    "Stale",
    "ToolInDoubt",
    "ToolNotGranted",
    "ToolRefused",
    "ToolScopeDenied",
    "UnknownKey",
    "UnknownTool",
    "Unsigned",
    "UntrustedCertificate",
    "WidenedDelegation",
]
