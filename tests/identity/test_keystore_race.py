"""Replicas of one role that start at once on an empty key store (the embedded default,
a load run, `jetmesh launch` with replicas) end up with one key, and its certificate
beside it; a certificate of another key beside a key is never taken for its own."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from jetmesh import ConfigError, Identity, KeyStore, Subjects
from jetmesh.identity.certificates import issue_certificate, verify_certificate
from jetmesh.identity.keys import KeyPair

SUBJECTS = Subjects("mesh")
DAY = 86_400.0


def starting_at_once(directory: Path, replicas: int) -> list[Identity]:
    """``replicas`` threads that each load or issue the role's identity at the same moment
    (the window between finding no key and saving one is where they raced)."""
    barrier = threading.Barrier(replicas)
    got: list[Identity] = []

    def replica() -> None:
        store = KeyStore(directory)
        barrier.wait()
        got.append(store.ensure("orchestrator", subjects=SUBJECTS, ttl_s=DAY))

    threads = [threading.Thread(target=replica) for _ in range(replicas)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(got) == replicas
    return got


@pytest.mark.parametrize("round_", range(10))
def test_replicas_starting_at_once_share_one_key(tmp_path: Path, round_: int) -> None:
    KeyStore(tmp_path).init_root()
    identities = starting_at_once(tmp_path, 4)
    store = KeyStore(tmp_path)
    roots = store.roots()
    assert {ident.key.kid for ident in identities} == {store.identity("orchestrator").key.kid}
    for ident in identities:
        assert verify_certificate(ident.certificate, roots).kid == ident.key.kid
    later = store.ensure("orchestrator", subjects=SUBJECTS, ttl_s=DAY)  # a replica restarted
    assert verify_certificate(later.certificate, roots).kid == later.key.kid


def mismatched(directory: Path) -> KeyStore:
    """A store whose orchestrator key has a certificate of another key beside it, as the
    race left it."""
    store = KeyStore(directory)
    root = store.init_root()
    store.issue("orchestrator", subjects=SUBJECTS, ttl_s=DAY)
    other = issue_certificate(
        root, KeyPair.generate("orchestrator"), publish=[">"], subscribe=[">"], ttl_s=DAY
    )
    (directory / "orchestrator.cert").write_text(other + "\n")
    return store


def test_a_certificate_of_another_key_is_reissued_for_the_key(tmp_path: Path) -> None:
    store = mismatched(tmp_path)
    key = store.identity("orchestrator").key
    ident = store.ensure("orchestrator", subjects=SUBJECTS, ttl_s=DAY)
    assert ident.key == key
    assert verify_certificate(ident.certificate, store.roots()).kid == key.kid


def test_without_the_root_a_mismatched_pair_is_refused(tmp_path: Path) -> None:
    store = mismatched(tmp_path)
    store.root_key_path.unlink()
    with pytest.raises(ConfigError, match=r"is for key orchestrator-.*not for the key beside it"):
        store.ensure("orchestrator", subjects=SUBJECTS, ttl_s=DAY)


@pytest.mark.parametrize("hard_links", [True, False])
def test_a_new_key_never_replaces_one_saved_meanwhile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hard_links: bool
) -> None:
    if not hard_links:  # the fallback: rename when nothing is there yet

        def no_links(*_: object) -> None:
            raise PermissionError("this file system has no hard links")

        monkeypatch.setattr("jetmesh.identity.keys.os.link", no_links)
    first, second = KeyPair.generate("billing"), KeyPair.generate("billing")
    path = tmp_path / "billing.key"
    assert first.save(path, replace=False)
    assert not second.save(path, replace=False)
    assert KeyPair.load(path) == first
    assert [p.name for p in tmp_path.iterdir()] == ["billing.key"], "no temporary file left"
    assert second.save(path)  # replace (a rotation) still replaces
    assert KeyPair.load(path) == second
