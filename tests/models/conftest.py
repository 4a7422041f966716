"""Fixtures of the model tests: a fake model API on loopback."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.models.fake_server import FakeModelServer


@pytest.fixture
def model_server() -> Iterator[FakeModelServer]:
    """A fake OpenAI and Anthropic API on a free 127.0.0.1 port (key ``sk-test``)."""
    with FakeModelServer(key="sk-test") as server:
        yield server
