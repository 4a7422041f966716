"""What a model call costs: a price table in USD per million input and output tokens.

The default table ships with jetmesh (``jetmesh/models/prices.toml``); a file named by
``JETMESH_MODEL_PRICES_FILE``, of the same shape, adds to it and overrides it::

    [models."llama3.1:8b"]          # a self-hosted model: free
    input = 0.0
    output = 0.0

A model is priced by its own name, else by the longest name in the table that it starts
with followed by ``-``, ``:``, ``@`` or ``.`` (``gpt-4o-mini-2024-07-18`` by
``gpt-4o-mini``). A model the table does not know has no cost (None), rather than a wrong one.

Example:
    >>> table = PriceTable.default()
    >>> table.cost("gpt-4o-mini-2024-07-18", 1_000_000, 0)
    0.15
    >>> table.cost("offline-deterministic/templates-v1", 500, 200)
    0.0
    >>> table.cost("my-own-model", 10, 10) is None
    True
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Final

from .._exceptions import ConfigError

DEFAULT_FILE: Final = "prices.toml"
_SEPARATORS: Final = ("-", ":", "@", ".")


@dataclass(frozen=True)
class Price:
    """USD per million tokens."""

    input: float
    output: float


class PriceTable:
    """Prices by model name."""

    def __init__(self, prices: dict[str, Price]) -> None:
        self.prices = dict(prices)

    @classmethod
    def default(cls) -> PriceTable:
        """The table shipped with jetmesh."""
        text = resources.files("jetmesh.models").joinpath(DEFAULT_FILE).read_text(encoding="utf-8")
        return cls(_parse(text, DEFAULT_FILE))

    @classmethod
    def load(cls, path: Path | None = None) -> PriceTable:
        """The default table, with the entries of ``path`` (if given) added over it.

        Raises:
            ConfigError: the file cannot be read, or is not a price table.
        """
        table = cls.default()
        if path is None:
            return table
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"model prices file {path}: {exc}") from None
        return cls({**table.prices, **_parse(text, str(path))})

    def price(self, model: str) -> Price | None:
        """The price of ``model``: its own entry, else the longest entry it extends."""
        if model in self.prices:
            return self.prices[model]
        best = ""
        for name in self.prices:
            if len(name) > len(best) and any(model.startswith(name + s) for s in _SEPARATORS):
                best = name
        return self.prices.get(best) if best else None

    def cost(self, model: str, input_tokens: int, output_tokens: int) -> float | None:
        """USD for a call of ``model`` (None when the table does not know it)."""
        price = self.price(model)
        if price is None:
            return None
        total = (input_tokens * price.input + output_tokens * price.output) / 1_000_000
        return round(total, 10)


def _parse(text: str, origin: str) -> dict[str, Price]:
    try:
        data: dict[str, Any] = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"model prices file {origin}: {exc}") from None
    models = data.get("models", {})
    if not isinstance(models, dict):
        raise ConfigError(f"model prices file {origin}: [models] must be a table")
    out: dict[str, Price] = {}
    for name, entry in models.items():
        try:
            out[name] = Price(float(entry["input"]), float(entry["output"]))
        except (TypeError, KeyError, ValueError):
            raise ConfigError(
                f"model prices file {origin}: models.{name!r} needs numbers input and output"
            ) from None
        if out[name].input < 0 or out[name].output < 0:
            raise ConfigError(f"model prices file {origin}: models.{name!r} has a negative price")
    return out
