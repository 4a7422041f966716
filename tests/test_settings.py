"""MeshSettings: defaults that work locally, JETMESH_ environment variables, checked windows."""

from __future__ import annotations

import os
from pathlib import Path

import pydantic
import pytest

from jetmesh import MeshSettings
from jetmesh.settings import DEFAULT_NATS_URL, DEFAULT_REDIS_URL


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("JETMESH_"):
            monkeypatch.delenv(name)


def test_defaults() -> None:
    s = MeshSettings()
    assert s.nats_url == DEFAULT_NATS_URL == "nats://127.0.0.1:4222"
    assert s.redis_url == DEFAULT_REDIS_URL
    assert s.subject_prefix == "mesh"
    assert (s.tasks_stream, s.events_stream, s.dlq_stream) == (
        "MESH_TASKS",
        "MESH_EVENTS",
        "MESH_DLQ",
    )
    assert s.registry_bucket == "MESH_KEYS"
    assert s.max_message_age_s + s.clock_skew_s < s.duplicate_window_s
    assert s.resolved_keys_dir == Path(".jetmesh") / "keys"


def test_keys_dir_overrides_state_dir(tmp_path: Path) -> None:
    assert MeshSettings(state_dir=tmp_path).resolved_keys_dir == tmp_path / "keys"
    assert MeshSettings(state_dir=tmp_path, keys_dir=tmp_path / "k").resolved_keys_dir == (
        tmp_path / "k"
    )


def test_environment_with_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JETMESH_NATS_URL", "nats://10.0.0.5:4222")
    monkeypatch.setenv("JETMESH_SUBJECT_PREFIX", "acme")
    monkeypatch.setenv("JETMESH_CONCURRENCY", "32")
    monkeypatch.setenv("JETMESH_RETRY_BACKOFF_S", "[0.5, 2]")
    monkeypatch.setenv("NATS_URL", "nats://ignored:1")
    monkeypatch.setenv("CONCURRENCY", "1")
    s = MeshSettings()
    assert s.nats_url == "nats://10.0.0.5:4222"
    assert s.subject_prefix == "acme"
    assert s.concurrency == 32
    assert s.retry_backoff_s == (0.5, 2.0)


def test_arguments_win_over_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JETMESH_SUBJECT_PREFIX", "acme")
    assert MeshSettings(subject_prefix="other").subject_prefix == "other"


def test_bad_environment_value_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JETMESH_CONCURRENCY", "0")
    with pytest.raises(pydantic.ValidationError, match="concurrency"):
        MeshSettings()


@pytest.mark.parametrize(
    "values",
    [
        {"max_message_age_s": 120.0},
        {"max_message_age_s": 115.0},
        {"clock_skew_s": 10.0},
        {"duplicate_window_s": 100.0},
    ],
)
def test_window_validator(values: dict[str, float]) -> None:
    with pytest.raises(pydantic.ValidationError, match="duplicate_window_s"):
        MeshSettings(**values)


def test_window_validator_counts_skew_on_both_sides() -> None:
    with pytest.raises(pydantic.ValidationError, match="duplicate_window_s"):
        MeshSettings(max_message_age_s=112.0, clock_skew_s=5.0, duplicate_window_s=120.0)


def test_window_validator_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JETMESH_DUPLICATE_WINDOW_S", "60")
    with pytest.raises(ValueError, match="duplicate_window_s"):
        MeshSettings()
    monkeypatch.setenv("JETMESH_MAX_MESSAGE_AGE_S", "50")
    assert MeshSettings().duplicate_window_s == 60.0


@pytest.mark.parametrize("prefix", ["", "a.b", "a b", "*", ">"])
def test_bad_subject_prefix(prefix: str) -> None:
    with pytest.raises(pydantic.ValidationError, match="subject_prefix"):
        MeshSettings(subject_prefix=prefix)


@pytest.mark.parametrize(
    ("field", "value"),
    [("stream_replicas", 0), ("stream_replicas", 6), ("max_payload_bytes", 0), ("ack_wait_s", 0)],
)
def test_limits(field: str, value: float) -> None:
    with pytest.raises(pydantic.ValidationError, match=field):
        MeshSettings(**{field: value})


def test_frozen() -> None:
    s = MeshSettings()
    with pytest.raises(pydantic.ValidationError):
        s.concurrency = 1  # type: ignore[misc]


def test_backoff_for() -> None:
    s = MeshSettings(retry_backoff_s=(0.2, 1.0, 5.0))
    assert [s.backoff_for(n) for n in (1, 2, 3, 4, 10)] == [0.2, 1.0, 5.0, 5.0, 5.0]
    assert MeshSettings(retry_backoff_s=()).backoff_for(3) == 1.0


def test_every_setting_is_documented_with_its_default(monkeypatch: pytest.MonkeyPatch) -> None:
    import os
    from pathlib import Path

    for var in [v for v in os.environ if v.startswith("JETMESH_")]:
        monkeypatch.delenv(var)
    defaults = MeshSettings()
    doc = (Path(__file__).parents[1] / "docs" / "configuration.md").read_text()
    for name in MeshSettings.model_fields:
        row = next((line for line in doc.splitlines() if f"`JETMESH_{name.upper()}`" in line), "")
        assert row, f"JETMESH_{name.upper()} is not in docs/configuration.md"
        assert f"`{getattr(defaults, name)}`" in row, f"default of {name} differs in the docs"
