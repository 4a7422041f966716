"""The flows benchmark against an earlier revision, in one sitting: pairs of runs alternating.

A machine shared with other work moves the flows' figures by a factor of two from one
hour to the next (README, Reference flows), so a figure measured another day says little
about a change. This runs ``python -m loadtest.flows`` of a git revision (``REV``, checked
out into a temporary worktree, run with this checkout's virtual environment) and of this
checkout in turn, ``--pairs`` times (the revision first in odd pairs, second in even ones),
and prints each pair's workflows a second and p99 side by side with their ratio, then the
median ratio of each phase. One pair says little: two runs of the same code, six pairs in
one sitting, ran 0.80-1.18 times each other (support at 16 in flight, 2026-12-04).

    python -m loadtest.against REV [--pairs 3] [-- flows arguments, e.g. --workflows 1000]

The revision must have ``loadtest/flows.py`` taking the same arguments and printing its
closing lines (``support x16: 75.0 workflows/s (...); p50 192.3 ms, p99 497.9 ms``) as this
one does: the code since 2026-12-03 does. The worktree is removed at the end, whatever
happens; each run is bounded by the flows' own ``--max-seconds`` and by a timeout here.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import statistics
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from jetmesh.embedded import scratch_dir
from jetmesh.processes import interruptible
from loadtest.stats import aligned

ROOT = Path(__file__).resolve().parent.parent
RUN_TIMEOUT_S = 1800.0
"""A flows run this long has hung: it is stopped and the comparison fails."""
STOP_GRACE_S = 60.0
"""How long a flows run told to stop (SIGTERM) may take to stop its servers and agents
before it is killed."""
_PHASE_LINE = re.compile(
    r"^(?P<phase>\w+ x\d+): (?P<rate>[\d,.]+) workflows/s .*"
    r"p50 (?P<p50>[\d,.]+) ms, p99 (?P<p99>[\d,.]+) ms$"
)


@dataclass(frozen=True)
class Phase:
    """One phase of a flows run (``support x16``): its rate and latency."""

    name: str
    rate: float
    p50_ms: float
    p99_ms: float


Runs = dict[str, Phase]
"""One flows run's phases, by name."""


def phases_of(output: str) -> Runs:
    """The phases of a flows run's output, by name, from its closing lines."""
    found: Runs = {}
    for line in output.splitlines():
        if (m := _PHASE_LINE.match(line.strip())) is not None:
            rate, p50, p99 = (float(m[k].replace(",", "")) for k in ("rate", "p50", "p99"))
            found[m["phase"]] = Phase(m["phase"], rate, p50, p99)
    return found


def format_pairs(pairs: Sequence[tuple[Runs, Runs]], rev: str) -> str:
    """Each phase's pairs (the revision's run, this checkout's), their ratios, and
    the median ratio of each phase."""
    names = [name for name in pairs[0][1] if all(name in a and name in b for a, b in pairs)]
    header = ("phase", "pair", f"{rev} /s", "this /s", "ratio", f"{rev} p99 ms", "this p99 ms")
    rows: list[tuple[str, ...]] = []
    medians: list[str] = []
    for name in names:
        ratios = []
        for n, (before, after) in enumerate(pairs, 1):
            b, a = before[name], after[name]
            ratios.append(a.rate / b.rate)
            rows.append(
                (name, str(n), f"{b.rate:,.1f}", f"{a.rate:,.1f}", f"{ratios[-1]:.2f}",
                 f"{b.p99_ms:,.1f}", f"{a.p99_ms:,.1f}")
            )  # fmt: skip
        medians.append(
            f"{name}: {statistics.median(ratios):.2f} times {rev} (median of {len(ratios)}; "
            f"{min(ratios):.2f}-{max(ratios):.2f})"
        )
    return "\n".join([*aligned([header, *rows]), *medians])


@contextlib.contextmanager
def worktree(rev: str, *, repo: Path = ROOT) -> Iterator[Path]:
    """``rev`` checked out into a temporary worktree of ``repo`` (detached), removed after."""
    with scratch_dir("jetmesh-against-") as tmp:
        path = tmp / "tree"
        subprocess.run(
            ["git", "-C", str(repo), "worktree", "add", "--detach", "--quiet", str(path), rev],
            check=True,
        )
        try:
            yield path
        finally:
            subprocess.run(
                ["git", "-C", str(repo), "worktree", "remove", "--force", str(path)], check=False
            )
            subprocess.run(["git", "-C", str(repo), "worktree", "prune"], check=False)


def run_flows(tree: Path, flows_args: Sequence[str], *, timeout: float = RUN_TIMEOUT_S) -> Runs:
    """One flows run of the code in ``tree`` (its ``shared/`` and services first on the
    path), with this interpreter; its phases. A run past ``timeout``, or this comparison
    interrupted meanwhile, gets SIGTERM, so that it stops the servers and agents it
    started (SIGKILL after :data:`STOP_GRACE_S`).

    Raises:
        RuntimeError: the run failed, timed out or printed no phase.
    """
    env = os.environ | {"PYTHONPATH": os.pathsep.join([str(tree / "shared"), str(tree)])}
    command = [sys.executable, "-m", "loadtest.flows", *flows_args]
    # A session of its own: a Ctrl-C here reaches it once, as the SIGTERM below.
    with subprocess.Popen(
        command,
        cwd=tree,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    ) as proc:
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except BaseException as exc:  # over time, or interrupted: it stops what it started
            proc.terminate()
            try:
                proc.communicate(timeout=STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()
            if isinstance(exc, subprocess.TimeoutExpired):
                raise RuntimeError(f"the flows of {tree} ran over {timeout:.0f} s") from exc
            raise
    phases = phases_of(stdout)
    if proc.returncode != 0 or not phases:
        tail = "\n".join((stderr or stdout).splitlines()[-15:])
        raise RuntimeError(f"the flows of {tree} failed (exit {proc.returncode}):\n{tail}")
    return phases


def run_pairs(
    tree: Path,
    flows_args: Sequence[str],
    *,
    count: int,
    rev: str,
    run: Callable[[Path, Sequence[str]], Runs] = run_flows,
) -> list[tuple[Runs, Runs]]:
    """``count`` pairs of flows runs, the revision's (in ``tree``) and this checkout's, as
    (the revision's, this checkout's): the revision first in odd pairs and second in even
    ones, so that a machine speeding up or slowing down through the sitting does not favour
    one side."""
    pairs: list[tuple[Runs, Runs]] = []
    for n in range(1, count + 1):
        if n % 2:
            print(f"pair {n} of {count}: {rev}, then this checkout", flush=True)
            before = run(tree, flows_args)
            after = run(ROOT, flows_args)
        else:
            print(f"pair {n} of {count}: this checkout, then {rev}", flush=True)
            after = run(ROOT, flows_args)
            before = run(tree, flows_args)
        pairs.append((before, after))
    return pairs


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m loadtest.against",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("rev", help="the git revision to compare with (a commit, tag, branch)")
    parser.add_argument("--pairs", type=int, default=3, help="alternating pairs of runs")
    argv = sys.argv[1:] if argv is None else argv
    cut = argv.index("--") if "--" in argv else len(argv)
    args, flows_args = parser.parse_args(argv[:cut]), argv[cut + 1 :]
    if args.pairs < 1:
        parser.error("--pairs must be at least 1")
    try:
        with interruptible(), worktree(args.rev) as tree:
            pairs = run_pairs(tree, flows_args, count=args.pairs, rev=args.rev)
    except (RuntimeError, subprocess.CalledProcessError) as exc:
        print(f"against {args.rev}: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    print(format_pairs(pairs, args.rev))


if __name__ == "__main__":
    main()
