"""Callers authenticated by JWTs of a configured issuer, its JWKS served by a loopback
HTTP server of the test: each bad token is a 401 with its reason and never reaches the
mesh."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pydantic
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from jetmesh.bus import read_from
from services.gateway import GatewaySettings, JwtIssuer
from services.gateway.auth import JwksKeys
from tests.harness.secured import SecuredMesh
from tests.services.gateway.conftest import Served, serve

pytestmark = pytest.mark.integration

ISSUER = "https://id.example.test/"
AUDIENCE = "jetmesh"


class Jwks:
    """A JWKS on a loopback HTTP server, counting its fetches."""

    def __init__(self) -> None:
        self.keys: list[dict[str, Any]] = []
        self.fetches = 0
        jwks = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                jwks.fetches += 1
                data = json.dumps({"keys": jwks.keys}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/jwks.json"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def publish(self, kid: str, key: Any, alg: str | None = None) -> None:
        jwk = json.loads(
            jwt.algorithms.get_default_algorithms()[alg or "RS256"].to_jwk(key.public_key())
        )
        jwk["kid"] = kid
        if alg:
            jwk["alg"] = alg
        self.keys.append(jwk)


@pytest.fixture
def jwks() -> Iterator[Jwks]:
    served = Jwks()
    served.thread.start()
    try:
        yield served
    finally:
        served.server.shutdown()
        served.server.server_close()
        served.thread.join()


RSA = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER_RSA = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC = ec.generate_private_key(ec.SECP256R1())


def token(key: Any = RSA, alg: str = "RS256", kid: str = "k1", **claims: Any) -> str:
    now = int(time.time())
    body = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "carol",
        "tenant": "globex",
        "scope": "kb:read orders:write",
        "iat": now,
        "exp": now + 300,
    } | claims
    return jwt.encode(body, key, algorithm=alg, headers={"kid": kid})


@pytest.fixture
async def jwt_served(enforced: SecuredMesh, jwks: Jwks) -> AsyncIterator[Served]:
    jwks.publish("k1", RSA)
    jwks.publish("k2", EC, "ES256")
    issuer = JwtIssuer(
        issuer=ISSUER, audience=AUDIENCE, jwks_url=jwks.url, leeway_s=0, refetch_floor_s=3600
    )
    s = await serve(enforced, GatewaySettings(jwt=issuer))
    try:
        yield s
    finally:
        await s.http.aclose()
        await s.gateway.close()


async def accepted_count(served: Served) -> int:
    mesh = served.gateway.door.mesh
    subject = f"{mesh.subjects.prefix}.event.*.accepted"
    return len([m async for m in read_from(mesh, mesh.settings.events_stream, subject)])


async def test_a_valid_jwt_starts_a_workflow_for_its_claims(jwt_served: Served) -> None:
    for kid, key, alg in (("k1", RSA, "RS256"), ("k2", EC, "ES256")):
        r = await jwt_served.post(
            "echo", {"text": "hi"}, key=token(key, alg, kid), headers={"Prefer": "wait=10"}
        )
        assert r.status_code == 200, r.text
        assert r.json()["result"] == {
            "text": "HI",
            "caller": "carol",
            "tenant": "globex",
            "scopes": ["kb:read", "orders:write"],
        }


def _none_token() -> str:
    return jwt.encode(
        {"iss": ISSUER, "aud": AUDIENCE, "sub": "carol", "exp": 2**40},
        None,
        algorithm="none",
        headers={"kid": "k1"},
    )


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda: token(exp=int(time.time()) - 60), "token-expired"),
        (lambda: token(iss="https://evil.test/"), "wrong-issuer"),
        (lambda: token(aud="someone-else"), "wrong-audience"),
        (lambda: token(kid="k9"), "unknown-key"),
        (_none_token, "algorithm-refused"),
        (lambda: token(OTHER_RSA), "bad-signature"),
        (lambda: token(EC, "ES256", "k1"), "algorithm-refused"),
        (lambda: token(RSA, "RS256", "k2"), "algorithm-refused"),
        (lambda: token(sub=""), "claims-invalid"),
        (lambda: "a.b.c", "token-malformed"),
    ],
)
async def test_a_bad_jwt_is_a_401_with_its_reason_and_never_reaches_the_mesh(
    jwt_served: Served, make: Any, reason: str
) -> None:
    before = await accepted_count(jwt_served)
    r = await jwt_served.post("echo", {"text": "x"}, key=make())
    assert r.status_code == 401, r.text
    assert r.json()["reason"] == reason
    assert r.headers["content-type"] == "application/problem+json"
    assert await accepted_count(jwt_served) == before


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


async def test_hmac_with_the_public_key_is_refused(jwt_served: Served, jwks: Jwks) -> None:
    """The classic confusion: HS256 keyed with the issuer's public key, which anyone may
    read from the JWKS."""
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": "carol", "exp": 2**40}
    signing = _b64(json.dumps({"alg": "HS256", "kid": "k1", "typ": "JWT"}).encode())
    signing += "." + _b64(json.dumps(claims).encode())
    secret = json.dumps(jwks.keys[0]).encode()
    mac = hmac.new(secret, signing.encode(), hashlib.sha256).digest()
    r = await jwt_served.post("echo", {"text": "x"}, key=f"{signing}.{_b64(mac)}")
    assert (r.status_code, r.json()["reason"]) == (401, "algorithm-refused")


async def test_an_unknown_kid_refetches_the_jwks_at_most_once_per_floor(jwks: Jwks) -> None:
    jwks.publish("k1", RSA)
    now = [0.0]
    keys = JwksKeys(jwks.url, floor_s=30.0, clock=lambda: now[0])
    assert (await keys.key("k1")).key_id == "k1"
    assert jwks.fetches == 1
    for _ in range(3):
        with pytest.raises(Exception, match="unknown-key"):
            await keys.key("k2")
    assert jwks.fetches == 1  # within the floor: not fetched again
    jwks.publish("k2", EC, "ES256")
    now[0] = 31.0
    assert (await keys.key("k2")).key_id == "k2"
    assert jwks.fetches == 2
    assert (await keys.key("k1")).key_id == "k1"
    assert jwks.fetches == 2


async def test_an_unreachable_jwks_is_a_503(jwks: Jwks) -> None:
    keys = JwksKeys("http://127.0.0.1:9/none.json", floor_s=0)
    with pytest.raises(Exception, match="jwks-unavailable"):
        await keys.key("k1")


@pytest.mark.parametrize("algorithms", [["none"], ["HS256"], ["RS256", "HS512"], []])
def test_symmetric_and_none_algorithms_are_refused_in_the_config(algorithms: list[str]) -> None:
    with pytest.raises(pydantic.ValidationError, match="refused"):
        JwtIssuer(
            issuer=ISSUER, audience=AUDIENCE, jwks_url="http://x", algorithms=tuple(algorithms)
        )
