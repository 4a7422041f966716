"""The command line's help flows: a docstring's line breaks do not break the boxes' lines,
in the list of commands or in a command's own help; and ``jetmesh policy check`` prints a
summary of the roles first, the detail behind ``--detail``."""

from __future__ import annotations

import re

from typer.testing import CliRunner

from jetmesh.cli import app
from jetmesh.cli.help import flowing
from services.support import POLICY as SUPPORT

WIDE = {"COLUMNS": "400", "TERMINAL_WIDTH": "400"}


def test_flowing_joins_the_lines_of_each_paragraph() -> None:
    doc = """Start the servers, enforcing
        the policy.

        Servers already
        answering are reused.
        """
    assert (
        flowing(doc)
        == "Start the servers, enforcing the policy.\n\nServers already answering are reused."
    )


def test_the_list_of_commands_shows_each_help_as_one_sentence() -> None:
    result = CliRunner().invoke(app, ["--help"], env=WIDE)
    assert result.exit_code == 0, result.output
    assert (
        "Start nats-server (JetStream) and redis-server in the state directory, enforcing the "
        "policy (JETMESH_POLICY_FILE, else the library's own roles)"
    ) in result.output


def test_a_groups_commands_flow_too() -> None:
    result = CliRunner().invoke(app, ["admin", "--help"], env=WIDE)
    assert result.exit_code == 0, result.output
    assert (
        "Run it again after changing ack_wait_s, max_deliver or max_ack_pending: replicas do "
        "not change their consumers."
    ) in result.output


def test_a_commands_own_help_flows() -> None:
    result = CliRunner().invoke(app, ["publish", "--help"], env=WIDE)
    assert result.exit_code == 0, result.output
    assert "A role the cli may not call fails at once; a failed task prints its workflow id" in (
        result.output
    )


def test_policy_check_prints_a_summary_of_the_roles() -> None:
    result = CliRunner().invoke(app, ["policy", "check", str(SUPPORT)], env=WIDE)
    assert result.exit_code == 0, result.output
    row = re.search(
        r"^\W*billing\W+agent\W+(.*?)\W+refund:write\W+refund\W+(\d+)\W*$", result.output, re.M
    )
    assert row is not None, result.output
    assert row.group(1) == "critic, escalation, kb, toolgate"
    assert int(row.group(2)) > 0
    assert "consumes" not in result.output, "the derived subjects are behind --detail"
    assert "ok: 9 roles (--detail: each role's subjects and Redis patterns)" in result.output


def test_policy_check_detail_prints_each_roles_permissions_after_the_summary() -> None:
    result = CliRunner().invoke(app, ["policy", "check", str(SUPPORT), "--detail"], env=WIDE)
    assert result.exit_code == 0, result.output
    summary = result.output.index("redis patterns")
    detail = result.output.index("billing (agent)")
    assert summary < detail
    assert "consumes   mesh.agent.billing.task" in result.output
    assert result.output.rstrip().endswith("ok: 9 roles")
