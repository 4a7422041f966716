"""subjects/README.md on servers that enforce a policy, as `jetmesh up` starts them: the
files it writes have the formats the README gives, and an outside ingress role that
follows "Publishing on servers that enforce a policy" with nothing but its own files (its
key, certificate, root key and nkey seed) and plain JSON, Ed25519 and NATS requests
publishes a task that is answered, reads its certificate from the registry and its
workflow's events by direct get, and may not ask ``$JS.API.INFO``."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import re
import stat
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import msgspec
import nats
import nkeys
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from nats.aio.client import Client as NATS

from jetmesh.envelope import new_id
from jetmesh.events import Event
from jetmesh.identity.delegation import digest, mint_link
from jetmesh.identity.keys import KeyPair
from jetmesh.identity.tokens import mint_token
from jetmesh.policy import parse_policy
from tests.harness.mesh import WAIT_S, EchoAgent
from tests.harness.secured import SecuredMesh

pytestmark = pytest.mark.integration

ROLE = "acme-ingest"
STORED_AT = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z")
POLICY = {
    "roles": {
        ROLE: {"ingress": True, "calls": ["echo"], "scopes": ["kb:read"]},
        "echo": {},
    }
}
"""The README's example role, calling ``echo``."""


README = Path(__file__).resolve().parents[2] / "subjects" / "README.md"


def b64d(text: str) -> bytes:
    assert "=" not in text, "base64url without padding"
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def b64e(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def raw_public(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def kid_of(owner: str, public: bytes) -> str:
    return f"{owner}-{hashlib.sha256(public).hexdigest()[:16]}"


def two_lines(path: Path) -> tuple[str, bytes]:
    """A ``.pub`` or ``.key`` file: the owner, then 32 bytes in base64url."""
    lines = path.read_text().splitlines()
    assert len(lines) == 2, path
    raw = b64d(lines[1])
    assert len(raw) == 32, path
    return lines[0], raw


@pytest.fixture
async def route(tmp_path: Path) -> AsyncIterator[SecuredMesh]:
    built = await asyncio.to_thread(SecuredMesh(tmp_path / "state", parse_policy(POLICY)).up)
    try:
        await built.start_replicas(EchoAgent().agent)
        yield built
    finally:
        try:
            await built.aclose()
        finally:
            await asyncio.to_thread(built.down)


def test_the_files_jetmesh_up_writes_have_the_formats_the_readme_gives(
    route: SecuredMesh,
) -> None:
    keys = route.settings.resolved_keys_dir
    (root_file,) = sorted((keys / "roots").iterdir())
    owner, root_public = two_lines(root_file)
    assert owner == "root"
    assert root_file.name == f"{kid_of('root', root_public)}.pub"
    assert two_lines(keys / "root.key")[0] == "root"

    for role in (ROLE, "echo"):
        owner, seed = two_lines(keys / f"{role}.key")
        assert owner == role
        assert stat.S_IMODE((keys / f"{role}.key").stat().st_mode) == 0o600
        public = raw_public(Ed25519PrivateKey.from_private_bytes(seed))
        (certificate,) = (keys / f"{role}.cert").read_text().splitlines()
        header_part, claims_part, signature = certificate.split(".")
        header = json.loads(b64d(header_part))
        assert header == {"alg": "EdDSA", "typ": "jetmesh-cert+jwt", "kid": root_file.stem}
        Ed25519PublicKey.from_public_bytes(root_public).verify(
            b64d(signature), f"{header_part}.{claims_part}".encode()
        )  # raises when the root did not sign it
        claims = json.loads(b64d(claims_part))
        assert (claims["sub"], b64d(claims["pub"])) == (role, public)
        assert claims["kid"] == kid_of(role, public)
        assert claims.get("ingress", False) is (role == ROLE)

        (seed_line,) = (keys / "nats" / f"{role}.nk").read_text().splitlines()
        assert seed_line.startswith("SU")
        assert nkeys.from_seed(bytearray(seed_line.encode())).public_key.startswith(b"U")
    assert (keys / "redis" / "echo.pass").read_text().strip()
    assert not (keys / "redis" / f"{ROLE}.pass").exists(), "an ingress has no Redis user"


async def connect_as_role(route: SecuredMesh) -> NATS:
    seed = (route.settings.resolved_keys_dir / "nats" / f"{ROLE}.nk").read_text().strip()
    return await nats.connect(
        route.settings.nats_url, nkeys_seed_str=seed, inbox_prefix=f"_INBOX.{ROLE}"
    )


async def api(nc: NATS, subject: str, body: dict[str, Any]) -> Any:
    """A JetStream API request with a JSON body, answered on the role's inbox."""
    return await nc.request(subject, json.dumps(body).encode(), timeout=WAIT_S)


def sealed_task(key_file: Path, reply_to: str) -> tuple[str, bytes, dict[str, str]]:
    """A task to ``echo`` built as the README says, signed with plain Ed25519: its id, its
    bytes and its headers."""
    owner, seed = two_lines(key_file)
    key = KeyPair(owner, seed)
    token = mint_token(key, subject="alice", tenant="acme", scopes=["kb:read"], ttl_s=600)
    token_claims = json.loads(b64d(token.split(".")[1]))
    task_id = new_id()
    link = mint_link(
        key,
        to="echo",
        workflow=task_id,
        step="echo",
        scopes=token_claims["scopes"],
        expires=token_claims["exp"],
        prev=digest(token),
    )
    envelope = {
        "id": task_id,
        "kind": "task",
        "workflow": task_id,
        "sender": owner,
        "to": "echo",
        "created": time.time(),
        "type": "test.Echo/1",
        "parent": None,
        "step": "echo",
        "reply_to": reply_to,
        "caller": token,
        "chain": [link],
        "deadline": time.time() + 60,
        "v": 1,
        "body": {"text": "hello"},
    }
    data = json.dumps(envelope).encode()
    private = Ed25519PrivateKey.from_private_bytes(seed)
    headers = {
        "Mesh-Sig-Scheme": "ed25519",
        "Mesh-Key": kid_of(owner, raw_public(private)),
        "Mesh-Sig": b64e(private.sign(data)),
        "Nats-Msg-Id": task_id,
    }
    return task_id, data, headers


async def test_an_outside_ingress_follows_the_route(route: SecuredMesh) -> None:
    keys = route.settings.resolved_keys_dir
    nc = await connect_as_role(route)
    try:
        certificate = (keys / f"{ROLE}.cert").read_text().strip()
        kid = json.loads(b64d(certificate.split(".")[1]))["kid"]
        got = await api(
            nc, "$JS.API.STREAM.MSG.GET.KV_MESH_KEYS", {"last_by_subj": f"$KV.MESH_KEYS.{kid}"}
        )
        stored = json.loads(got.data)["message"]
        assert stored["subject"] == f"$KV.MESH_KEYS.{kid}"
        assert base64.b64decode(stored["data"]).decode() == certificate
        missing = await api(
            nc,
            "$JS.API.STREAM.MSG.GET.KV_MESH_KEYS",
            {"last_by_subj": "$KV.MESH_KEYS.nobody-0000000000000000"},
        )
        assert json.loads(missing.data)["error"]["code"] == 404
        with pytest.raises(nats.errors.NoRespondersError):  # the bucket has no direct gets
            await nc.request(f"$JS.API.DIRECT.GET.KV_MESH_KEYS.$KV.MESH_KEYS.{kid}", b"")

        reply_to = f"mesh.agent.{ROLE}.reply.web-1"
        replies = await nc.subscribe(reply_to)
        task_id, data, headers = sealed_task(keys / f"{ROLE}.key", reply_to)
        ack = await nc.request("mesh.agent.echo.task", data, headers=headers, timeout=WAIT_S)
        acked = json.loads(ack.data)
        assert acked["stream"] == "MESH_TASKS"
        assert acked["seq"] >= 1
        assert "duplicate" not in acked

        reply = json.loads((await replies.next_msg(timeout=WAIT_S)).data)
        assert (reply["kind"], reply["to"], reply["parent"]) == ("reply", ROLE, task_id)
        assert reply["body"] == {"text": "HELLO"}
        # matched to the call as step 6 says; the callee copied the task's caller token
        sent = json.loads(data)
        assert (reply["workflow"], reply["step"]) == (sent["workflow"], sent["step"])
        assert (reply["sender"], reply["caller"]) == ("echo", sent["caller"])

        # the workflow's events, by direct get from sequence 1 onwards
        subject, after, kinds = f"mesh.event.{task_id}.>", 0, []
        deadline = time.monotonic() + WAIT_S
        while "completed" not in kinds and time.monotonic() < deadline:
            answer = await api(
                nc,
                "$JS.API.DIRECT.GET.MESH_EVENTS",
                {"seq": after + 1, "next_by_subj": subject},
            )
            headers_got = answer.headers or {}
            if headers_got.get("Status") == "404":
                await asyncio.sleep(0.05)
                continue
            after = int(headers_got["Nats-Sequence"])
            # RFC 3339 in UTC, up to nine digits of a second (what history is judged at)
            assert STORED_AT.fullmatch(headers_got["Nats-Time-Stamp"]), headers_got
            assert headers_got["Nats-Subject"].startswith(f"mesh.event.{task_id}.")
            assert "Mesh-Sig" in headers_got, "a stored event keeps its signature headers"
            event = msgspec.json.decode(json.dumps(json.loads(answer.data)["body"]), type=Event)
            kinds.append(event.kind)
        assert "completed" in kinds, kinds

        with pytest.raises(nats.errors.TimeoutError):
            await nc.request("$JS.API.INFO", b"", timeout=1)
    finally:
        await nc.close()


async def test_a_permissions_violation_is_an_err_line_on_the_raw_protocol(
    route: SecuredMesh,
) -> None:
    """The exact ``-ERR`` lines the README gives, read on the NATS text protocol as a client
    without a NATS library reads them: the connection stays open (the ``PONG`` follows)."""
    url = urlsplit(route.settings.nats_url)
    assert url.hostname is not None
    assert url.port is not None
    reader, writer = await asyncio.open_connection(url.hostname, url.port)
    try:
        line = await asyncio.wait_for(reader.readline(), WAIT_S)
        assert line.startswith(b"INFO ")
        nonce = json.loads(line[5:])["nonce"]
        seed = (route.settings.resolved_keys_dir / "nats" / f"{ROLE}.nk").read_text().strip()
        user = nkeys.from_seed(bytearray(seed.encode()))
        connect = {
            "verbose": False,
            "pedantic": False,
            "protocol": 1,
            "headers": True,
            "nkey": user.public_key.decode(),
            "sig": b64e(user.sign(nonce.encode())),
        }
        writer.write(
            f"CONNECT {json.dumps(connect)}\r\n"
            "PUB mesh.agent.billing.task 2\r\n{}\r\n"
            "SUB mesh.event.> 1\r\n"
            "PING\r\n".encode()
        )
        await writer.drain()
        lines: list[str] = []
        while not lines or lines[-1] != "PONG":
            got = (await asyncio.wait_for(reader.readline(), WAIT_S)).decode().rstrip("\r\n")
            if got == "PING":
                writer.write(b"PONG\r\n")
                continue
            lines.append(got)
    finally:
        writer.close()
        await writer.wait_closed()
    assert lines == [
        """-ERR 'Permissions Violation for Publish to "mesh.agent.billing.task"'""",
        """-ERR 'Permissions Violation for Subscription to "mesh.event.>"'""",
        "PONG",
    ]
    section = README.read_text(encoding="utf-8")
    assert """`-ERR 'Permissions Violation for Publish to "<subject>"'`""" in section
    assert """`-ERR 'Permissions Violation for Subscription to "<subject>"'`""" in section
