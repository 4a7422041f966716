"""A load scenario: a TOML file saying where to send, what, how often, for how long, and
which service-level objectives the run must meet. Validated when read; an error names the
field.

Example (``single-hop.toml``)::

    name = "single-hop"
    agent = "echo"
    seconds = 30

    [target]
    door = "nats"            # or "http": base_url = "http://127.0.0.1:8080", api_key = "..."

    [payload]
    template = '{"text": "hello {n}", "id": "{uuid}"}'

    [arrival]
    model = "constant"       # poisson, ramp, steps, closed
    rate = 200

    [slo]
    p99_ms = 50
    no_loss = true

Read it with :func:`load_scenario`.
"""

from __future__ import annotations

import itertools
import json
import os
import tomllib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from .._exceptions import ConfigError
from .faults import Fault, PauseFault, RestartServerFault
from .fleet import MeshSpec

__all__ = [
    "Arrival",
    "Audit",
    "ClosedArrival",
    "ConstantArrival",
    "Floor",
    "HttpTarget",
    "NatsTarget",
    "Payload",
    "PoissonArrival",
    "RampArrival",
    "Scenario",
    "Slo",
    "StepsArrival",
    "load_scenario",
]

PositiveRate = Annotated[float, Field(gt=0, le=1_000_000)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class NatsTarget(_Strict):
    """Send through the mesh as an ingress role (as ``jetmesh publish`` does)."""

    door: Literal["nats"] = "nats"
    url: str | None = None
    """The NATS URL; default: ``JETMESH_NATS_URL`` (the mesh settings from the environment)."""
    keys_dir: Path | None = None
    """The credentials (keys) directory; default: the settings' own."""
    role: str = "cli"
    """The ingress role to send as (its identity is issued on first use in development)."""
    scopes: list[str] = []
    """The scopes of the caller token each request carries (a flow whose roles check them,
    as the support mesh's ``kb:read``, needs them); default: none."""

    def describe(self, agent: str) -> str:
        """``nats <agent>`` and where."""
        return f"nats {agent}" + (f" at {self.url}" if self.url else "")


class HttpTarget(_Strict):
    """Send through the HTTP gateway: ``POST /v1/agents/{agent}/tasks`` with ``Prefer: wait``."""

    door: Literal["http"]
    base_url: str = Field(pattern=r"^https?://")
    """The gateway's base URL, e.g. ``http://127.0.0.1:8080``."""
    api_key: str = ""
    """The API key (a bearer token); empty: read ``api_key_env``."""
    api_key_env: str = "JETMESH_GATEWAY_API_KEY"
    """The environment variable holding the API key when ``api_key`` is empty."""

    def key(self) -> str:
        """The API key: ``api_key``, else the variable ``api_key_env`` (may be empty)."""
        return self.api_key or os.environ.get(self.api_key_env, "")

    def describe(self, agent: str) -> str:
        """``http <base_url> <agent>``."""
        return f"http {self.base_url} {agent}"


class Payload(_Strict):
    """What each request sends: a JSON ``template`` or JSON lines from ``samples``, cycled.
    ``{n}`` becomes the request's number and ``{uuid}`` a fresh UUID in either."""

    template: str | None = None
    """JSON text with ``{n}``/``{uuid}`` placeholders."""
    samples: Path | None = None
    """A JSON-lines file (relative to the scenario file), one body per line, cycled."""
    type: str = ""
    """The body's wire type (e.g. ``support.Ticket/1``); empty: the agent's only handler."""

    @model_validator(mode="after")
    def _one_source(self) -> Payload:
        if (self.template is None) == (self.samples is None):
            raise ValueError("give exactly one of template or samples")
        if self.template is not None:
            _check_json(render(self.template, 0), "template")
        return self


class ConstantArrival(_Strict):
    """``rate`` requests per second, evenly spaced."""

    model: Literal["constant"]
    rate: PositiveRate


class PoissonArrival(_Strict):
    """A Poisson process of mean ``rate`` per second: exponential gaps, from ``seed``."""

    model: Literal["poisson"]
    rate: PositiveRate
    seed: int = 1


class RampArrival(_Strict):
    """From ``from_rate`` to ``to_rate`` per second, linearly over ``over_s`` seconds (default:
    the whole run), then ``to_rate``."""

    model: Literal["ramp"]
    from_rate: PositiveRate = Field(alias="from")
    to_rate: PositiveRate = Field(alias="to")
    over_s: float | None = Field(default=None, gt=0)


class StepsArrival(_Strict):
    """A list of ``[rate, seconds]`` steps, each held evenly spaced; the last one holds on."""

    model: Literal["steps"]
    steps: list[tuple[PositiveRate, Annotated[float, Field(gt=0)]]] = Field(min_length=1)


class ClosedArrival(_Strict):
    """A closed loop: ``concurrency`` requests in flight, the next sent when one returns.
    With ``expected_interval_ms``, HdrHistogram's coordinated-omission correction adds the
    samples a stalled loop did not send."""

    model: Literal["closed"]
    concurrency: int = Field(gt=0, le=100_000)
    expected_interval_ms: float | None = Field(default=None, gt=0)


Arrival = Annotated[
    ConstantArrival | PoissonArrival | RampArrival | StepsArrival | ClosedArrival,
    Field(discriminator="model"),
]
"""One of the arrival models, told apart by ``model``."""


class Slo(_Strict):
    """The objectives; each one given is checked, each one left out is not."""

    p99_ms: float | None = Field(default=None, gt=0)
    p50_ms: float | None = Field(default=None, gt=0)
    error_rate: float | None = Field(default=None, ge=0, le=1)
    """The largest share of sent requests that may fail (errors and lost)."""
    no_loss: bool = False
    """Every request gets an answer (no lost requests)."""


class Audit(_Strict):
    """``[audit]``: a function of the mesh under test, run after the load while the mesh
    is still up, that counts what really happened (effects, runs per task, payouts) and
    returns figures with bounds; a figure outside them fails the run like an objective."""

    check: str = Field(pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
    """``package.module:function``: an async function taking a
    :class:`~jetmesh.load.audit.AuditRun` and returning a list of
    :class:`~jetmesh.load.report.AuditFigure`."""
    options: dict[str, str | int | float | bool] = {}
    """Passed to the function as ``run.options`` (``[audit.options]``)."""


class Floor(_Strict):
    """``[floor]``: measure a bare nats-py floor on the run's NATS server just before the
    load, so the run's speed reads as a ratio to it. ``kind = "request"`` (the default): a
    responder process echoes each core NATS request of a closed loop from this one.
    ``kind = "durable"``: the mesh's stored hop without the mesh (the task published to a
    stream of the floor's own and acked, taken by the responder from a pull consumer, an
    event stored and acked, the reply on core NATS, the task acknowledged; no signing, no
    envelope). Both in one run: two ``[[floor]]`` tables, one of each kind."""

    kind: Literal["request", "durable"] = "request"
    """Which floor: the bare request/reply, or the bare durable hop."""
    requests: int = Field(default=20_000, gt=0, le=10_000_000)
    """Measured requests (after ``warmup`` unmeasured ones)."""
    concurrency: int = Field(default=64, gt=0, le=10_000)
    """Requests in flight at any time."""
    payload_bytes: int = Field(default=256, gt=0, le=1024 * 1024)
    """The size of each request (echoed back), in bytes."""
    warmup: int = Field(default=2_000, ge=0, le=1_000_000)
    """Requests sent first and not measured."""
    max_seconds: float = Field(default=30.0, gt=0, le=600)
    """The longest the warm-up, and then the measured part, may take each."""


class Scenario(_Strict):
    """A load scenario, as its TOML file says."""

    name: str = Field(min_length=1)
    agent: str = Field(min_length=1)
    """The role that receives each request (the flow's entry)."""
    target: NatsTarget | HttpTarget = Field(default_factory=NatsTarget, discriminator="door")
    payload: Payload
    arrival: Arrival
    seconds: float = Field(default=30.0, gt=0)
    """How long to send after the warm-up."""
    warmup_s: float = Field(default=0.0, ge=0)
    """Seconds of sending first, not measured."""
    max_in_flight: int = Field(default=1000, gt=0)
    """Requests outstanding at most; beyond it, requests wait for a slot (the wait counts in
    their latency)."""
    timeout_s: float = Field(default=10.0, gt=0)
    """How long a request waits for its answer before it counts as lost."""
    slo: Slo = Field(default_factory=Slo)
    mesh: MeshSpec | None = None
    """What the run launches itself (``[mesh]``), stopped when it ends; None: nothing."""
    faults: list[Fault] = Field(default_factory=list)
    """Faults to strike during the run (``[[faults]]``); they need a ``[mesh]``."""
    audit: Audit | None = None
    """What to count after the load (``[audit]``); None: nothing."""
    floor: Floor | list[Floor] | None = None
    """The bare nats-py floor(s) to measure just before the load (``[floor]``, or one
    ``[[floor]]`` table per kind); None: none."""
    base_dir: Path = Field(default=Path("."), exclude=True)
    """The scenario file's folder (``samples`` paths are relative to it)."""

    @field_validator("floor", mode="before")
    @classmethod
    def _floor_tables(cls, value: object) -> object:
        """``[floor]`` or ``[[floor]]``, each table validated as a :class:`Floor` (so an
        error names ``floor.<field>``, not the union's branches)."""
        if isinstance(value, dict):
            return Floor.model_validate(value)
        if isinstance(value, list):
            return [Floor.model_validate(table) for table in value]
        return value

    @property
    def floors(self) -> list[Floor]:
        """The floors to measure, in the order the file gives them (empty: none)."""
        if self.floor is None:
            return []
        return [self.floor] if isinstance(self.floor, Floor) else list(self.floor)

    @model_validator(mode="after")
    def _one_floor_of_each_kind(self) -> Scenario:
        kinds = [floor.kind for floor in self.floors]
        if len(kinds) != len(set(kinds)):
            raise ValueError("one [[floor]] table of each kind at most")
        return self

    @model_validator(mode="after")
    def _faults_need_a_mesh(self) -> Scenario:
        if self.faults and self.mesh is None:
            raise ValueError("faults need a launched mesh: add a [mesh] section")
        servers = [
            f
            for f in self.faults
            if isinstance(f, RestartServerFault)
            or (isinstance(f, PauseFault) and f.target in ("nats", "redis"))
        ]
        if servers and not (self.mesh and self.mesh.embedded):
            raise ValueError("a server fault needs the run's own servers: mesh.embedded = true")
        return self

    def describe_arrival(self) -> str:
        """The arrival model in a few words: ``constant 200/s``, ``closed 16``, ..."""
        a = self.arrival
        if isinstance(a, ConstantArrival | PoissonArrival):
            return f"{a.model} {a.rate:g}/s"
        if isinstance(a, RampArrival):
            return f"ramp {a.from_rate:g}->{a.to_rate:g}/s"
        if isinstance(a, StepsArrival):
            return "steps " + ",".join(f"{r:g}/s*{s:g}s" for r, s in a.steps)
        return f"closed {a.concurrency}"

    def bodies(self) -> Iterator[bytes]:
        """The request bodies in order, placeholders filled, forever.

        Raises:
            ConfigError: the samples file cannot be read, is empty or holds a line that is
                not JSON.
        """
        p = self.payload
        if p.template is not None:
            template = p.template
            return (render(template, n).encode() for n in itertools.count())
        assert p.samples is not None
        path = p.samples if p.samples.is_absolute() else self.base_dir / p.samples
        try:
            lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
        except OSError as exc:
            raise ConfigError(f"payload.samples: cannot read {path}: {exc}") from None
        if not lines:
            raise ConfigError(f"payload.samples: {path} has no lines")
        for i, line in enumerate(lines, 1):
            _check_json(render(line, 0), f"samples line {i}")
        return (render(lines[n % len(lines)], n).encode() for n in itertools.count())


def render(template: str, n: int) -> str:
    """``template`` with ``{n}`` as ``n`` and each ``{uuid}`` as a fresh UUID."""
    out = template.replace("{n}", str(n))
    while "{uuid}" in out:
        out = out.replace("{uuid}", str(uuid.uuid4()), 1)
    return out


def _check_json(text: str, what: str) -> None:
    try:
        json.loads(text)
    except ValueError as exc:
        raise ValueError(f"{what} is not JSON once filled in: {exc}") from None


def load_scenario(path: Path, **overrides: object) -> Scenario:
    """Read and validate the scenario file ``path``.

    Args:
        path: The TOML file.
        **overrides: Top-level fields to set instead (``seconds=5``), or ``rate`` for the
            arrival's rate (constant and poisson only).

    Returns:
        The scenario.

    Raises:
        ConfigError: the file cannot be read, is not TOML, or a field is wrong (the message
            names each wrong field).
    """
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"scenario {path}: cannot read it: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"scenario {path}: not TOML: {exc}") from None
    rate = overrides.pop("rate", None)
    data.update({k: v for k, v in overrides.items() if v is not None})
    if rate is not None:
        arrival = data.get("arrival")
        if not isinstance(arrival, dict) or arrival.get("model") not in ("constant", "poisson"):
            raise ConfigError(f"scenario {path}: --rate needs a constant or poisson arrival")
        data["arrival"] = {**arrival, "rate": rate}
    data["base_dir"] = path.parent
    try:
        return Scenario.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"scenario {path}: {_fields(exc)}") from None


def _fields(exc: ValidationError) -> str:
    """Each error as ``field.path: message``."""
    parts = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"]) or "(file)"
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)
