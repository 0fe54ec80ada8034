# The two set-up commands of the README: `make demo` and `make test`. Each creates its own virtualenv, made again
# when pyproject.toml, its constraints or this Makefile (its recipe) change.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

BENCH_STAMP := $(VENV)/.bench-stamp

# Supported Airflow lines, oldest first; each has its pinned constraints in constraints/airflow-<line>.txt.
AIRFLOW_LINES := 3.1 3.2 3.3
AIRFLOW_OLDEST := 3.1
AIRFLOW_MIDDLE := 3.2
AIRFLOW_NEWEST := 3.3

.PHONY: install demo docs test test-oldest-line test-middle-line-ui test-matrix test-airflow lint bench soak clean

# The demo's own virtualenv holds what a user installs: the package and its runtime dependencies, no test tool.
DEMO_VENV ?= .venv-demo
DEMO_STAMP := $(DEMO_VENV)/.installed-stamp

$(STAMP): pyproject.toml constraints/airflow-$(AIRFLOW_NEWEST).txt Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv
	$(BIN)/uv pip install --quiet --compile-bytecode --python $(BIN)/python -c constraints/airflow-$(AIRFLOW_NEWEST).txt -e . --group dev --group docs
	touch $(STAMP)

$(DEMO_STAMP): pyproject.toml constraints/airflow-$(AIRFLOW_NEWEST).txt Makefile
	$(PYTHON) -m venv $(DEMO_VENV)
	$(DEMO_VENV)/bin/python -m pip install --quiet --disable-pip-version-check uv
	$(DEMO_VENV)/bin/uv pip install --quiet --compile-bytecode --python $(DEMO_VENV)/bin/python -c constraints/airflow-$(AIRFLOW_NEWEST).txt -e .
	touch $(DEMO_STAMP)

install: $(STAMP)

demo: $(DEMO_STAMP)
	PATH="$(CURDIR)/$(DEMO_VENV)/bin:$$PATH" $(DEMO_VENV)/bin/python scripts/demo.py

# The documentation site, in strict mode: a broken link, reference or include fails it.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# The suite runs in parallel (pytest-xdist): its time is mostly Airflow starting up and jobs running, so a
# worker more than the cores keeps both busy (5 workers were no faster). The UI's and the real deployment's
# standalones run one after the other on one worker (xdist group `deployment`), the distributed cluster on
# another (group `cluster`). Each run ends with its 20 slowest tests: where the suite's time goes.
PYTEST_WORKERS ?= 3
PARALLEL := -n $(PYTEST_WORKERS) --dist loadgroup --durations=20

# The whole suite on the newest Airflow; then, side by side, what can differ by line on the oldest (the tests
# marked `every_line`: the version module's branches, hooks, the connection form, the reattach and cancel paths,
# the trigger, storage, the operators' deferral in DAG runs, a real deployment) and the UI in a browser on a real
# deployment on the middle one. These two are short and wait on Airflow more than they compute: the oldest line
# spreads its real deployment's tests over its workers (`--dist load`, a standalone each; one test at a time,
# `--maxschedchunk 1`: sent in chunks, one worker was left with seven of them and ran 3 minutes after the others),
# the UI's tests run in one process. `make test-matrix` runs everything on every line.
# The other lines' virtualenvs are built while lint and the docs run, not after the suite.
test: $(STAMP)
	$(MAKE) --no-print-directory -j3 --output-sync=target lint docs \
		$(call line_venv,$(AIRFLOW_OLDEST)) $(call line_venv,$(AIRFLOW_MIDDLE))
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/pytest $(PARALLEL)
	$(MAKE) --no-print-directory -j2 --output-sync=recurse test-oldest-line test-middle-line-ui

test-oldest-line:
	$(MAKE) --no-print-directory test-airflow AIRFLOW_LINE=$(AIRFLOW_OLDEST) \
		TESTS="-n $(PYTEST_WORKERS) --dist load --maxschedchunk 1 --durations=20 -m every_line"

test-middle-line-ui:
	$(MAKE) --no-print-directory test-airflow AIRFLOW_LINE=$(AIRFLOW_MIDDLE) \
		TESTS="-n 0 --durations=20 tests/test_ui_preview.py"

# The whole suite on every supported Airflow line.
test-matrix: lint
	for line in $(AIRFLOW_LINES); do $(MAKE) --no-print-directory test-airflow AIRFLOW_LINE=$$line TESTS="$(PARALLEL)" || exit 1; done

# One Airflow line (AIRFLOW_LINE, required) in its own virtualenv (.venv-airflow-<line>), built with uv from its
# constraints with the dev and docs groups (again when they, pyproject.toml or this Makefile change); the package
# tests find uv in the main virtualenv, last on PATH.
line_venv = .venv-airflow-$(1)/.stamp

.venv-airflow-%/.stamp: constraints/airflow-%.txt pyproject.toml Makefile | $(STAMP)
	$(BIN)/uv venv --quiet --clear --python $(PYTHON) $(@D)
	$(BIN)/uv pip install --quiet --compile-bytecode --python $(@D)/bin/python -c $< -e . --group dev --group docs
	touch $@

test-airflow: $(call line_venv,$(AIRFLOW_LINE))
	@echo "== Airflow $$(.venv-airflow-$(AIRFLOW_LINE)/bin/python -c 'import importlib.metadata as m; print(m.version("apache-airflow"))')"
	PATH="$(CURDIR)/.venv-airflow-$(AIRFLOW_LINE)/bin:$$PATH:$(CURDIR)/$(BIN)" .venv-airflow-$(AIRFLOW_LINE)/bin/pytest $(TESTS)

$(BENCH_STAMP): $(STAMP)
	$(BIN)/uv pip install --quiet --compile-bytecode --python $(BIN)/python -e . --group dev --group bench
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m bench.run

# The batch DAG over many clips on the distributed deployment (PostgreSQL, Redis, Celery, two triggerers, S3)
# under random API faults and process kills; prints its seed, what it injected and the ledger. SOAK: its
# options (python -m tests.soak --help), e.g. SOAK="--seed 1234 --clips 40" replays seed 1234.
soak: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m tests.soak $(SOAK)

clean:
	rm -rf $(VENV) $(DEMO_VENV) .venv-airflow-* .demo site .pytest_cache .mypy_cache .ruff_cache
