"""The policy file: each agent role's calls, scopes, tools and extra subjects, validated.

A policy is TOML, read with ``tomllib`` and checked by pydantic models; every problem is
reported with the file, the role, the field and what is wrong::

    max_delegation_depth = 4

    [roles.triage]
    calls = ["billing", "technical"]
    scopes = ["ticket:read"]

    [roles.billing]
    calls = ["kb"]
    scopes = ["kb:read", "refund:write"]
    tools.refund = { scope = "refund:write", irreversible = true }

    [budgets.tenant.acme]            # model spending (:mod:`jetmesh.policy.budgets`)
    tokens = 100000
    per = "day"

Example:
    >>> policy = load_policy(Path("policy.toml"))  # doctest: +SKIP
    >>> policy.roles["billing"].scopes
    frozenset({'kb:read', 'refund:write'})
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, NamedTuple

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from .._exceptions import ConfigError, PolicyError
from ..addresses import TOKEN_RE
from .budgets import Budgets
from .files import PolicyFile, read_files

SCOPE_RE = re.compile(r"^[a-z][a-z0-9_-]*(:[a-z][a-z0-9_*-]*)+\Z")
"""A scope: lower-case words joined by ``:`` (``kb:read``, ``refund:write``)."""

SUBJECT_RE = re.compile(r"^[A-Za-z0-9_$-]+(\.([A-Za-z0-9_$-]+|\*))*(\.>)?\Z|^>\Z")
"""A NATS subject or pattern: tokens, ``*`` for one token, ``>`` for the rest."""

REDIS_PATTERN_RE = re.compile(r"^[!-~]+\Z")
"""A Redis key pattern (glob): printable ASCII, no spaces."""

MAX_DEPTH = 32

DEFAULT_POLICY = "default.toml"
"""The library's own roles (in this package): the ``cli`` ingress and the ``toolgate`` tool
gateway. Every policy file is laid over them (:func:`load_policy`)."""


def _name(value: str) -> str:
    if not TOKEN_RE.match(value):
        raise ValueError(f"{value!r} is not a name (1-64 of A-Z a-z 0-9 _ -)")
    return value


def _scope(value: str) -> str:
    if not SCOPE_RE.match(value):
        raise ValueError(f"{value!r} is not a scope (lower-case words joined by ':', kb:read)")
    return value


def _subject(value: str) -> str:
    if not SUBJECT_RE.match(value):
        raise ValueError(f"{value!r} is not a NATS subject ('*' one token, '>' at the end)")
    return value


def _redis_pattern(value: str) -> str:
    if not REDIS_PATTERN_RE.match(value) or value[0] in "~%&":
        raise ValueError(f"{value!r} is not a Redis key pattern (printable ASCII, no spaces)")
    return value


Name = Annotated[str, AfterValidator(_name)]
Scope = Annotated[str, AfterValidator(_scope)]
SubjectPattern = Annotated[str, AfterValidator(_subject)]
RedisPattern = Annotated[str, AfterValidator(_redis_pattern)]


class ToolGrant(BaseModel):
    """A tool a role may use."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    scope: Scope | None = None
    """The scope a call of the tool needs (the caller's and the role's); None: no scope."""

    irreversible: bool = False
    """Its effect cannot be undone (a refund, an email): it runs once per step, and a call
    needs a person's approval unless ``approval`` says otherwise."""

    approval: bool | None = None
    """Whether a call needs a person's single-use approval, bound to the exact request and
    checked by the tool gateway; None: irreversible tools do, others do not."""

    approve_above: dict[Name, float] = Field(default_factory=dict)
    """Only calls with an argument above its value here need the approval
    (``{ amount_eur = 100 }``); an argument that is missing or not a number needs it too."""

    description: str = ""

    def needs_approval(self, args: Mapping[str, Any]) -> bool:
        """Whether a call with ``args`` needs a person's approval."""
        if not (self.irreversible if self.approval is None else self.approval):
            return False
        if not self.approve_above:
            return True
        for name, limit in self.approve_above.items():
            value = args.get(name)
            if isinstance(value, bool) or not isinstance(value, int | float) or value > limit:
                return True
        return False


class RoleGrant(BaseModel):
    """What one agent role may do."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    calls: frozenset[Name] = frozenset()
    """Roles this role may send tasks to."""

    scopes: frozenset[Scope] = frozenset()
    """The role's grant: the most a caller's scopes can give it on a hop."""

    tools: dict[Name, ToolGrant] = Field(default_factory=dict)
    """Tools by name (names are tokens, like role names)."""

    publish: tuple[SubjectPattern, ...] = ()
    """Extra subjects the role may publish to, beyond the derived ones."""

    consume: tuple[SubjectPattern, ...] = ()
    """Extra core NATS subjects the role may subscribe to, beyond the derived ones."""

    redis_keys: tuple[RedisPattern, ...] = ()
    """Extra Redis key patterns (globs) the role may read and write, beyond the derived
    ones: an outside system it reaches through Redis."""

    ingress: bool = False
    """An ingress (gateway, CLI): it mints caller tokens and calls roles, and has no task
    subject or consumer of its own."""

    signal_senders: frozenset[Name] | None = None
    """The roles whose signals this role's waits take (``ctx.wait_for``: a person's
    approval, an outside system's callback). By default every ingress, and no agent."""

    description: str = ""

    @model_validator(mode="after")
    def _tool_scopes(self) -> RoleGrant:
        for name, tool in sorted(self.tools.items()):
            if tool.scope is not None and tool.scope not in self.scopes:
                raise ValueError(
                    f"tool {name!r} needs scope {tool.scope!r}, which the role is not granted"
                )
        return self

    @property
    def irreversible_tools(self) -> frozenset[str]:
        return frozenset(name for name, tool in self.tools.items() if tool.irreversible)


class Policy(BaseModel):
    """Every role of a mesh and the mesh-wide limits."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_delegation_depth: int = Field(default=8, ge=1, le=MAX_DEPTH)
    """How deep calls may nest along one chain (a step key's number of nested calls)."""

    roles: dict[Name, RoleGrant]
    """Roles by name."""

    budgets: Budgets = Field(default_factory=Budgets)
    """Model token and cost budgets by caller and by tenant."""

    @field_validator("roles")
    @classmethod
    def _some_roles(cls, roles: dict[str, RoleGrant]) -> dict[str, RoleGrant]:
        if not roles:
            raise ValueError("declare at least one role ([roles.<name>])")
        return roles

    @model_validator(mode="after")
    def _calls_known(self) -> Policy:
        problems = []
        for name, role in sorted(self.roles.items()):
            for callee in sorted(role.calls):
                if callee not in self.roles:
                    problems.append(f"roles.{name}.calls: {callee!r} is not a declared role")
                elif self.roles[callee].ingress:
                    problems.append(f"roles.{name}.calls: {callee!r} is an ingress, not an agent")
            for sender in sorted(role.signal_senders or ()):
                if sender not in self.roles:
                    problems.append(
                        f"roles.{name}.signal_senders: {sender!r} is not a declared role"
                    )
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def role(self, name: str) -> RoleGrant:
        """The grant of ``name``.

        Raises:
            ConfigError: no such role.
        """
        try:
            return self.roles[name]
        except KeyError:
            raise ConfigError(f"role {name!r} is not in the policy") from None

    def callers(self, name: str) -> frozenset[str]:
        """Roles that may call ``name`` (and so send it tasks and wait for its replies)."""
        return frozenset(r for r, grant in self.roles.items() if name in grant.calls)

    @property
    def agents(self) -> list[str]:
        """The roles that consume tasks (not ingresses), sorted."""
        return sorted(name for name, grant in self.roles.items() if not grant.ingress)


def _where(loc: tuple[int | str, ...]) -> str:
    parts = [str(p) for p in loc if str(p) != "[key]" and not str(p).startswith("function-")]
    return ".".join(p if TOKEN_RE.match(p) else json.dumps(p) for p in parts)


def _problems(exc: ValidationError, path: Path | str) -> list[str]:
    problems = []
    for err in exc.errors():
        message = str(err["msg"]).removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            message = "unknown field (a typo?)"
        where = _where(err["loc"])
        problems.append(f"{path}: {where}: {message}" if where else f"{path}: {message}")
    return problems


def parse_policy(data: dict[str, Any], path: Path | str = "<policy>") -> Policy:
    """Validate already-parsed policy data.

    Raises:
        PolicyError: with every problem found.
    """
    try:
        return Policy.model_validate(data)
    except ValidationError as exc:
        raise PolicyError(path, _problems(exc, path)) from None


def load_policy(path: Path) -> Policy:
    """Read a TOML policy file and the files it includes, laid over the library's roles.

    The library's own roles (``cli``, ``toolgate``: ``jetmesh/policy/default.toml``) come
    first; each file then adds its roles, included files before the file that includes
    them. A file may add to a library role's lists (``calls``, ``scopes``, ``tools``,
    ``publish``, ``consume``, ``redis_keys``, ``signal_senders``: cli's ``calls`` naming
    the mesh's entry role, say) but not change the rest of it; a role of a mesh is defined
    in one file only. ``max_delegation_depth`` is the smallest a file sets.

    Raises:
        PolicyError: a file is missing or not TOML, does not validate, changes a library
            role, or defines a role another file defines (naming both files).
    """
    return _laid([_library_file(), *read_files(path)], path)


def default_policy() -> Policy:
    """The library's own roles alone (``jetmesh/policy/default.toml``): the policy of a
    mesh that names no policy file.

    Raises:
        PolicyError: the shipped file does not validate (a packaging mistake).
    """
    library = _library_file()
    return parse_policy(library.data, library.path)


def mesh_policy(policy_file: Path | None) -> Policy:
    """The policy in ``policy_file`` (``settings.policy_file``) over the library's roles,
    or the library's roles alone.

    Raises:
        PolicyError: the file is missing, not TOML, or does not validate.
    """
    return load_policy(policy_file) if policy_file is not None else default_policy()


class _PolicyLayer(BaseModel):
    """One file's part of a policy: roles (of its own, or added to the library's) and the
    depth it allows."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_delegation_depth: int | None = Field(default=None, ge=1, le=MAX_DEPTH)
    roles: dict[Name, RoleGrant] = Field(default_factory=dict)
    budgets: Budgets = Field(default_factory=Budgets)


LIBRARY_LISTS = ("calls", "scopes", "tools", "publish", "consume", "redis_keys", "signal_senders")
"""The fields of a library role that a mesh's file may add to."""


def _library_file() -> PolicyFile:
    text = resources.files(__package__).joinpath(DEFAULT_POLICY).read_text()
    return PolicyFile(Path(f"jetmesh/policy/{DEFAULT_POLICY}"), tomllib.loads(text))


def _laid(files: list[PolicyFile], path: Path) -> Policy:
    """The roles of ``files`` (the library's first) laid over each other."""
    problems: list[str] = []
    layers: list[tuple[Path, _PolicyLayer]] = []
    for file in files:
        try:
            layers.append((file.path, _PolicyLayer.model_validate(file.data)))
        except ValidationError as exc:
            problems += _problems(exc, file.path)
    if problems:
        raise PolicyError(path, problems)
    (library_path, library), mesh_layers = layers[0], layers[1:]
    roles = dict(library.roles)
    defined_in = dict.fromkeys(roles, library_path)
    for where, layer in mesh_layers:
        for name, grant in layer.roles.items():
            if name in library.roles:
                roles[name] = _added(roles[name], grant, f"{where}: roles.{name}", problems)
            elif name in defined_in:
                problems.append(
                    f"{where}: roles.{name}: already defined in {defined_in[name]} "
                    "(a role is defined in one file)"
                )
            else:
                roles[name], defined_in[name] = grant, where
    if problems:
        raise PolicyError(path, problems)
    budgets = Budgets()
    for where, layer in layers:
        budgets = budgets.joined(layer.budgets, str(where), problems)
    if problems:
        raise PolicyError(path, problems)
    depths = [d for _, layer in layers if (d := layer.max_delegation_depth) is not None]
    data: dict[str, Any] = {"roles": roles, "budgets": budgets}
    if depths:
        data["max_delegation_depth"] = min(depths)
    return parse_policy(data, path)


def _added(base: RoleGrant, more: RoleGrant, where: str, problems: list[str]) -> RoleGrant:
    """The library role ``base`` with ``more``'s lists added; a change to anything else is
    a problem."""
    for name in sorted(more.model_fields_set - set(LIBRARY_LISTS)):
        if getattr(more, name) != getattr(base, name):
            problems.append(
                f"{where}.{name}: a library role; a file may add to its "
                f"{', '.join(LIBRARY_LISTS)}, not change its {name}"
            )
    tools = dict(base.tools)
    for tool, grant in more.tools.items():
        if tools.setdefault(tool, grant) != grant:
            problems.append(f"{where}.tools.{tool}: already granted otherwise")
    senders = None
    if base.signal_senders is not None or more.signal_senders is not None:
        senders = (base.signal_senders or frozenset()) | (more.signal_senders or frozenset())
    return base.model_copy(
        update={
            "calls": base.calls | more.calls,
            "scopes": base.scopes | more.scopes,
            "tools": tools,
            "publish": _joined(base.publish, more.publish),
            "consume": _joined(base.consume, more.consume),
            "redis_keys": _joined(base.redis_keys, more.redis_keys),
            "signal_senders": senders,
        }
    )


def _joined(first: tuple[str, ...], then: tuple[str, ...]) -> tuple[str, ...]:
    return (*first, *(item for item in then if item not in first))


class _Loaded(NamedTuple):
    """A policy as :func:`policy_of` read it: the files it came from and their stamps."""

    files: tuple[Path, ...]
    stamps: tuple[tuple[int, int] | None, ...]
    policy: Policy


_LOADED: dict[Path, _Loaded] = {}
_LOADED_MAX = 8


def _stamp(path: Path) -> tuple[int, int] | None:
    """A file's modification time and size (None: it is gone)."""
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


def policy_of(path: Path | None) -> Policy | None:
    """The policy in ``path`` for a running process (:func:`load_policy`): read once, and
    again when it or a file it includes changes (modification time or size); None without
    a path.

    Raises:
        PolicyError: a file is missing, not TOML, or does not validate.
    """
    if path is None:
        return None
    seen = _LOADED.get(path)
    if seen is not None and tuple(_stamp(f) for f in seen.files) == seen.stamps:
        return seen.policy
    # stamped before load_policy reads them: a change in between shows as a newer stamp
    files = tuple(f.path for f in read_files(path))
    stamps = tuple(_stamp(f) for f in files)
    policy = load_policy(path)
    if path not in _LOADED and len(_LOADED) >= _LOADED_MAX:
        _LOADED.pop(next(iter(_LOADED)))
    _LOADED[path] = _Loaded(files, stamps, policy)
    return policy
