"""The gateway's settings: ``JETMESH_GATEWAY_*`` environment variables over a TOML file.

The file is named by ``JETMESH_GATEWAY_CONFIG`` (none by default); an environment variable
wins over the file, an argument given to :class:`GatewaySettings` over both. The mesh's own
settings (servers, keys directory, prefix) are :class:`~jetmesh.MeshSettings`'
``JETMESH_*`` variables. Example file::

    role = "gateway"
    rate_per_s = 20.0
    burst = 40

    [[api_keys]]
    sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
    subject = "alice"
    tenant = "acme"
    scopes = ["kb:read"]

    [jwt]
    issuer = "https://id.example.com/"
    audience = "jetmesh"
    jwks_url = "https://id.example.com/.well-known/jwks.json"
    algorithms = ["RS256", "ES256", "EdDSA"]
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

CONFIG_ENV = "JETMESH_GATEWAY_CONFIG"
"""The environment variable that names the gateway's TOML file."""

DEFAULT_ROLE = "gateway"
DEFAULT_RATE_PER_S = 50.0
DEFAULT_BURST = 100
DEFAULT_MAX_WAIT_S = 60.0
DEFAULT_JWKS_REFETCH_S = 30.0
DEFAULT_HEARTBEAT_S = 15.0
AUDIT_WORKFLOW = "_gateway"
"""The workflow whose event log holds the gateway's refusals (kind ``gateway.refused``)."""

ASYMMETRIC_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
"""The JWT algorithms a JWKS issuer may use: public keys only (never ``none``, never HS*,
whose "public" key would be a shared secret anyone reading the JWKS holds)."""


def key_hash(api_key: str) -> str:
    """The SHA-256 hex digest of ``api_key``, as the config stores it."""
    return hashlib.sha256(api_key.encode()).hexdigest()


class ApiKey(BaseModel):
    """One API key and the caller it stands for."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    """The key's SHA-256, hex (``key_hash``); the key itself is never stored."""
    subject: Annotated[str, Field(min_length=1, max_length=256)]
    """The caller's subject in its token."""
    tenant: Annotated[str, Field(min_length=1, max_length=256)] = "default"
    scopes: tuple[str, ...] = ()


class Webhook(BaseModel):
    """Where a caller's workflow outcomes are POSTed, and the secret that signs them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    caller: Annotated[str, Field(pattern=r"^[^/]+/.+$")]
    """The caller, ``tenant/subject``."""
    url: Annotated[str, Field(pattern=r"^https?://")]
    secret: Annotated[SecretStr, Field(min_length=16)]
    """Shared with the receiver: the HMAC key of ``Jetmesh-Signature``."""


class JwtIssuer(BaseModel):
    """The issuer whose JWTs authenticate callers."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    issuer: str
    """The ``iss`` a token must carry."""
    audience: str
    """The ``aud`` a token must name."""
    jwks_url: str
    """Where the issuer publishes its public keys (a JWKS)."""
    algorithms: tuple[str, ...] = ("RS256", "ES256", "EdDSA")
    """Accepted ``alg`` values: public-key algorithms only."""
    subject_claim: str = "sub"
    tenant_claim: str = "tenant"
    """The claim holding the caller's tenant (``default`` when absent)."""
    scopes_claim: str = "scope"
    """The claim holding the scopes: a space-separated string (RFC 8693) or a list."""
    leeway_s: Annotated[float, Field(ge=0, le=300)] = 30.0
    """Clock skew allowed on ``exp``, ``nbf`` and ``iat``."""
    refetch_floor_s: Annotated[float, Field(ge=0)] = DEFAULT_JWKS_REFETCH_S
    """A token with an unknown ``kid`` makes the gateway fetch the JWKS again, at most
    once in this many seconds."""

    @field_validator("algorithms")
    @classmethod
    def _public_key_only(cls, algorithms: tuple[str, ...]) -> tuple[str, ...]:
        refused = sorted(set(algorithms) - ASYMMETRIC_ALGORITHMS)
        if refused or not algorithms:
            raise ValueError(
                f"algorithms {refused or '[]'} refused: use public-key algorithms "
                f"({', '.join(sorted(ASYMMETRIC_ALGORITHMS))})"
            )
        return algorithms


class GatewaySettings(BaseSettings):
    """How the gateway authenticates, limits and waits; validated when built."""

    model_config = SettingsConfigDict(
        env_prefix="JETMESH_GATEWAY_", env_nested_delimiter="__", frozen=True, extra="forbid"
    )

    role: str = DEFAULT_ROLE
    """The gateway's ingress role in the policy (its keys and server logins)."""
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 8080
    api_keys: tuple[ApiKey, ...] = ()
    """API keys, by hash, and the caller each stands for."""
    jwt: JwtIssuer | None = None
    """The JWT issuer; None: API keys only."""
    rate_per_s: Annotated[float, Field(gt=0)] = DEFAULT_RATE_PER_S
    """Requests a caller may make per second, sustained (per replica of the gateway)."""
    burst: Annotated[int, Field(ge=1)] = DEFAULT_BURST
    """Requests a caller may make at once (the token bucket's size)."""
    max_wait_s: Annotated[float, Field(ge=0)] = DEFAULT_MAX_WAIT_S
    """The longest ``Prefer: wait=`` honoured."""
    heartbeat_s: Annotated[float, Field(gt=0)] = DEFAULT_HEARTBEAT_S
    """Seconds between comments on a quiet event stream."""
    poll_max_s: Annotated[float, Field(gt=0)] = 1.0
    """The longest pause between reads of the log while an event stream waits."""
    token_ttl_s: Annotated[float, Field(gt=0)] = 3600.0
    """Lifetime of the caller tokens the gateway mints."""
    webhooks: tuple[Webhook, ...] = ()
    """Callers whose workflow outcomes are POSTed to a URL of theirs."""
    webhook_attempts: Annotated[int, Field(ge=1, le=20)] = 5
    """Tries per delivery."""
    webhook_backoff_s: Annotated[float, Field(ge=0)] = 1.0
    """The pause after the first failed try, doubled after each next one."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        config = os.environ.get(CONFIG_ENV)
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if config:
            path = Path(config)
            if not path.is_file():
                raise ValueError(f"{CONFIG_ENV}={config}: no such file")
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
        return tuple(sources)
