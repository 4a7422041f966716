"""``jetmesh memory <workflow> [agent]``: a workflow's working memory, as the admin reads it.

Each agent's keys of the workflow (``<prefix>:wf:<workflow>:<agent>:<key>``, hashes of
``v`` version, ``d`` JSON value, ``w`` id of the last write) with their version, last
write, expiry and value; and its conversations (``<prefix>:conv:<workflow>:<agent>:<name>``)
with their length and newest message. Every string shown was written by some role, possibly a
compromised one, so it is shown as data (:mod:`.render`); a key under the workflow whose
name is not a memory key (``jetmesh`` never writes one: a role's key pattern ``*`` also
matches ``:``) is listed apart, with the role whose pattern reaches it.

Example:
    $ jetmesh memory 01KBF8W1W4Q1TQ5XKQ0D8Q7V6C writer       # doctest: +SKIP
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from typing import Any

import msgspec
import typer
from redis.asyncio import Redis
from redis.exceptions import RedisError
from rich.text import Text

from ..addresses import TOKEN_RE
from ..logins import admin_login
from ..memory import keys
from ..memory.connection import connect
from ..settings import MeshSettings
from .common import console, err_console, run_async, settings
from .render import markup, plain

SCAN_COUNT = 1000
VALUE_LIMIT = 200
"""Characters of a value shown by default (``--width``)."""


@dataclass(frozen=True)
class Entry:
    """One Redis key under the workflow's working memory, as stored."""

    agent: str
    key: str
    redis_key: str
    fields: dict[str, bytes] = field(default_factory=dict)
    ttl_s: int | None = None
    """Seconds left before it expires; None: no expiry."""
    problem: str = ""
    """Why it is not a working-memory value jetmesh wrote ("" when it is one)."""

    @property
    def version(self) -> int | None:
        raw = self.fields.get("v")
        return int(raw) if raw is not None and raw.isdigit() else None

    @property
    def write(self) -> str | None:
        raw = self.fields.get("w")
        return None if raw is None else raw.decode(errors="replace")

    def value(self) -> tuple[bool, Any]:
        """(True, the decoded value) when ``d`` is JSON, else (False, None)."""
        data = self.fields.get("d")
        if data is None:
            return False, None
        try:
            return True, msgspec.json.decode(data)
        except msgspec.DecodeError:
            return False, None


@dataclass(frozen=True)
class ConversationEntry:
    """One conversation of the workflow (``<prefix>:conv:<workflow>:<agent>:<name>``)."""

    agent: str
    name: str
    redis_key: str
    messages: int
    ttl_s: int | None = None
    last: bytes | None = None
    """The newest message, as stored (JSON of ``{role, content, name}``)."""
    problem: str = ""

    def last_message(self) -> tuple[bool, Any]:
        """(True, the newest message decoded) when it is JSON, else (False, None)."""
        if self.last is None:
            return False, None
        try:
            return True, msgspec.json.decode(self.last)
        except msgspec.DecodeError:
            return False, None


def is_token(value: str) -> bool:
    """Whether ``value`` is a subject token (a workflow id, an agent name, a memory key)."""
    return TOKEN_RE.match(value) is not None


def _text(raw: bytes | str) -> str:
    return raw if isinstance(raw, str) else raw.decode(errors="replace")


def _split(redis_key: str, base: str) -> tuple[str, str, str]:
    """(agent, key, problem) of a Redis key under ``base`` (``<prefix>:wf:<workflow>:``
    or ``<prefix>:conv:<workflow>:``)."""
    agent, _, key = redis_key[len(base) :].partition(":")
    if not is_token(agent) or not is_token(key):
        owners = [part for part in redis_key[len(base) :].split(":")[:-1] if is_token(part)]
        who = " or ".join(f"'{o}'" for o in owners) or "no role"
        return agent, key, f"not a memory key name (within the key pattern of {who})"
    return agent, key, ""


def _check(workflow: str, agent: str | None) -> None:
    if not is_token(workflow) or (agent is not None and not is_token(agent)):
        raise ValueError("a workflow id and an agent name are subject tokens (A-Z a-z 0-9 _ -)")


async def _scan(redis: Redis, base: str, agent: str | None) -> list[str]:
    pattern = f"{base}{agent}:*" if agent else f"{base}*"
    return sorted({_text(k) async for k in redis.scan_iter(match=pattern, count=SCAN_COUNT)})


def _ttl(reply: object) -> int | None:
    return reply if isinstance(reply, int) and reply >= 0 else None


async def read_memory(
    redis: Redis, prefix: str, workflow: str, agent: str | None = None
) -> list[Entry]:
    """Every key of ``workflow``'s working memory (of ``agent`` only, when given), sorted
    by agent and key.

    Raises:
        ValueError: ``workflow`` or ``agent`` is not a subject token.
    """
    _check(workflow, agent)
    base = keys.workflow_memory(prefix, workflow)
    found = await _scan(redis, base, agent)
    if not found:
        return []
    async with redis.pipeline(transaction=False) as pipe:
        for key in found:
            pipe.hgetall(key)
            pipe.ttl(key)
        replies = await pipe.execute(raise_on_error=False)
    entries = []
    for i, redis_key in enumerate(found):
        stored, ttl = replies[2 * i], replies[2 * i + 1]
        owner, key, problem = _split(redis_key, base)
        if isinstance(stored, Exception):  # another type than a hash (WRONGTYPE)
            stored, problem = {}, problem or "not a hash"
        fields = {_text(name): value for name, value in stored.items()}
        if not problem and ("v" not in fields or "d" not in fields):
            problem = "a hash without a version (v) and a value (d)"
        entries.append(Entry(owner, key, redis_key, fields, _ttl(ttl), problem))
    return sorted(entries, key=lambda e: (e.agent, e.key, e.redis_key))


async def read_conversations(
    redis: Redis, prefix: str, workflow: str, agent: str | None = None
) -> list[ConversationEntry]:
    """Every conversation of ``workflow`` (of ``agent`` only, when given): its length,
    expiry and newest message, sorted by agent and name.

    Raises:
        ValueError: ``workflow`` or ``agent`` is not a subject token.
    """
    _check(workflow, agent)
    base = keys.workflow_conversations(prefix, workflow)
    found = await _scan(redis, base, agent)
    if not found:
        return []
    async with redis.pipeline(transaction=False) as pipe:
        for key in found:
            pipe.llen(key)
            pipe.ttl(key)
            pipe.lindex(key, -1)
        replies = await pipe.execute(raise_on_error=False)
    entries = []
    for i, redis_key in enumerate(found):
        length, ttl, last = replies[3 * i : 3 * i + 3]
        owner, name, problem = _split(redis_key, base)
        if isinstance(length, Exception):  # another type than a list (WRONGTYPE)
            length, last, problem = 0, None, problem or "not a list"
        entries.append(
            ConversationEntry(owner, name, redis_key, int(length), _ttl(ttl), last, problem)
        )
    return sorted(entries, key=lambda e: (e.agent, e.name, e.redis_key))


def _expiry(ttl_s: int | None) -> str:
    if ttl_s is None:
        return "no expiry"
    if ttl_s >= 86400:
        return f"expires in {ttl_s / 86400:.1f} days"
    if ttl_s >= 3600:
        return f"expires in {ttl_s / 3600:.1f} h"
    return f"expires in {ttl_s} s"


def entry_lines(entry: Entry, *, width: int, pad: int = 0) -> list[Text]:
    """An entry as ``jetmesh memory`` prints it: a heading line (its key padded to
    ``pad``), then the value on one line cut at ``width`` characters, then any other field
    of the hash."""
    version = entry.version
    head = Text.assemble(
        (f"  {plain(entry.key, limit=80):<{pad}}", "bold"),
        f"  version {version if version is not None else '?'}",
        f"  write {plain(entry.write or '-', limit=40)}",
        f"  {_expiry(entry.ttl_s)}",
    )
    lines = [head]
    if entry.problem:
        lines.append(Text(f"    ! {entry.problem}: {plain(entry.redis_key, limit=200)}", "red"))
    ok, value = entry.value()
    if ok:
        shown = msgspec.json.encode(value).decode()
        lines.append(Text("    " + plain(shown, limit=width)))
    elif "d" in entry.fields:
        lines.append(Text("    (not JSON) " + plain(entry.fields["d"], limit=width), "red"))
    for name in sorted(set(entry.fields) - {"v", "d", "w"}):
        lines.append(
            Text(f"    field {plain(name, limit=40)} = {plain(entry.fields[name], limit=width)}")
        )
    return lines


def conversation_lines(entry: ConversationEntry, *, width: int) -> list[Text]:
    """A conversation as ``jetmesh memory`` prints it: its name, length and expiry, then
    its newest message cut at ``width`` characters."""
    head = Text.assemble(
        ("  conversation " + plain(entry.name, limit=80), "bold"),
        f"  {entry.messages} message{'s' if entry.messages != 1 else ''}",
        f"  {_expiry(entry.ttl_s)}",
    )
    lines = [head]
    if entry.problem:
        lines.append(Text(f"    ! {entry.problem}: {plain(entry.redis_key, limit=200)}", "red"))
    ok, last = entry.last_message()
    if ok and isinstance(last, dict):
        who = plain(last.get("role", "?"), limit=40)
        content = plain(last.get("content", ""), limit=width)
        lines.append(Text(f"    newest {who}: {content}"))
    elif entry.last is not None:
        lines.append(Text("    newest (not JSON) " + plain(entry.last, limit=width), "red"))
    return lines


def conversation_json(entry: ConversationEntry) -> dict[str, Any]:
    """A conversation for ``--json``: its length, expiry and newest message."""
    ok, last = entry.last_message()
    return {
        "agent": entry.agent,
        "name": entry.name,
        "redis_key": entry.redis_key,
        "messages": entry.messages,
        "ttl_s": entry.ttl_s,
        "newest": last if ok else (None if entry.last is None else _text(entry.last)),
        "problem": entry.problem or None,
    }


def entry_json(entry: Entry) -> dict[str, Any]:
    """An entry for ``--json``: what the command shows, and the hash's fields as text."""
    ok, value = entry.value()
    return {
        "agent": entry.agent,
        "key": entry.key,
        "redis_key": entry.redis_key,
        "version": entry.version,
        "write": entry.write,
        "ttl_s": entry.ttl_s,
        "value": value if ok else None,
        "fields": {name: _text(raw) for name, raw in sorted(entry.fields.items())},
        "problem": entry.problem or None,
    }


async def _read(
    s: MeshSettings, workflow: str, agent: str | None
) -> tuple[list[Entry], list[ConversationEntry]]:
    redis = connect(s.redis_url, retry_s=s.redis_retry_s, **admin_login(s).redis_options())
    try:
        values = await read_memory(redis, s.subject_prefix, workflow, agent)
        return values, await read_conversations(redis, s.subject_prefix, workflow, agent)
    finally:
        await redis.aclose()


def memory(
    workflow: str = typer.Argument(..., help="workflow id (printed by publish and demo)"),
    agent: str | None = typer.Argument(None, help="only this agent's memory"),
    as_json: bool = typer.Option(False, "--json", help="every key and field as JSON"),
    width: int = typer.Option(VALUE_LIMIT, min=20, help="characters of a value shown"),
) -> None:
    """Show a workflow's working memory: each agent's keys, values, versions and the
    fields Redis holds, and its conversations (read as the admin)."""
    if not is_token(workflow):
        raise typer.BadParameter("not a workflow id (A-Z a-z 0-9 _ -)", param_hint="WORKFLOW")
    if agent is not None and not is_token(agent):
        raise typer.BadParameter("not an agent name (A-Z a-z 0-9 _ -)", param_hint="AGENT")
    s = settings()
    try:
        entries, conversations = run_async(_read(s, workflow, agent))
    except RedisError as exc:
        err_console.print(
            f"[red]error:[/red] Redis at {markup(s.redis_url)}: {markup(exc)}", highlight=False
        )
        raise typer.Exit(1) from None
    if as_json:
        out = {
            "workflow": workflow,
            "memory": [entry_json(e) for e in entries],
            "conversations": [conversation_json(c) for c in conversations],
        }
        sys.stdout.write(json.dumps(out, indent=2, ensure_ascii=True) + "\n")
        if not entries and not conversations:
            raise typer.Exit(1)
        return
    if not entries and not conversations:
        whose = f" of agent {markup(agent)}" if agent else ""
        console.print(f"no working memory{whose} for workflow {markup(workflow)}", highlight=False)
        raise typer.Exit(1)
    console.print(Text.assemble("workflow ", (workflow, "bold")), highlight=False)
    for owner in sorted({e.agent for e in entries} | {c.agent for c in conversations}):
        console.print(Text("agent " + plain(owner, limit=80), "bold cyan"))
        values = [e for e in entries if e.agent == owner]
        pad = min(32, max((len(plain(e.key, limit=80)) for e in values), default=0))
        lines = [line for e in values for line in entry_lines(e, width=width, pad=pad)]
        for c in conversations:
            if c.agent == owner:
                lines += conversation_lines(c, width=width)
        for line in lines:
            console.print(line, highlight=False, soft_wrap=True)
