# Two commands on a fresh machine: `make demo`, then `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test check lint types docs bench bench-flows bench-against chaos chaos-support cluster-chaos restarts poison soak schemas clean down

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,gateway,load]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m services.demo

# Four workers on the reference machine's two cores, each test module on one worker: a
# module's servers and its fault run are set up once. Most of a test's time is spent
# waiting (for a redelivery, a killed process, a server's restart), so four workers keep
# both cores busy: 5.7-6.4 min where two took 9.6-10.3.
test: $(STAMP)
	$(BIN)/pytest -q -n 4 --dist loadfile

lint: $(STAMP)
	$(BIN)/ruff check shared services subjects tests loadtest
	$(BIN)/ruff format --check shared services subjects tests loadtest

types: $(STAMP)
	$(BIN)/mypy

check: lint types test

# The docs site (mkdocs.yml): docs/ and the API reference from the docstrings, into .site/.
docs: $(STAMP)
	$(BIN)/python -m mkdocs build --strict

# The hop against the floor as jetmesh load scenarios (loadtest/scenarios/bench-*.toml): on
# one server (ledger off and on, traces on) three runs, on a three-node cluster (R3) one.
bench: $(STAMP)
	$(BIN)/python -m loadtest.bench

bench-flows: $(STAMP)
	$(BIN)/python -m loadtest.flows

# The flows against an earlier revision, pairs of runs alternating in one sitting:
#   make bench-against REV=<commit> [PAIRS=3] [FLOWS="--workflows 1000"]
bench-against: $(STAMP)
	@test -n "$(REV)" || { echo "usage: make bench-against REV=<git revision> [PAIRS=3] [FLOWS=...]"; exit 2; }
	$(BIN)/python -m loadtest.against $(REV) --pairs $(or $(PAIRS),3) -- $(FLOWS)

chaos: $(STAMP)
	$(BIN)/jetmesh load run loadtest/scenarios/chaos.toml --out out/chaos

chaos-support: $(STAMP)
	$(BIN)/python -m loadtest.chaos_support

cluster-chaos: $(STAMP)
	$(BIN)/python -m loadtest.cluster_chaos

# 20,000 tasks while nats-server and redis-server are SIGKILLed in turn, six times; the
# audit counts each task's runs: every acknowledged task ran once, none lost, no dead letter.
restarts: $(STAMP)
	$(BIN)/jetmesh load run loadtest/scenarios/restarts.toml --out out/restarts --quiet

# The others' p99 with one item in ten failing on every delivery (dead-lettered after 4),
# against a baseline without: B's p99 at most twice A's; the poison run's audit checks that
# every poison item was dead-lettered.
poison: $(STAMP)
	$(BIN)/jetmesh load run loadtest/scenarios/poison-baseline.toml --out out/poison-baseline --quiet
	$(BIN)/jetmesh load run loadtest/scenarios/poison.toml --out out/poison --quiet
	$(BIN)/jetmesh load compare out/poison-baseline/report.json out/poison/report.json --limit p99=2.0

# Ten minutes of the echo agent at half the rate it holds, on servers the run starts:
# memory of every process and the p99 latency must stay flat (out/soak/report.md, plots).
soak: $(STAMP)
	$(BIN)/jetmesh load run shared/jetmesh/load/scenarios/echo-soak.toml --soak --out out/soak --plots

schemas: $(STAMP)
	$(BIN)/python -m subjects.generate
	$(BIN)/python -m subjects.vectors

down: $(STAMP)
	$(BIN)/jetmesh down

clean:
	rm -rf $(VENV) .jetmesh .pytest_cache .mypy_cache .ruff_cache .site
