"""``jetmesh publish``: send a task as a caller and wait for the result, or send raw bytes
to a role's task subject to see how the mesh refuses them (``--raw``).

Before anything is sent, the role is checked against what the ``cli`` may call: the
policy file's ``calls`` (``JETMESH_POLICY_FILE``), and the ``cli``'s certificate, which the
admin step issued from the policy the servers enforce. A role outside them fails at once
with :class:`~jetmesh.PublishRefused`; so does a publish nats-server refuses (a permissions
violation, as on servers started with another policy), instead of waiting for a reply that
cannot come. A failed task still prints its workflow id.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import msgspec
import typer
from rich.text import Text

from .._exceptions import PublishRefused
from ..client import MeshClient
from ..envelope import new_id
from ..logins import admin_login
from ..policy import mesh_policy
from ..runtime.streaming import Chunk, StreamingCall, stream_request
from ..settings import MeshSettings
from .common import console, err_console, run_async, settings
from .ingress import cli_client
from .render import json_text, markup, plain, text

T = TypeVar("T")

PERMISSIONS_VIOLATION = "permissions violation"
"""What nats-server's error says when it refuses a client a subject (lowercased)."""

_REFUSED_SUBJECT = re.compile(r'for (?:publish|subscription) to "([^"]+)"', re.IGNORECASE)


def check_may_call(mesh: MeshClient, agent: str) -> None:
    """Refuse a task to ``agent`` that the ``cli`` may not send, before sending it.

    Raises:
        PublishRefused: the policy file in force (``settings.policy_file``) does not list
            ``agent`` in the ``cli``'s ``calls``, or the ``cli``'s certificate does not let
            it send tasks there.
        PolicyError: the policy file does not validate.
    """
    s = mesh.settings
    subject = mesh.subjects.task(agent)
    if s.policy_file is not None:
        grant = mesh_policy(s.policy_file).roles.get(mesh.name)
        calls = sorted(grant.calls) if grant is not None else []
        if agent not in calls:
            raise PublishRefused(
                mesh.name,
                subject,
                f"{agent!r} is not among the roles {mesh.name} calls in {s.policy_file} "
                f"({', '.join(calls) or 'none'})",
            )
    if not mesh.certificate.may_publish(subject):
        here = s.policy_file or "none: the library's roles alone"
        raise PublishRefused(
            mesh.name,
            subject,
            f"its certificate does not name {agent!r} among the roles it calls (the admin "
            f"step issued it from the policy it was given; JETMESH_POLICY_FILE here: {here}); "
            f"add {agent!r} to roles.{mesh.name}.calls and run `jetmesh admin provision`",
        )


async def refused_fast(
    listeners: list[Callable[[Exception], None]], work: Awaitable[T], identity: str, subject: str
) -> T:
    """Await ``work``, or raise as soon as nats-server reports a permissions violation on
    the connection whose error ``listeners`` these are (``MeshClient.error_listeners``).
    nats-py reports that error to the connection's error callback only, and the refused
    publish then waits for an ack or a reply that never comes.

    Raises:
        PublishRefused: nats-server refused a publish or subscription of the connection
            first (on the subject its error names, else ``subject``).
    """
    refusal: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    def on_error(exc: Exception) -> None:
        if PERMISSIONS_VIOLATION in str(exc).lower() and not refusal.done():
            refusal.set_result(str(exc))

    listeners.append(on_error)
    task = asyncio.ensure_future(work)
    try:
        either: list[asyncio.Future[Any]] = [task, refusal]
        await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            return task.result()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        said = refusal.result()
        named = _REFUSED_SUBJECT.search(said)
        # nats-py lowercases the server's error: keep ``subject``'s case when it is the one
        refused = named.group(1) if named and named.group(1) != subject.lower() else subject
        raise PublishRefused(identity, refused, f"nats-server refused it ({said})")
    finally:
        listeners.remove(on_error)
        if not task.done():
            task.cancel()


def _login_note(s: MeshSettings) -> str:
    return "as the cli's login" if admin_login(s).user is not None else "on open servers"


def _raw_bytes(body: str) -> bytes:
    if body.startswith("@"):
        try:
            return Path(body[1:]).read_bytes()
        except OSError as exc:
            raise typer.BadParameter(f"cannot read {body[1:]}: {exc}") from None
    return body.encode()


def _headers(given: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in given:
        name, sep, value = item.partition(":")
        if not sep or not name.strip():
            raise typer.BadParameter(f"--header {item!r}: expected NAME:VALUE")
        out[name.strip()] = value.strip()
    return out


def publish_raw(
    s: MeshSettings, agent: str, data: bytes, *, sign: bool, drop: list[str], add: dict[str, str]
) -> tuple[str, dict[str, str]]:
    """Send ``data`` as it is to ``agent``'s task subject as the ``cli`` (signed over the
    exact bytes unless ``sign`` is False, then the ``drop`` headers removed and ``add``
    set) and wait until the tasks stream stored it. Returns the subject and the headers
    sent. A replica of ``agent`` verifies it first and dead-letters what it refuses.

    Raises:
        PublishRefused: the ``cli`` may not send tasks to ``agent`` (nothing sent), or
            nats-server refused the publish.
    """

    async def go() -> tuple[str, dict[str, str]]:
        async with cli_client(s) as mesh:
            check_may_call(mesh, agent)
            subject = mesh.subjects.task(agent)
            headers = mesh.signer.headers(data) if sign else {}
            headers = {k: v for k, v in headers.items() if k not in drop} | add
            await refused_fast(
                mesh.error_listeners, mesh.store(subject, data, headers), mesh.name, subject
            )
            return subject, headers

    return run_async(go())


class ChunkPrinter:
    """Prints streamed chunks as they come: text as it is (no line break added), anything
    else as a line of JSON, on a line of its own."""

    def __init__(self) -> None:
        self.mid_line = False
        """Text was printed that did not end its line."""

    def show(self, chunk: Chunk) -> None:
        value = chunk.value
        if isinstance(value, str):
            console.print(Text(plain(value, lines=True)), end="", soft_wrap=True)
            if value:
                self.mid_line = not value.endswith("\n")
            return
        self.end_line()
        console.print(text(bytes(chunk.raw)), soft_wrap=True)

    def end_line(self) -> None:
        """Break the line if text left it open."""
        if self.mid_line:
            console.print()
            self.mid_line = False


def publish(
    agent: str = typer.Argument(..., help="the agent role to send the task to"),
    body: str = typer.Argument(
        ..., help="the task body, as JSON (with --raw: the bytes to send, or @FILE)"
    ),
    type_: str = typer.Option("", "--type", help="payload type name, e.g. Ticket"),
    caller: str = typer.Option("cli-user", "--as", help="caller subject for the token"),
    tenant: str = typer.Option("default", help="caller tenant"),
    scope: list[str] = typer.Option([], help="caller scope (repeatable)"),
    token: str = typer.Option("", help="use this caller token instead of minting one"),
    timeout: float = typer.Option(30.0, help="seconds to wait for the result"),
    raw: bool = typer.Option(
        False,
        "--raw",
        help="send BODY's bytes as they are, no envelope, signed by the cli unless "
        "--unsigned; print what was sent and wait for no reply (to test how a role refuses "
        "a message: see `jetmesh dlq list`)",
    ),
    unsigned: bool = typer.Option(False, "--unsigned", help="with --raw: no signature headers"),
    drop_header: list[str] = typer.Option(
        [], "--drop-header", help="with --raw: leave out this header, e.g. Mesh-Sig (repeatable)"
    ),
    header: list[str] = typer.Option(
        [], "--header", help="with --raw: send this NAME:VALUE header too (repeatable)"
    ),
    stream: bool = typer.Option(
        False,
        "--stream",
        help="print the chunks the role streams as they come, then the result "
        "(`jetmesh events WORKFLOW` counts them per step)",
    ),
) -> None:
    """Start a workflow: mint a caller token (or use --token), send BODY to AGENT, print the
    reply and the workflow id (see `jetmesh events <workflow>`). A role the cli may not call
    fails at once; a failed task prints its workflow id too. With --raw, send BODY's bytes
    as they are (a malformed or unsigned message, to test a mesh's refusals)."""
    s = settings()
    if raw:
        data = _raw_bytes(body)
        subject, sent = publish_raw(
            s,
            agent,
            data,
            sign=not unsigned,
            drop=drop_header,
            add=_headers(header),
        )
        shown = ", ".join(sorted(sent)) or "none"
        console.print(
            f"sent {len(data)} bytes to {markup(subject)} ({_login_note(s)}), "
            f"headers: {markup(shown)}",
            highlight=False,
            soft_wrap=True,
        )
        console.print(
            f"a replica of {markup(agent)} verifies it first; what it refuses is in "
            f"`jetmesh dlq list --agent {markup(agent)}`",
            highlight=False,
            soft_wrap=True,
        )
        return
    try:
        decoded = msgspec.Raw(msgspec.json.encode(msgspec.json.decode(body)))
    except msgspec.DecodeError as exc:
        raise typer.BadParameter(f"body is not JSON: {exc}") from None
    workflow = new_id()
    sending = {"started": False}
    printer = ChunkPrinter()

    async def go() -> bytes:
        async with cli_client(s) as mesh:
            check_may_call(mesh, agent)
            tok = token or mesh.mint_token(caller, tenant=tenant, scopes=scope)
            sending["started"] = True
            work: Awaitable[msgspec.Raw]
            if stream:
                work = _streamed(
                    printer,
                    stream_request(
                        mesh,
                        agent,
                        decoded,
                        token=tok,
                        returns=msgspec.Raw,
                        timeout=timeout,
                        workflow=workflow,
                        type_=type_,
                    ),
                )
            else:
                work = mesh.request(
                    agent,
                    decoded,
                    token=tok,
                    returns=msgspec.Raw,
                    timeout=timeout,
                    workflow=workflow,
                    type_=type_,
                )
            result = await refused_fast(
                mesh.error_listeners, work, mesh.name, mesh.subjects.task(agent)
            )
            return bytes(result)

    try:
        result = run_async(go())
    except typer.Exit:
        printer.end_line()
        where = (
            f"see `jetmesh events {workflow}` and `jetmesh dlq list`"
            if sending["started"]
            else "nothing sent"
        )
        err_console.print(f"workflow {workflow} ({where})", highlight=False, soft_wrap=True)
        raise
    printer.end_line()
    console.print(json_text(result) or text(result), soft_wrap=True)
    console.print(f"workflow {workflow}")


async def _streamed(printer: ChunkPrinter, call: StreamingCall[msgspec.Raw]) -> msgspec.Raw:
    """Print the call's chunks as they come; its result."""
    async for chunk in call:
        printer.show(chunk)
    return await call.result()
