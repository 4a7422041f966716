"""The tool gateway's parts without servers: credentials (file, environment, rotation),
approval tokens, the policy's approval rule and the args' digest."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest

from jetmesh import ApprovalExpired, ApprovalInvalid
from jetmesh.identity.approvals import mint_approval, verify_approval
from jetmesh.identity.certificates import Certificate, issue_certificate, verify_certificate
from jetmesh.identity.keys import KeyPair
from jetmesh.identity.tokens import mint_token
from jetmesh.policy import ToolGrant
from jetmesh.toolgate import Credentials, args_digest, env_name


def test_a_credential_comes_from_the_file_first_then_the_environment(tmp_path: Path) -> None:
    secrets = tmp_path / "tools.toml"
    secrets.write_text('refund = "from-file"\n')
    creds = Credentials(secrets, env={env_name("refund"): "env", env_name("hand-off"): "env2"})
    refund = creds.get("refund")
    assert refund is not None
    assert refund.reveal() == "from-file"
    assert "from-file" not in repr(refund)
    assert "from-file" not in str(refund)
    assert refund.fingerprint.startswith("sha256:")
    assert len(refund.fingerprint) == len("sha256:") + 8
    handoff = creds.get("hand-off")
    assert handoff is not None
    assert (handoff.reveal(), handoff.source) == ("env2", "env JETMESH_TOOL_HAND_OFF_CREDENTIAL")
    assert creds.get("search") is None


def test_a_changed_file_is_read_again_and_a_broken_one_keeps_the_last(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    secrets = tmp_path / "tools.json"
    secrets.write_text('{"refund": "one"}')
    creds = Credentials(secrets, env={})
    assert creds.get("refund").reveal() == "one"  # type: ignore[union-attr]
    secrets.write_text('{"refund": "two-two"}')
    assert creds.get("refund").reveal() == "two-two"  # type: ignore[union-attr]
    with caplog.at_level(logging.WARNING, "jetmesh.toolgate"):
        secrets.write_text('{"refund": "half-writ')
        assert creds.get("refund").reveal() == "two-two"  # type: ignore[union-attr]
    assert "half-writ" not in caplog.text
    assert "not read" in caplog.text


def test_approval_tokens_verify_only_from_an_ingress_and_in_time() -> None:
    root = KeyPair.generate("root")
    ingress, agent = KeyPair.generate("cli"), KeyPair.generate("billing")
    roots = {root.kid: root.public_key}

    def certificate(key: KeyPair, *, ingress: bool = False) -> Certificate:
        issued = issue_certificate(root, key, publish=[], subscribe=[], ingress=ingress, ttl_s=600)
        return verify_certificate(issued, roots)

    cli, billing = certificate(ingress, ingress=True), certificate(agent)
    claims = dict(subject="bob", workflow="W", step="t/approval.1", tool="refund", args_sha256="ab")
    got = verify_approval(mint_approval(ingress, **claims), cli, tool="refund")
    assert (got.sub, got.workflow, got.step, got.tool, got.args_sha256) == (
        "bob",
        "W",
        "t/approval.1",
        "refund",
        "ab",
    )
    with pytest.raises(ApprovalInvalid, match="not an ingress"):
        verify_approval(mint_approval(agent, **claims), billing, tool="refund")
    old = mint_approval(ingress, **claims, now=time.time() - 100, ttl_s=10)
    with pytest.raises(ApprovalExpired):
        verify_approval(old, cli, tool="refund")
    caller = mint_token(ingress, subject="bob", tenant="t", scopes=[], ttl_s=60)
    with pytest.raises(ApprovalInvalid, match="aud"):
        verify_approval(caller, cli, tool="refund")


def test_the_policy_says_which_calls_need_an_approval() -> None:
    refund = ToolGrant(irreversible=True, approve_above={"amount_eur": 100.0})
    assert not refund.needs_approval({"amount_eur": 100.0})
    assert refund.needs_approval({"amount_eur": 100.01})
    assert refund.needs_approval({}), "a missing amount needs a person"
    assert refund.needs_approval({"amount_eur": "5"}), "so does one that is not a number"
    assert ToolGrant(irreversible=True).needs_approval({})
    assert not ToolGrant(irreversible=True, approval=False).needs_approval({})
    assert not ToolGrant().needs_approval({})
    assert ToolGrant(approval=True).needs_approval({})


def test_the_args_digest_ignores_key_order_but_not_values() -> None:
    assert args_digest({"a": 1, "b": {"y": 2, "x": 1}}) == args_digest(
        {"b": {"x": 1, "y": 2}, "a": 1}
    )
    assert args_digest({"a": 1}) != args_digest({"a": 2})
