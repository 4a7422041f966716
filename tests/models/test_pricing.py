"""Prices: the shipped table, prefix matching, overrides from a file, and the offline cost."""

from __future__ import annotations

from pathlib import Path

import pytest

from jetmesh import ConfigError, MeshSettings
from jetmesh.models import PriceTable, prices_from


def test_the_shipped_table() -> None:
    table = PriceTable.default()
    assert table.cost("offline-deterministic/templates-v1", 10_000, 10_000) == 0.0
    assert table.cost("gpt-4o-mini", 1_000_000, 1_000_000) == pytest.approx(0.75)
    assert table.cost("claude-3-5-haiku", 2_000, 500) == pytest.approx(0.0036)


def test_dated_and_tagged_names_take_the_longest_prefix() -> None:
    table = PriceTable.default()
    assert table.price("gpt-4o-mini-2024-07-18") == table.price("gpt-4o-mini")
    assert table.price("gpt-4o-2024-08-06") == table.price("gpt-4o")
    assert table.price("claude-3-5-haiku-20241022") == table.price("claude-3-5-haiku")
    assert table.price("gpt-4omni") is None, "a prefix counts only up to a separator"


def test_an_unknown_model_has_no_cost() -> None:
    assert PriceTable.default().cost("llama3.1:8b", 100, 100) is None


def test_a_prices_file_adds_and_overrides(tmp_path: Path) -> None:
    path = tmp_path / "prices.toml"
    path.write_text(
        '[models."llama3.1"]\ninput = 0\noutput = 0\n\n'
        '[models."gpt-4o-mini"]\ninput = 1\noutput = 2\n'
    )
    table = prices_from(MeshSettings(model_prices_file=path))
    assert table.cost("llama3.1:8b", 100, 100) == 0.0
    assert table.cost("gpt-4o-mini", 1_000_000, 1_000_000) == 3.0
    assert table.cost("gpt-4o", 1_000_000, 0) == 2.5, "the shipped entries stay"


@pytest.mark.parametrize(
    "content",
    [
        "not toml [",
        '[models."x"]\ninput = 1\n',
        '[models."x"]\ninput = -1\noutput = 1\n',
        "models = 3",
    ],
)
def test_a_bad_prices_file_is_a_config_error(tmp_path: Path, content: str) -> None:
    path = tmp_path / "prices.toml"
    path.write_text(content)
    with pytest.raises(ConfigError, match="model prices file"):
        PriceTable.load(path)


def test_a_missing_prices_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="model prices file"):
        PriceTable.load(tmp_path / "nope.toml")
