"""Private key files: 0600 in a 0700 directory, created through a new temporary file that
no planted file or symlink can take, and a KeyPair that never prints its seed."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from jetmesh import ConfigError, KeyStore, Subjects
from jetmesh.identity import keys as keys_module
from jetmesh.identity.jws import b64e
from jetmesh.identity.keys import KeyPair, private_directory, write_atomically, write_secret

SUBJECTS = Subjects("mesh")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def test_a_key_file_is_0600_in_a_0700_directory(tmp_path: Path) -> None:
    key = KeyPair.generate("billing")
    path = tmp_path / "keys" / "billing.key"
    key.save(path)
    assert mode(path) == 0o600
    assert mode(path.parent) == 0o700
    assert KeyPair.load(path) == key


def test_the_mode_does_not_depend_on_the_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        write_secret(tmp_path / "s" / "x.pass", "secret\n")
    finally:
        os.umask(old)
    assert mode(tmp_path / "s" / "x.pass") == 0o600
    assert mode(tmp_path / "s") == 0o700


def test_a_looser_directory_is_tightened(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    loose = tmp_path / "keys"
    loose.mkdir(mode=0o755)
    loose.chmod(0o755)
    KeyPair.generate("billing").save(loose / "billing.key")
    assert mode(loose) == 0o700
    assert "tightened to 700" in caplog.text


def test_a_keystore_tightens_its_directory_when_it_issues(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "keys")
    store.init_root()
    store.issue("billing", subjects=SUBJECTS, ttl_s=3600)
    store.directory.chmod(0o755)
    store.issue("billing", subjects=SUBJECTS, ttl_s=3600)  # the key exists: a cert only
    assert mode(store.directory) == 0o700
    assert mode(store.directory / "billing.key") == 0o600
    assert mode(store.root_key_path) == 0o600


def test_a_symlink_planted_at_the_final_name_is_replaced_not_followed(tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("untouched\n")
    keys = tmp_path / "keys"
    keys.mkdir(mode=0o700)
    (keys / "billing.key").symlink_to(victim)
    key = KeyPair.generate("billing")
    key.save(keys / "billing.key")
    assert victim.read_text() == "untouched\n"
    assert not (keys / "billing.key").is_symlink()
    assert mode(keys / "billing.key") == 0o600
    assert KeyPair.load(keys / "billing.key") == key


@pytest.mark.parametrize("planted", ["symlink", "dangling symlink", "file"])
def test_something_planted_at_the_temporary_name_is_not_written_through(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, planted: str
) -> None:
    """With the temporary name known in advance (here: forced), what is there is never
    opened: every try fails, nothing is written, the error is a ConfigError."""
    monkeypatch.setattr(keys_module.secrets, "token_hex", lambda n: "0" * (2 * n))
    keys = tmp_path / "keys"
    keys.mkdir(mode=0o700)
    temp = keys / f".billing.key.{'0' * 16}.tmp"
    victim = tmp_path / "victim.txt"
    victim.write_text("untouched\n")
    if planted == "symlink":
        temp.symlink_to(victim)
    elif planted == "dangling symlink":
        temp.symlink_to(tmp_path / "would-be-created")
    else:
        temp.write_text("planted\n")
    temp_mode = mode(temp)
    with pytest.raises(ConfigError, match="temporary file"):
        KeyPair.generate("billing").save(keys / "billing.key")
    assert victim.read_text() == "untouched\n"
    assert not (tmp_path / "would-be-created").exists()
    assert not (keys / "billing.key").exists()
    assert mode(temp) == temp_mode


def test_a_taken_temporary_name_is_skipped_for_another(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    names = iter(["a" * 16, "b" * 16])
    monkeypatch.setattr(keys_module.secrets, "token_hex", lambda n: next(names))
    victim = tmp_path / "victim.txt"
    victim.write_text("untouched\n")
    (tmp_path / f".public.pub.{'a' * 16}.tmp").symlink_to(victim)
    write_atomically(tmp_path / "public.pub", "text\n")
    assert (tmp_path / "public.pub").read_text() == "text\n"
    assert victim.read_text() == "untouched\n"
    assert not (tmp_path / f".public.pub.{'b' * 16}.tmp").exists()


def test_a_file_in_the_way_of_the_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / "keys").write_text("not a directory\n")
    with pytest.raises((ConfigError, FileExistsError)):
        private_directory(tmp_path / "keys")


def test_repr_and_str_never_show_the_seed() -> None:
    key = KeyPair.generate("billing")
    for shown in (repr(key), str(key), f"{key}", repr([key]), repr({"k": key})):
        assert key.seed.hex() not in shown
        assert b64e(key.seed) not in shown
        assert repr(key.seed) not in shown
        assert key.kid in shown
