"""Which revocations end a planned rotation (the role keeps its server users) and which
shut the role out: decided by the key the keys directory holds for the role now."""

from __future__ import annotations

from pathlib import Path

import pytest

from jetmesh import KeyStore, Subjects
from jetmesh.shutout import planned_rotation


@pytest.fixture
def store(tmp_path: Path) -> KeyStore:
    store = KeyStore(tmp_path / "keys")
    store.init_root()
    return store


def test_the_current_key_is_not_a_planned_rotation(store: KeyStore) -> None:
    kid = store.issue("counter", subjects=Subjects("mesh"), ttl_s=3600).key.kid
    assert not planned_rotation(store, "counter", kid)


def test_the_key_before_a_rotation_is(store: KeyStore) -> None:
    old = store.issue("counter", subjects=Subjects("mesh"), ttl_s=3600).key.kid
    new, _ = store.rotate("counter", ttl_s=3600)
    assert planned_rotation(store, "counter", old)
    assert not planned_rotation(store, "counter", new.key.kid)


def test_a_role_without_a_key_here_is_shut_out(store: KeyStore) -> None:
    assert not planned_rotation(store, "counter", "counter-0123456789abcdef")
