"""The flows against an earlier revision: the phases read from a flows run's output, the
pairs' table and median ratios, the temporary worktree (made and removed), and a run that
fails or prints nothing reported as such, a run over time told to stop (SIGTERM), and the
pairs' order (the revision first, then second, in turn)."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest

from loadtest.against import (
    ROOT,
    Phase,
    Runs,
    format_pairs,
    main,
    phases_of,
    run_flows,
    run_pairs,
    worktree,
)

OUTPUT = """\
support x16: 21.6 ms (agents 13.9, nats-server 5.2, redis-server 1.6, driver 0.8); the cores hold 93 a second at that cost
support x1: 40.4 workflows/s (198 tasks/s, 0.010 of the floor's requests/s); p50 24.5 ms, p99 41.2 ms
support x16: 1,078.6 workflows/s (385 tasks/s, 0.020 of the floor's requests/s); p50 184.1 ms, p99 479.5 ms
research x16: agents 45%, nats-server 25%, redis-server 5%, driver 2%, other 3%, idle 20%
"""  # noqa: E501


def test_the_phases_are_read_from_the_closing_lines_and_nothing_else() -> None:
    phases = phases_of(OUTPUT)
    assert phases == {
        "support x1": Phase("support x1", 40.4, 24.5, 41.2),
        "support x16": Phase("support x16", 1078.6, 184.1, 479.5),
    }
    assert phases_of("no phases here\n") == {}


def test_each_pair_gets_its_ratio_and_each_phase_its_median() -> None:
    def run(rate: float, p99: float) -> dict[str, Phase]:
        return {"support x16": Phase("support x16", rate, 100.0, p99)}

    pairs = [(run(50.0, 700.0), run(75.0, 500.0)), (run(40.0, 800.0), run(100.0, 400.0)),
             (run(60.0, 600.0), run(90.0, 450.0))]  # fmt: skip
    table = format_pairs(pairs, "abc123")
    lines = table.splitlines()
    assert lines[0].split() == ["phase", "pair", "abc123", "/s", "this", "/s", "ratio",
                                "abc123", "p99", "ms", "this", "p99", "ms"]  # fmt: skip
    assert lines[2].split() == ["support", "x16", "1", "50.0", "75.0", "1.50", "700.0", "500.0"]
    assert lines[3].split()[-3:] == ["2.50", "800.0", "400.0"]
    assert lines[-1] == "support x16: 1.50 times abc123 (median of 3; 1.50-2.50)"


def test_a_phase_missing_from_a_run_is_left_out() -> None:
    full = {"a x1": Phase("a x1", 10.0, 1.0, 2.0), "b x1": Phase("b x1", 10.0, 1.0, 2.0)}
    table = format_pairs([({"a x1": full["a x1"]}, full)], "old")
    assert "a x1: 1.00 times old" in table
    assert "b x1" not in table


def test_the_revision_goes_first_and_second_in_turn_and_each_pair_keeps_its_sides(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ran: list[str] = []

    def run(tree: Path, flows_args: Sequence[str]) -> Runs:
        assert list(flows_args) == ["--workflows", "5"]
        side = "rev" if tree == tmp_path else "this"
        ran.append(side)
        rate = 10.0 * len(ran) if side == "rev" else 1.0 * len(ran)
        return {"support x1": Phase("support x1", rate, 1.0, 2.0)}

    pairs = run_pairs(tmp_path, ["--workflows", "5"], count=3, rev="abc", run=run)
    assert ran == ["rev", "this", "this", "rev", "rev", "this"]
    assert [(b["support x1"].rate, a["support x1"].rate) for b, a in pairs] == [
        (10.0, 2.0), (40.0, 3.0), (50.0, 6.0)
    ]  # fmt: skip
    assert capsys.readouterr().out.splitlines() == [
        "pair 1 of 3: abc, then this checkout",
        "pair 2 of 3: this checkout, then abc",
        "pair 3 of 3: abc, then this checkout",
    ]


@pytest.mark.skipif(not (ROOT / ".git").exists(), reason="needs this checkout's git history")
def test_the_worktree_holds_the_revision_and_is_removed_after() -> None:
    head = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    with worktree("HEAD") as tree:
        assert (tree / "loadtest" / "flows.py").is_file()
        checked_out = subprocess.run(
            ["git", "-C", str(tree), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        assert checked_out == head
    assert not tree.exists()
    listed = subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "list"], capture_output=True, text=True, check=True
    ).stdout
    assert str(tree) not in listed


def _tree(tmp_path: Path, body: str) -> Path:
    (tmp_path / "shared").mkdir(parents=True)
    (tmp_path / "loadtest").mkdir()
    (tmp_path / "loadtest" / "__init__.py").write_text("")
    (tmp_path / "loadtest" / "flows.py").write_text(body)
    return tmp_path


def test_a_tree_s_flows_run_with_its_own_code(tmp_path: Path) -> None:
    line = "support x16: 75.0 workflows/s (385 tasks/s); p50 192.3 ms, p99 497.9 ms"
    tree = _tree(
        tmp_path, f"import sys\nif sys.argv[1:] == ['--workflows', '5']: print({line!r})\n"
    )
    assert run_flows(tree, ["--workflows", "5"]) == {
        "support x16": Phase("support x16", 75.0, 192.3, 497.9)
    }


def test_a_failing_run_or_one_with_no_phase_is_an_error_with_its_output(tmp_path: Path) -> None:
    tree = _tree(tmp_path, "import sys\nprint('boom: no servers', file=sys.stderr)\nsys.exit(3)\n")
    with pytest.raises(RuntimeError, match=r"exit 3\):\nboom: no servers"):
        run_flows(tree, [])
    (tree / "loadtest" / "flows.py").write_text("print('a table, and no closing lines')\n")
    with pytest.raises(RuntimeError, match="exit 0"):
        run_flows(tree, [])


def test_a_run_over_time_is_told_to_stop_so_that_it_stops_what_it_started(
    tmp_path: Path,
) -> None:
    marker = tmp_path / "stopped"
    tree = _tree(
        tmp_path / "tree",
        "import pathlib, signal, sys, time\n"
        "def stop(*_):\n"
        f"    pathlib.Path({str(marker)!r}).write_text('servers stopped')\n"
        "    sys.exit(130)\n"
        "signal.signal(signal.SIGTERM, stop)\n"
        "time.sleep(60)\n",
    )
    with pytest.raises(RuntimeError, match="ran over 1 s"):
        run_flows(tree, [], timeout=1.0)
    assert marker.read_text() == "servers stopped"  # SIGTERM, not SIGKILL


@pytest.mark.skipif(not (ROOT / ".git").exists(), reason="needs this checkout's git history")
def test_a_revision_git_does_not_know_ends_the_comparison_with_exit_1(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as ended:
        main(["no-such-revision-0f0f", "--pairs", "1", "--", "--workflows", "5"])
    assert ended.value.code == 1
    assert "against no-such-revision-0f0f:" in capsys.readouterr().err
