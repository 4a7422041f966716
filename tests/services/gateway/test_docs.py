"""docs/gateway.md stays true: every problem reason and every setting is in it."""

from __future__ import annotations

from pathlib import Path

from services.gateway import GatewaySettings
from services.gateway.problems import TITLES
from services.gateway.settings import AUDIT_WORKFLOW

DOC = (Path(__file__).resolve().parents[3] / "docs" / "gateway.md").read_text()


def test_every_reason_is_in_the_errors_table() -> None:
    missing = [reason for reason in TITLES if f"`{reason}`" not in DOC]
    assert not missing


def test_every_setting_is_documented() -> None:
    missing = [name for name in GatewaySettings.model_fields if f"`{name}`" not in DOC]
    assert not missing
    assert f"`{AUDIT_WORKFLOW}`" in DOC
