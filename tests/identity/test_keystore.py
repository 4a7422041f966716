"""KeyStore: the root, agent keys and certificates in one directory."""

from __future__ import annotations

import shutil
import stat
import time
from pathlib import Path

import pytest

from jetmesh import ConfigError, ExpiredKey, Identity, KeyStore, Subjects
from jetmesh.identity import keystore as keystore_module
from jetmesh.identity.certificates import issue_certificate, verify_certificate
from jetmesh.identity.keys import KeyPair

SUBJECTS = Subjects("mesh")
DAY = 86_400.0


@pytest.fixture
def store(tmp_path: Path) -> KeyStore:
    store = KeyStore(tmp_path / "keys")
    store.init_root()
    return store


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_init_root_is_idempotent(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "keys")
    assert not store.has_root()
    first = store.init_root()
    second = store.init_root()
    assert store.has_root()
    assert first == second
    assert store.root() == first
    assert list(store.roots()) == [first.kid]
    assert store.roots()[first.kid] == first.public_key
    assert [p.name for p in (tmp_path / "keys" / "roots").iterdir()] == [f"{first.kid}.pub"]


def test_private_keys_are_owner_only(store: KeyStore) -> None:
    store.issue("billing", subjects=SUBJECTS, ttl_s=DAY)
    assert mode(store.root_key_path) == 0o600
    assert mode(store.directory / "billing.key") == 0o600


def test_issue_identity_and_certificate(store: KeyStore) -> None:
    ident = store.issue("billing", subjects=SUBJECTS, ttl_s=DAY, scopes=["kb:read"])
    assert isinstance(ident, Identity)
    assert ident.name == "billing"
    assert store.identity("billing") == ident
    cert = store.certificate("billing")
    assert cert.name == "billing"
    assert cert.kid == ident.key.kid
    assert cert.public_key == ident.key.public_key
    assert cert.scopes == frozenset({"kb:read"})
    assert cert.ingress is False
    assert cert.may_publish("mesh.agent.kb.task")
    assert cert.subscribe == ("mesh.agent.billing.task", "mesh.agent.billing.reply.*")


def test_issue_ingress_with_explicit_permissions(store: KeyStore) -> None:
    store.issue(
        "gateway",
        subjects=SUBJECTS,
        ttl_s=DAY,
        ingress=True,
        publish=["mesh.agent.triage.task"],
        subscribe=[],
    )
    cert = store.certificate("gateway")
    assert cert.ingress is True
    assert cert.publish == ("mesh.agent.triage.task",)
    assert cert.subscribe == ()


def test_reissue_keeps_the_key(store: KeyStore) -> None:
    first = store.issue("billing", subjects=SUBJECTS, ttl_s=DAY)
    second = store.issue("billing", subjects=SUBJECTS, ttl_s=DAY)
    assert second.key == first.key
    assert second.certificate != first.certificate


@pytest.mark.parametrize("name", ["a.b", "*", "../etc", ""])
def test_issue_rejects_unsafe_names(store: KeyStore, name: str) -> None:
    with pytest.raises(ValueError, match="invalid agent name"):
        store.issue(name, subjects=SUBJECTS, ttl_s=DAY)


def test_ensure_issues_when_missing(store: KeyStore) -> None:
    ident = store.ensure("billing", subjects=SUBJECTS, ttl_s=DAY)
    assert (store.directory / "billing.cert").exists()
    assert store.ensure("billing", subjects=SUBJECTS, ttl_s=DAY) == ident


def test_ensure_renews_near_expiry(store: KeyStore) -> None:
    short = store.issue("billing", subjects=SUBJECTS, ttl_s=keystore_module.RENEW_BEFORE_S / 2)
    renewed = store.ensure("billing", subjects=SUBJECTS, ttl_s=DAY)
    assert renewed.certificate != short.certificate
    assert renewed.key == short.key
    assert store.certificate("billing").expires - store.certificate("billing").issued == DAY


def test_ensure_reissues_when_ingress_differs(store: KeyStore) -> None:
    store.issue("gateway", subjects=SUBJECTS, ttl_s=DAY)
    store.ensure("gateway", subjects=SUBJECTS, ttl_s=DAY, ingress=True)
    assert store.certificate("gateway").ingress is True


def test_ensure_reissues_an_expired_certificate(store: KeyStore) -> None:
    key = store.issue("billing", subjects=SUBJECTS, ttl_s=DAY).key
    expired = issue_certificate(
        store.root(), key, publish=[], subscribe=[], ttl_s=DAY, now=time.time() - 2 * DAY
    )
    (store.directory / "billing.cert").write_text(expired + "\n")
    with pytest.raises(ExpiredKey):
        verify_certificate(expired, store.roots())
    store.ensure("billing", subjects=SUBJECTS, ttl_s=DAY)
    assert store.identity("billing").certificate != expired
    assert store.certificate("billing").kid == key.kid


def test_without_root(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "empty")
    with pytest.raises(ConfigError, match="jetmesh keys init"):
        store.root()
    with pytest.raises(ConfigError, match="no trusted root"):
        store.roots()
    with pytest.raises(ConfigError, match="no certificate"):
        store.identity("billing")
    with pytest.raises(ConfigError):
        store.issue("billing", subjects=SUBJECTS, ttl_s=DAY)
    with pytest.raises(ConfigError):
        store.ensure("billing", subjects=SUBJECTS, ttl_s=DAY)


def copy_without_root(store: KeyStore, target: Path, name: str) -> KeyStore:
    """What a deployed agent gets: its key, its certificate and the root's public key."""
    shutil.copytree(store.directory / "roots", target / "roots")
    for suffix in (".key", ".cert"):
        shutil.copy(store.directory / f"{name}{suffix}", target / f"{name}{suffix}")
    return KeyStore(target)


def test_ensure_without_root_uses_a_valid_identity(store: KeyStore, tmp_path: Path) -> None:
    ident = store.issue("billing", subjects=SUBJECTS, ttl_s=DAY)
    agent_store = copy_without_root(store, tmp_path / "agent", "billing")
    assert not agent_store.has_root()
    assert agent_store.ensure("billing", subjects=SUBJECTS, ttl_s=DAY) == ident


def test_ensure_without_root_refuses_a_bad_certificate(store: KeyStore, tmp_path: Path) -> None:
    store.issue("billing", subjects=SUBJECTS, ttl_s=DAY)
    agent_store = copy_without_root(store, tmp_path / "agent", "billing")
    (agent_store.directory / "billing.cert").write_text("not-a-jwt\n")
    with pytest.raises(ConfigError, match="reissue"):
        agent_store.ensure("billing", subjects=SUBJECTS, ttl_s=DAY)


def test_corrupt_key_file(store: KeyStore) -> None:
    store.issue("billing", subjects=SUBJECTS, ttl_s=DAY)
    (store.directory / "billing.key").write_text("billing\nc2hvcnQ\n")
    with pytest.raises(ConfigError, match="not an Ed25519 seed"):
        store.identity("billing")
    with pytest.raises(ConfigError):
        KeyPair.load(store.directory / "missing.key")


def test_ensure_without_root_warns_of_a_certificate_about_to_expire(
    store: KeyStore, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ident = store.issue("billing", subjects=SUBJECTS, ttl_s=keystore_module.RENEW_BEFORE_S / 2)
    agent_store = copy_without_root(store, tmp_path / "agent", "billing")
    with caplog.at_level("WARNING", logger="jetmesh.keys"):
        assert agent_store.ensure("billing", subjects=SUBJECTS, ttl_s=DAY) == ident
    (record,) = caplog.records
    assert "certificate of 'billing' expires at" in record.getMessage()
    assert "jetmesh keys issue billing" in record.getMessage()


def test_ensure_without_root_names_an_expired_certificate(store: KeyStore, tmp_path: Path) -> None:
    key = store.issue("billing", subjects=SUBJECTS, ttl_s=DAY).key
    expired = issue_certificate(
        store.root(), key, publish=[], subscribe=[], ttl_s=DAY, now=time.time() - 2 * DAY
    )
    (store.directory / "billing.cert").write_text(expired + "\n")
    agent_store = copy_without_root(store, tmp_path / "agent", "billing")
    with pytest.raises(ConfigError, match=r"has expired .*jetmesh keys issue billing"):
        agent_store.ensure("billing", subjects=SUBJECTS, ttl_s=DAY)
