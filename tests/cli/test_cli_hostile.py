"""The operator's commands print hostile data as data: rich markup, terminal control
sequences, bidirectional overrides, lone surrogates, bytes that are not UTF-8 and huge
values, in dead letters (headers and bytes) and events, never crash ``jetmesh dlq`` or
``jetmesh events`` and never reach the terminal raw.

A seeded random fuzzer (no extra dependency; the seed is printed on failure) feeds the
renderers thousands of hostile values, then the commands themselves run over dead letters
and events stored on the real servers.
"""

from __future__ import annotations

import asyncio
import io
import json
import math
import random
import socket
import string
import sys
import time
import unicodedata
from urllib.parse import urlparse

import pytest
from rich.console import Console
from rich.text import Text

from jetmesh import events as ev
from jetmesh.cli.dlq import letters_table, show_letter
from jetmesh.cli.events import node_label, raw_line, render
from jetmesh.cli.render import json_text, markup, plain, text
from jetmesh.cli.replay import render_history
from jetmesh.dead_letters import DeadLetter
from jetmesh.envelope import new_id
from jetmesh.event_log import LoggedEvent, TaskNode, build_tree, read_events
from jetmesh.processes import settings_env
from jetmesh.replay import history as read_history
from tests.harness.mesh import EchoAgent, Mesh

SEED = 20240917
ROUNDS = 200

PIECES = (
    "[/dim]",
    "[bold]",
    "[/]",
    "[red]x[/red]",
    "[link=https://evil.example]click[/link]",
    "[@click=app.quit]",
    "[",
    "]",
    "\\",
    "\\[b]",
    "\x1b[2J",
    "\x1b]0;owned\x07",
    "\x1b[31m",
    "\x00",
    "\x07",
    "\r",
    "\n",
    "\t",
    "\x7f",
    "\x9b31m",
    "\x85",
    "\u202e",
    "\u2066",
    "\u200b",
    "\ufeff",
    "\u2028",
    "\ud800",
    "\udcff",
    "é",
    "漢字",
    "👍🏽",
    "e\u0301",
    "%s",
    "{0}",
    "<script>",
)
UNSAFE = {"Cc", "Cf", "Zl", "Zp", "Cs"}


def hostile(rng: random.Random, *, huge: bool = True) -> str:
    parts = [
        rng.choice(PIECES)
        if rng.random() < 0.7
        else rng.choice(string.printable) * rng.randint(1, 5)
        for _ in range(rng.randint(1, 12))
    ]
    value = "".join(parts)
    if huge and rng.random() < 0.03:
        value *= 20_000 // max(1, len(value))
    return value


def printed(*renderables: object) -> str:
    """What a console that is not a terminal prints (no styles, nothing to hide them)."""
    out = io.StringIO()
    console = Console(file=out, width=160, force_terminal=False, color_system=None)
    for renderable in renderables:
        console.print(renderable)
    return out.getvalue()


def assert_safe(out: str) -> None:
    bad = {repr(ch) for ch in out if ch != "\n" and unicodedata.category(ch) in UNSAFE}
    assert not bad, f"printed raw: {sorted(bad)}"


def _letter(rng: random.Random) -> DeadLetter:
    h = hostile
    data = rng.choice(
        [
            h(rng).encode("utf-8", "surrogatepass"),
            bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 64))),
            json.dumps({h(rng, huge=False): h(rng)}, ensure_ascii=rng.random() < 0.5).encode(
                "utf-8", "surrogatepass"
            ),
        ]
    )
    return DeadLetter(
        seq=rng.randint(0, 2**63),
        agent=h(rng),
        reason=h(rng),
        detail=h(rng),
        subject=h(rng),
        at=rng.choice([0.0, -1.0, 1e20, math.nan, math.inf, time.time()]),
        data=data,
        headers={h(rng, huge=False): h(rng) for _ in range(rng.randint(0, 4))},
        stored_on=h(rng),
    )


def _node(rng: random.Random, depth: int = 0) -> TaskNode:
    h = hostile
    node = TaskNode(
        task=h(rng),
        parent=h(rng),
        agent=h(rng),
        step=h(rng),
        type=h(rng),
        caller=h(rng),
        duration_ms=rng.choice([None, 1.5, math.nan, 1e300]),
        status=rng.choice(["completed", "failed", h(rng)]),
        verified=rng.random() < 0.5,
        attempts=rng.randint(0, 9),
        detail=h(rng),
        notes=[h(rng) for _ in range(rng.randint(0, 3))],
    )
    if depth < 2:
        node.children = [_node(rng, depth + 1) for _ in range(rng.randint(0, 2))]
    return node


def _event(rng: random.Random) -> LoggedEvent:
    h = hostile
    event = ev.Event(
        kind=rng.choice([*ev.KINDS, h(rng)]),
        agent=h(rng),
        at=rng.choice([0.0, time.time(), 1e30]),
        step=h(rng),
        model=h(rng),
        tokens_in=rng.randint(0, 10),
        tokens_out=rng.randint(0, 10),
    )
    return LoggedEvent(event, h(rng), h(rng), rng.random() < 0.5, problem=h(rng))


def test_renderers_print_hostile_values_as_data() -> None:
    rng = random.Random(SEED)
    for round_ in range(ROUNDS):
        value = hostile(rng)
        try:
            assert_safe(printed(text(value), markup(value), Text(plain(value, lines=True))))
            assert_safe(printed(json_text(json.dumps([value]).encode()) or ""))
            letters = [_letter(rng) for _ in range(rng.randint(1, 3))]
            assert_safe(printed(letters_table(letters)))
            out = io.StringIO()
            show_letter(letters[0], Console(file=out, width=160, color_system=None))
            assert_safe(out.getvalue())
            root = _node(rng)
            assert_safe(printed(node_label(root), render(value, [root]), raw_line(_event(rng))))
        except Exception as exc:
            raise AssertionError(f"seed {SEED}, round {round_}: {value!r}") from exc


def test_markup_in_values_is_shown_literally() -> None:
    node = TaskNode(task="t", agent="[/dim]kb", detail="[bold]refund[/bold] [/dim]", notes=["[/]"])
    out = printed(node_label(node), render("[red]wf", [node]))
    assert "[/dim]kb" in out
    assert "[bold]refund[/bold] [/dim]" in out
    assert "[red]wf" in out
    assert plain("\x1b[2J") == "\\x1b[2J"
    assert markup("[/dim]") == "\\[/dim]"


# -- on the servers ------------------------------------------------------------------------


def _raw_hpub(url: str, subject: str, headers: bytes, payload: bytes) -> None:
    """Publish with header bytes as they are (not UTF-8, say), as any client can."""
    parsed = urlparse(url)
    block = b"NATS/1.0\r\n" + headers + b"\r\n"
    with socket.create_connection((parsed.hostname, parsed.port), timeout=5) as sock:
        sock.recv(4096)  # INFO
        sock.sendall(b'CONNECT {"verbose":false,"headers":true,"protocol":1}\r\n')
        command = f"HPUB {subject} {len(block)} {len(block) + len(payload)}\r\n".encode()
        sock.sendall(command + block + payload + b"\r\nPING\r\n")
        assert b"PONG" in sock.recv(4096)


async def _cli(mesh: Mesh, *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "jetmesh.cli",
        *args,
        env=settings_env(mesh.settings),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()  # strict: all UTF-8


@pytest.mark.integration
async def test_dlq_commands_show_hostile_dead_letters(mesh: Mesh) -> None:
    rng = random.Random(SEED + 1)
    await mesh.start_replicas(EchoAgent("echo").agent)
    client = await mesh.ingress()
    sealed = mesh.seal({"text": "x"}, to="echo", token=mesh.token(), type_="test.Echo/1")
    attacker = await mesh.attacker()
    # Refused by the replica (unknown key): its non-ASCII Mesh-Key is kept in the dead letter.
    await attacker.publish(
        mesh.subjects.task("echo"), sealed.data, {**sealed.headers, "Mesh-Key": "clé-[/dim]\u202e"}
    )
    (refused,) = await mesh.wait_dead_letters("echo", "unknown-key")
    # Stored straight on a dead-letter subject: not UTF-8, control bytes, markup, huge.
    dlq = mesh.subjects.dlq("echo")
    for n in range(12):
        value = (
            hostile(rng).encode("utf-8", "surrogatepass").replace(b"\r", b"").replace(b"\n", b"")
        )
        headers = (
            b"Mesh-Dlq-Agent: " + value[:3000] + b"\r\n"
            b"Mesh-Dlq-Reason: [/dim]\xff\xfe\r\n"
            b"Mesh-Dlq-Detail: \x1b[2J" + value[:200] + b"\r\n"
            b"Mesh-Dlq-Time: " + value[:20] + b"\r\n"
            b"Mesh-Key: k\xc3\xa9y\xc0\r\n"
            b"X-[/dim]: \x9b31m\r\n" + f"Nats-Msg-Id: hostile-{n}\r\n".encode()
        )
        payload = rng.choice(
            [value, json.dumps({"a": hostile(rng)}).encode("utf-8", "surrogatepass")]
        )
        _raw_hpub(mesh.settings.nats_url, dlq, headers, payload)
    for _ in range(100):  # stored by the stream after the server read them
        if len(await mesh.dead_letters("echo")) == 13:
            break
        await asyncio.sleep(0.05)
    assert len(await mesh.dead_letters("echo")) == 13

    code, out, err = await _cli(mesh, "dlq", "list")
    assert code == 0, err
    assert "13 dead letter(s)" in out
    assert "[/dim]" in out
    assert_safe(out)
    for letter in (await mesh.dead_letters("echo"))[:4]:  # the refused one, then 3 planted
        code, out, err = await _cli(mesh, "dlq", "show", str(letter.seq))
        assert code == 0, err
        assert_safe(out)
        if letter.seq == refused.seq:
            assert "clé-[/dim]\\u202e" in out
    await client.flush_events()


def _utf8(value: str) -> str:
    """``value`` without lone surrogates: JSON events cannot carry them (msgspec refuses)."""
    return value.encode("utf-8", "replace").decode()


@pytest.mark.integration
async def test_events_and_replay_show_hostile_events(mesh: Mesh) -> None:
    rng = random.Random(SEED + 2)

    def hostile_text() -> str:
        return _utf8(hostile(rng))

    client = await mesh.ingress()
    workflow = new_id()
    task = new_id()
    for n in range(15):
        await client.emit(
            workflow,
            ev.Event(
                kind=ev.FAILED if n == 0 else rng.choice([ev.STARTED, ev.RETRIED, "custom"]),
                agent=client.name if n % 3 != 1 else hostile_text(),  # some forged
                at=time.time(),
                task=task,
                step="s",
                type=hostile_text(),
                reason=hostile_text(),
                detail=f"[/dim] {hostile_text()}" if n else "[/dim] it failed [bold]",
                key=hostile_text(),
                target=hostile_text(),
                model=hostile_text(),
            ),
            caller="",
        )
    await client.flush_events()
    assert len(await read_events(client, workflow)) == 15
    assert_safe(printed(render(workflow, build_tree(await read_events(client, workflow)))))
    assert_safe(printed(render_history(await read_history(client, workflow))))

    for args in (("events", workflow), ("events", workflow, "--raw"), ("replay", workflow)):
        code, out, err = await _cli(mesh, *args)
        assert code == 0, f"{args}: {err}"
        assert_safe(out)
    code, out, _ = await _cli(mesh, "events", workflow)
    assert "[/dim]" in out, "markup in an event is shown as text"
