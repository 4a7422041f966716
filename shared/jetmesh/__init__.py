"""jetmesh: an event-driven agent mesh over NATS JetStream, with signed messages.

Example:
    >>> import msgspec
    >>> from jetmesh import Agent, Context
    >>> class Echo(msgspec.Struct):
    ...     text: str
    >>> agent = Agent("echo")
    >>> @agent.handler
    ... async def echo(msg: Echo, ctx: Context) -> Echo:
    ...     return Echo(text=msg.text.upper())

Run it with ``jetmesh run my_module:agent``.

The public API is ``__all__`` here, in each subpackage (``jetmesh.identity``, ``jetmesh.bus``,
...) and in a few modules of their own (``jetmesh.settings``, ``jetmesh.envelope``, ...);
every other module is internal and may change without notice. docs/ARCHITECTURE.md ("Public
API") lists them.
"""

from ._exceptions import (
    ApprovalDenied,
    ApprovalExpired,
    ApprovalInvalid,
    ApprovalMismatch,
    ApprovalMissing,
    ApprovalReused,
    ApprovalTimeout,
    BadDelegation,
    BadSignature,
    BodyRejected,
    BudgetExceeded,
    CallerInvalid,
    CallFailed,
    CallNotSent,
    ConfigError,
    CredentialMissing,
    EffectInDoubt,
    ExpiredKey,
    ExpiredToken,
    FanOutExceeded,
    ForgedReply,
    HandlerControl,
    InvalidToken,
    Malformed,
    McpToolError,
    McpUnauthorized,
    MemoryConflict,
    MemoryDenied,
    MemoryFull,
    MemoryRefused,
    MemoryTooLarge,
    MeshError,
    MeshTimeout,
    Misaddressed,
    ModelError,
    ModelUnavailable,
    NoReplicas,
    NotATask,
    NotProvisioned,
    Oversized,
    PlanLimitExceeded,
    PlanTooDeep,
    PolicyError,
    PublishFailed,
    PublishRefused,
    RedriveRefused,
    RegistryUnavailable,
    Reject,
    RejectedMessage,
    Replayed,
    Retry,
    RevokedKey,
    SchemaViolation,
    ScopeDenied,
    ServerStartError,
    SettleRefused,
    SignalRefused,
    SignalTimeout,
    Stale,
    ToolInDoubt,
    ToolNotGranted,
    ToolRefused,
    ToolScopeDenied,
    UnknownKey,
    UnknownTool,
    Unsigned,
    UntrustedCertificate,
    WidenedDelegation,
)
from .addresses import Subjects
from .client import MeshClient
from .envelope import Envelope, ErrorBody
from .events import Event, EventPayload
from .identity.keystore import Identity, KeyStore
from .identity.tokens import Caller
from .memory import Conversation, Message, Versioned, WorkingMemory
from .models import ModelMessage, ModelReply
from .runtime.agent import Agent
from .runtime.context import Context
from .runtime.gathering import Failed, Ok, Outcome, PendingCall
from .runtime.replica import Replica
from .runtime.runner import load_agent, serve
from .settings import MeshSettings
from .signals import Signal
from .toolgate import Credentials, ToolCall, Toolgate, ToolRegistry

__version__ = "0.1.0"

__all__ = [
    "Agent",
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
    "Caller",
    "CallerInvalid",
    "ConfigError",
    "Context",
    "Conversation",
    "CredentialMissing",
    "Credentials",
    "EffectInDoubt",
    "Envelope",
    "ErrorBody",
    "Event",
    "EventPayload",
    "ExpiredKey",
    "ExpiredToken",
    "Failed",
    "FanOutExceeded",
    "ForgedReply",
    "HandlerControl",
    "Identity",
    "InvalidToken",
    "KeyStore",
    "Malformed",
    "McpToolError",
    "McpUnauthorized",
    "MemoryConflict",
    "MemoryDenied",
    "MemoryFull",
    "MemoryRefused",
    "MemoryTooLarge",
    "MeshClient",
    "MeshError",
    "MeshSettings",
    "MeshTimeout",
    "Message",
    "Misaddressed",
    "ModelError",
    "ModelMessage",
    "ModelReply",
    "ModelUnavailable",
    "NoReplicas",
    "NotATask",
    "NotProvisioned",
    "Ok",
    "Outcome",
    "Oversized",
    "PendingCall",
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
    "Replica",
    "Retry",
    "RevokedKey",
    "SchemaViolation",
    "ScopeDenied",
    "ServerStartError",
    "SettleRefused",
    "Signal",
    "SignalRefused",
    "SignalTimeout",
    "Stale",
    "Subjects",
    "ToolCall",
    "ToolInDoubt",
    "ToolNotGranted",
    "ToolRefused",
    "ToolRegistry",
    "ToolScopeDenied",
    "Toolgate",
    "UnknownKey",
    "UnknownTool",
    "Unsigned",
    "UntrustedCertificate",
    "Versioned",
    "WidenedDelegation",
    "WorkingMemory",
    "__version__",
    "load_agent",
    "serve",
]
