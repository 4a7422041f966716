"""``ctx.call``'s pre-flight: is the callee served, and does the body fit its input schema?

Before a call is sent, the caller asks the callee's replicas the NATS service API's
``$SRV.INFO.<role>`` (:mod:`jetmesh.runtime.discovery`): the first answer says the role
is served and carries each handler's input type and JSON Schema. The answer is cached
per process and per callee role, so the first call to a role pays one round trip and the
calls after it none; once the answer is ``call_preflight_ttl_s`` old the role is asked
again in the background while calls go on with it. With
``call_preflight`` (:class:`~jetmesh.MeshSettings`):

``"schema"`` (the default)
    a body that fails the schema the callee publishes for the body's type is refused
    with :class:`~jetmesh.BodyRejected` (JSON Schema Draft 2020-12, the ``jsonschema``
    library). A role nobody serves still gets its task: JetStream keeps it until a
    replica comes, as it always did.
``"served"``
    the same, and a call to a role nobody serves is refused with
    :class:`~jetmesh.NoReplicas`: the servers answered that nobody listens (no
    responders), and no replica answered within ``call_preflight_ttl_s`` (a positive
    answer is kept that long: replicas that all restart within it still get their tasks,
    queued until they are back).
``"off"``
    nothing is asked.

An answer that does not come within ``call_preflight_timeout_s`` (servers slow, replicas
frozen, a policy that does not grant the request) decides nothing: the call is sent, and a
role seen served stays so (someone listens). A body whose type the answering replica has
no handler for is left to the callee (a replica of a newer version may take it), and a
body of the very type whose schema the callee publishes is not validated again
(:func:`own_schema`). An unanswered or unserved role is asked again after
:data:`MISS_TTL_S` at most.

Who may answer: on servers that enforce the policy, ``$SRV.INFO.<role>`` reaches only the
role's own replicas (no other role may subscribe to it) and only they may answer it
(``allow_responses``), so the answer is the callee's. On open servers anyone may answer
anything; the callee checks every task anyway (a body that does not decode is
dead-lettered as ``schema-violation``), so a wrong answer can only refuse a call early or
let one through to that check.

Example:
    >>> preflight = preflight_for(mesh)                           # doctest: +SKIP
    >>> refused = await preflight.check("billing", ticket, "Ticket")  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol
from weakref import WeakKeyDictionary

import msgspec
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from nats.aio.client import Client
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout

from .._exceptions import BodyRejected, CallNotSent, NoReplicas
from ..envelope import encode
from ..settings import MeshSettings

log = logging.getLogger("jetmesh.preflight")

MISS_TTL_S = 2.0
"""How long a role found unserved, or that did not answer in time, is taken as such
before it is asked again."""

MAX_ERRORS = 5
"""Violations named in a :class:`~jetmesh.BodyRejected` at most."""


def info_subject(role: str) -> str:
    """The service API request a caller sends to ``role``'s replicas."""
    return f"$SRV.INFO.{role}"


@dataclass
class Callee:
    """What a process knows of a role it calls."""

    asked: float
    """When it was last asked (the clock of :class:`Preflight`)."""
    served: bool | None
    """True: a replica answered; False: the servers said nobody listens; None: no answer
    in time (nothing known)."""
    schemas: dict[str, str] = field(default_factory=dict)
    """Input JSON Schema (as published) by input type."""
    validators: dict[str, Draft202012Validator | None] = field(default_factory=dict)


class _Connected(Protocol):
    @property
    def nc(self) -> Client: ...

    @property
    def settings(self) -> MeshSettings: ...


class Preflight:
    """One process's pre-flight checks and its cache of callees.

    Args:
        nc: the connection to ask on.
        mode: ``"off"``, ``"schema"`` or ``"served"`` (``call_preflight``).
        timeout_s: how long to wait for an answer.
        ttl_s: how long a callee's answer is kept.
        clock: seconds, monotonic (tests pass their own).
    """

    def __init__(
        self,
        nc: Client,
        *,
        mode: str = "schema",
        timeout_s: float = 0.5,
        ttl_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.nc = nc
        self.mode = mode
        self.timeout_s = timeout_s
        self.ttl_s = ttl_s
        self.clock = clock
        self.asked = 0
        """Requests sent so far."""
        self._callees: dict[str, Callee] = {}
        self._asking: dict[str, asyncio.Future[Callee]] = {}

    @classmethod
    def of(cls, nc: Client, settings: MeshSettings) -> Preflight:
        return cls(
            nc,
            mode=settings.call_preflight,
            timeout_s=settings.call_preflight_timeout_s,
            ttl_s=settings.call_preflight_ttl_s,
        )

    async def check(self, role: str, body: Any, type_: str) -> CallNotSent | None:
        """The refusal of a call of ``body`` (of wire type ``type_``) to ``role``, if the
        pre-flight finds one (returned, not raised: the caller records it first)."""
        if self.mode == "off":
            return None
        callee = await self.callee(role)
        if not callee.served:
            if self.mode == "served" and callee.served is False:
                return NoReplicas(
                    role, f"no replica of {role} answered {info_subject(role)}, none seen lately"
                )
            return None
        errors = self._violations(callee, body, type_)
        return BodyRejected(role, type_, errors) if errors else None

    async def callee(self, role: str) -> Callee:
        """What is known of ``role``: from the cache while it is fresh; a stale answer
        that is not "nobody listens" while it is asked again in the background (no call
        waits for a role it saw served, nor again for one that did not answer in time:
        such a call is sent anyway); else asked, one request at a time per role, shared by
        the calls that wait for it. Only the first call to a role, and a call to a role
        the servers said nobody serves (an answer that comes at once), wait."""
        known = self._callees.get(role)
        if known is not None:
            fresh = self.ttl_s if known.served else min(MISS_TTL_S, self.ttl_s)
            if self.clock() - known.asked < fresh:
                return known
        pending = self._asking.get(role)
        if pending is None:
            pending = asyncio.ensure_future(self._ask(role, known))
            self._asking[role] = pending
            pending.add_done_callback(lambda _: self._asking.pop(role, None))
        if known is not None and known.served is not False:
            return known
        return await asyncio.shield(pending)

    async def settled(self) -> None:
        """Wait for the requests under way (tests, and a clean stop)."""
        await asyncio.gather(*self._asking.values(), return_exceptions=True)

    async def _ask(self, role: str, known: Callee | None) -> Callee:
        self.asked += 1
        asked = self.clock()
        try:
            msg = await self.nc.request(info_subject(role), b"", timeout=self.timeout_s)
        except NoRespondersError:
            callee = Callee(asked, False)
        except (TimeoutError, NatsTimeout):
            if known is not None and known.served:  # someone listens: slow, not gone
                callee = Callee(asked, True, known.schemas, known.validators)
            else:
                callee = Callee(asked, None)
        except Exception as exc:  # a hint only: never let asking break the call
            log.debug("pre-flight of %s not asked: %s", role, exc)
            callee = Callee(asked, None)
        else:
            callee = Callee(asked, True, _schemas(msg.data, role))
        self._callees[role] = callee
        return callee

    def _violations(self, callee: Callee, body: Any, type_: str) -> list[str]:
        schema = callee.schemas.get(type_)
        if schema is None or (
            isinstance(body, msgspec.Struct) and own_schema(type(body)) == schema
        ):
            return []  # nothing published for it, or the very type the callee takes
        if type_ not in callee.validators:
            callee.validators[type_] = _validator(schema)
        validator = callee.validators[type_]
        if validator is None:
            return []
        raw = bytes(body) if isinstance(body, msgspec.Raw) else encode(body)
        try:
            instance = json.loads(raw)
        except ValueError as exc:
            return [f"(body): not JSON: {exc}"]
        found = sorted(validator.iter_errors(instance), key=lambda e: list(map(str, e.path)))
        return [_describe(e) for e in found[:MAX_ERRORS]]


@functools.cache
def own_schema(tp: type[Any]) -> str:
    """``tp``'s JSON Schema as a replica publishes it (``discovery.Endpoint``: sorted keys,
    no spaces). A body of a type whose schema is the one the callee publishes was encoded
    from that schema's type, so it is not validated again (msgspec checks value
    constraints, ``Meta(gt=0)``, when decoding, not when building: the callee still does)."""
    try:
        return json.dumps(msgspec.json.schema(tp), sort_keys=True, separators=(",", ":"))
    except (TypeError, ValueError):
        return ""


def _schemas(data: bytes, role: str) -> dict[str, str]:
    """Input schemas by input type from an INFO answer by ``role`` (an answer in another
    name, or not shaped as one, gives none: nothing is checked)."""
    try:
        info = json.loads(data)
    except ValueError:
        return {}
    if not isinstance(info, dict) or info.get("name") != role:
        return {}
    out: dict[str, str] = {}
    for endpoint in info.get("endpoints") or []:
        meta = endpoint.get("metadata") if isinstance(endpoint, dict) else None
        if isinstance(meta, dict) and isinstance(meta.get("input_type"), str):
            out[meta["input_type"]] = str(meta.get("input_schema") or "{}")
    return out


def _validator(schema: str | None) -> Draft202012Validator | None:
    if schema is None:
        return None
    try:
        parsed = json.loads(schema)
        Draft202012Validator.check_schema(parsed)
    except (ValueError, SchemaError) as exc:
        log.debug("a published schema that cannot be used: %s", exc)
        return None
    if not isinstance(parsed, dict) or not parsed:
        return None
    return Draft202012Validator(parsed)


def _describe(error: Any) -> str:
    path = ".".join(str(p) for p in error.path) or "(body)"
    return f"{path}: {error.message}"


_by_connection: WeakKeyDictionary[object, Preflight] = WeakKeyDictionary()


def preflight_for(mesh: _Connected) -> Preflight:
    """The pre-flight of ``mesh``'s process: one per connection, made on first use and
    gone with the connection, so that every task a replica handles shares its cache."""
    preflight = _by_connection.get(mesh)
    if preflight is None:
        preflight = _by_connection[mesh] = Preflight.of(mesh.nc, mesh.settings)
    return preflight
