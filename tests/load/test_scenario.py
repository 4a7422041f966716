"""Scenario files: the shipped ones validate and send what their flows take; a wrong field
is a ConfigError that names it."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import msgspec
import pytest

from jetmesh import ConfigError
from jetmesh.load import HttpTarget, NatsTarget, load_scenario
from jetmesh.load.arrivals import schedule
from services.research.wire import Question
from services.support.wire import Ticket

SHIPPED = resources.files("jetmesh.load") / "scenarios"

GOOD = """
name = "t"
agent = "echo"
seconds = 2

[payload]
template = '{"n": {n}, "id": "{uuid}"}'

[arrival]
model = "constant"
rate = 50
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "s.toml"
    path.write_text(text)
    return path


def shipped(name: str) -> Path:
    return Path(str(SHIPPED / name))


def test_the_shipped_scenarios_validate() -> None:
    names = sorted(p.name for p in SHIPPED.iterdir() if p.name.endswith(".toml"))
    assert names == [
        "critic-loop.toml",
        "echo-faults.toml",
        "echo-soak.toml",
        "fan-out.toml",
        "research.toml",
        "single-hop.toml",
        "support.toml",
    ]
    for name in names:
        scenario = load_scenario(shipped(name))
        assert isinstance(scenario.target, NatsTarget)
        assert scenario.target.role == "cli"
        assert scenario.slo.no_loss


@pytest.mark.parametrize(
    ("name", "wire_type"), [("support.toml", Ticket), ("research.toml", Question)]
)
def test_the_reference_flows_send_their_entry_types(name: str, wire_type: type) -> None:
    scenario = load_scenario(shipped(name))
    assert scenario.payload.type == wire_type.__mesh_type__
    bodies = scenario.bodies()
    first, second = next(bodies), next(bodies)
    assert msgspec.json.decode(first, type=wire_type) != msgspec.json.decode(second, type=wire_type)


def test_placeholders_are_filled_per_request(tmp_path: Path) -> None:
    scenario = load_scenario(write(tmp_path, GOOD))
    bodies = scenario.bodies()
    a, b = json.loads(next(bodies)), json.loads(next(bodies))
    assert (a["n"], b["n"]) == (0, 1)
    assert a["id"] != b["id"]
    assert len(a["id"]) == 36


def test_samples_are_cycled_from_a_file_beside_the_scenario(tmp_path: Path) -> None:
    (tmp_path / "bodies.jsonl").write_text('{"a": 1}\n\n{"b": "{n}"}\n')
    text = GOOD.replace("""template = '{"n": {n}, "id": "{uuid}"}'""", 'samples = "bodies.jsonl"')
    bodies = load_scenario(write(tmp_path, text)).bodies()
    assert [json.loads(next(bodies)) for _ in range(4)] == [
        {"a": 1},
        {"b": "1"},
        {"a": 1},
        {"b": "3"},
    ]


def test_overrides_replace_seconds_and_rate(tmp_path: Path) -> None:
    scenario = load_scenario(write(tmp_path, GOOD), seconds=5.0, rate=10.0)
    assert scenario.seconds == 5
    assert len(schedule(scenario.arrival, scenario.seconds)) == 50
    assert scenario.describe_arrival() == "constant 10/s"


def test_an_http_target(tmp_path: Path) -> None:
    text = GOOD + '\n[target]\ndoor = "http"\nbase_url = "http://127.0.0.1:8080"\napi_key = "k"\n'
    scenario = load_scenario(write(tmp_path, text))
    assert isinstance(scenario.target, HttpTarget)
    assert scenario.target.key() == "k"
    assert scenario.target.describe("echo") == "http http://127.0.0.1:8080 echo"


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (("rate = 50", "rate = -1"), "arrival.constant.rate"),
        (('agent = "echo"\n', ""), "agent: Field required"),
        (('model = "constant"', 'model = "bursty"'), "arrival"),
        (("seconds = 2", "seconds = 2\nsecnds = 3"), "secnds: Extra inputs"),
        (("{n}, ", "{n, "), "payload"),
        (("rate = 50", "rate = 50\n[slo]\nerror_rate = 2"), "slo.error_rate"),
    ],
)
def test_a_wrong_field_is_named(tmp_path: Path, change: tuple[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=r"scenario .*s\.toml") as caught:
        load_scenario(write(tmp_path, GOOD.replace(*change)))
    assert named in str(caught.value)


def test_a_file_that_is_not_toml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not TOML"):
        load_scenario(write(tmp_path, "name = "))


def test_rate_needs_an_open_loop_with_a_rate(tmp_path: Path) -> None:
    closed = GOOD.replace('model = "constant"\nrate = 50', 'model = "closed"\nconcurrency = 4')
    with pytest.raises(ConfigError, match="--rate"):
        load_scenario(write(tmp_path, closed), rate=10.0)
