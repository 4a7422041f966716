"""The gateway's settings: a TOML file, the environment over it, validated when built."""

from __future__ import annotations

from pathlib import Path

import pydantic
import pytest

from services.gateway import GatewaySettings
from services.gateway.routes import prefer_wait
from services.gateway.settings import CONFIG_ENV, key_hash


def test_the_file_then_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text(
        f'burst = 7\nrate_per_s = 3.5\n[[api_keys]]\nsha256 = "{key_hash("k")}"\nsubject = "a"\n'
        '[jwt]\nissuer = "https://id.test/"\naudience = "mesh"\njwks_url = "http://x/jwks"\n'
    )
    monkeypatch.setenv(CONFIG_ENV, str(config))
    monkeypatch.setenv("JETMESH_GATEWAY_BURST", "9")
    s = GatewaySettings()
    assert (s.burst, s.rate_per_s) == (9, 3.5)
    assert [(k.subject, k.tenant) for k in s.api_keys] == [("a", "default")]
    assert s.jwt is not None
    assert s.jwt.algorithms == ("RS256", "ES256", "EdDSA")


def test_a_missing_file_or_a_bad_value_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(CONFIG_ENV, str(tmp_path / "none.toml"))
    with pytest.raises(ValueError, match="no such file"):
        GatewaySettings()
    monkeypatch.delenv(CONFIG_ENV)
    with pytest.raises(pydantic.ValidationError):
        GatewaySettings(api_keys=[{"sha256": "not-hex", "subject": "a"}])
    with pytest.raises(pydantic.ValidationError):
        GatewaySettings(rate_per_s=0)


@pytest.mark.parametrize(
    ("prefer", "query", "seconds"),
    [
        (None, None, 0.0),
        ("wait=5", None, 5.0),
        ("respond-async, wait=5", None, 0.0),
        ("handling=lenient, wait=3", None, 3.0),
        ("wait=500", None, 60.0),
        (None, 2.0, 2.0),
        ("wait=5", 1.0, 1.0),
        ("wait=-1", None, 0.0),
    ],
)
def test_prefer_wait(prefer: str | None, query: float | None, seconds: float) -> None:
    assert prefer_wait(prefer, query, 60.0) == seconds
