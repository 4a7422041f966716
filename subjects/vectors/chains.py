"""``chains.json``: tasks carrying a delegation chain, link by link, valid and refused."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any, Final

import msgspec

from jetmesh.envelope import Envelope, encode
from jetmesh.identity import (
    KeyPair,
)

from .common import (
    GATEWAY,
    KB,
    LIMITS,
    NOW,
    PREFIX,
    ROOT,
    WORKFLOW,
    Case,
    b64e,
    caller_token,
    case,
    certificate,
    file_header,
    seed,
    signed,
    ulid,
)

TRIAGE: Final = KeyPair("triage", seed("triage"))
LINK_TYPE: Final = "mesh-delegation+jwt"


def link(
    key: KeyPair,
    *,
    to: str,
    step: str,
    scopes: Sequence[str],
    prev: str,
    expires: int = NOW + 1800,
    workflow: str = WORKFLOW,
    iss: str | None = None,
) -> str:
    """A delegation link as ``jetmesh.identity.delegation.mint_link`` writes it."""
    header = {"alg": "EdDSA", "kid": key.kid, "typ": LINK_TYPE}
    claims = {
        "iss": iss or key.owner,
        "to": to,
        "wf": workflow,
        "step": step,
        "scopes": sorted(set(scopes)),
        "iat": NOW - 30,
        "exp": expires,
        "prev": prev,
    }
    signing_input = f"{b64e(msgspec.json.encode(header))}.{b64e(msgspec.json.encode(claims))}"
    signature = key.signing_key().sign(signing_input.encode()).signature
    return f"{signing_input}.{b64e(signature)}"


def digest(text: str) -> str:
    """The ``prev`` of the link after ``text`` (a link, or the caller token for link 0)."""
    return b64e(hashlib.sha256(text.encode()).digest())


def chains() -> dict[str, Any]:
    registry = {
        GATEWAY.kid: certificate(GATEWAY, ingress=True, n=5),
        TRIAGE.kid: certificate(TRIAGE, n=6),
        KB.kid: certificate(KB, n=2),
    }
    token = caller_token(GATEWAY, scopes=["kb:read", "refund:write"])
    cases: list[Case] = []
    scopes0 = ["kb:read", "refund:write"]
    link0 = link(GATEWAY, to="triage", step="triage", scopes=scopes0, prev=digest(token))

    def task(
        name: str,
        chain: Sequence[str],
        reason: str | None,
        *,
        sender: KeyPair = TRIAGE,
        to: str = "billing",
        step: str = "triage/billing.1",
        note: str = "",
    ) -> None:
        n = 40 + len(cases)
        data = encode(
            Envelope(
                id=ulid(n),
                kind="task",
                workflow=WORKFLOW,
                sender=sender.owner,
                to=to,
                created=float(NOW - 1),
                step=step,
                caller=token,
                chain=tuple(chain),
            )
        )
        cases.append(
            case(
                name,
                data,
                signed(data, sender, ulid(n)),
                reason,
                subject=f"{PREFIX}.agent.{to}.task",
                note=note,
            )
        )

    def link1(**fields: Any) -> str:
        values: dict[str, Any] = {
            "to": "billing",
            "step": "triage/billing.1",
            "scopes": ["kb:read"],
            "prev": digest(link0),
        }
        values.update(fields)
        key = values.pop("key", TRIAGE)
        return str(link(key, **values))

    task(
        "one-link",
        [link0],
        None,
        sender=GATEWAY,
        to="triage",
        step="triage",
        note="the ingress hands the task to triage",
    )
    task("two-links", [link0, link1()], None, note="gateway -> triage -> billing, narrowed")
    task(
        "prev-digest-wrong",
        [link0, link1(prev=digest(token))],
        "bad-delegation",
        note="link 1's prev is the token's digest, not link 0's",
    )
    task(
        "link0-prev-wrong",
        [
            link(GATEWAY, to="triage", step="triage", scopes=scopes0, prev=digest("another token")),
            link1(),
        ],
        "bad-delegation",
        note="link 0 does not follow the caller token",
    )
    narrow0 = link(GATEWAY, to="triage", step="triage", scopes=["kb:read"], prev=digest(token))
    task(
        "scopes-widened",
        [narrow0, link1(scopes=["kb:read", "refund:write"], prev=digest(narrow0))],
        "delegation-widened",
        note="link 1 hands on refund:write, which link 0 did not give",
    )
    task(
        "scopes-widened-beyond-token",
        [link(GATEWAY, to="triage", step="triage", scopes=[*scopes0, "admin"], prev=digest(token))],
        "delegation-widened",
        sender=GATEWAY,
        to="triage",
        step="triage",
        note="link 0 hands on more than the caller token has",
    )
    task(
        "expiry-widened",
        [link0, link1(expires=NOW + 3600)],
        "delegation-widened",
        note="link 1 expires after link 0",
    )
    task(
        "link-expired",
        [
            link(
                GATEWAY,
                to="triage",
                step="triage",
                scopes=scopes0,
                prev=digest(token),
                expires=NOW - 60,
            )
        ],
        "expired-token",
        sender=GATEWAY,
        to="triage",
        step="triage",
    )
    task(
        "signed-by-another-role",
        [link0, link1(key=KB, iss="triage")],
        "bad-delegation",
        note="link 1 names triage as its signer but is signed with kb's key",
    )
    task(
        "link0-not-ingress",
        [link(TRIAGE, to="triage", step="triage", scopes=scopes0, prev=digest(token))],
        "bad-delegation",
        to="triage",
        step="triage",
        note="the chain must start at an ingress",
    )
    forged = link0[:-4] + ("AAAA" if not link0.endswith("AAAA") else "BBBB")
    task("link-signature-forged", [forged, link1(prev=digest(forged))], "bad-delegation")
    task(
        "step-not-nested",
        [link0, link1(step="other/billing.1")],
        "bad-delegation",
        step="other/billing.1",
    )
    task("other-workflow", [link0, link1(workflow=ulid(7))], "bad-delegation")
    task(
        "last-link-to-another-role",
        [link0, link1(to="kb")],
        "bad-delegation",
        note="the chain hands the step to kb, the task is addressed to billing",
    )
    task("no-chain", [], "bad-delegation")

    def deep(links: int) -> tuple[list[str], str]:
        """A chain of ``links`` links: the gateway hands triage the step ``triage``, then
        triage hands each step nested under the last on to itself; and the last step."""
        chain, step = [link0], "triage"
        for _ in range(links - 1):
            step += "/triage.1"
            chain.append(
                link(TRIAGE, to="triage", step=step, scopes=scopes0, prev=digest(chain[-1]))
            )
        return chain, step

    depth = LIMITS["max_call_depth"]
    deepest, step = deep(depth + 1)
    task(
        "deepest-chain",
        deepest,
        None,
        to="triage",
        step=step,
        note=f"max_call_depth + 1 = {depth + 1} links, the most a receiver takes",
    )
    too_deep, step = deep(depth + 2)
    task(
        "plan-too-deep",
        too_deep,
        "plan-too-deep",
        to="triage",
        step=step,
        note=f"{depth + 2} links: refused before any link is read",
    )
    return file_header([ROOT, GATEWAY, TRIAGE, KB], registry) | {"cases": cases}
