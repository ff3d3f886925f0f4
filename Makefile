# The two commands a newcomer needs: `make demo` and `make test`. Both create .venv when missing.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: venv demo test test-fast lint clean airflow bqemulator manifest

# --compile-bytecode: every Airflow task, dbt build and CLI call is a fresh process, and where
# PYTHONDONTWRITEBYTECODE is set (as on the CI machines) each would compile its imports again
# (importing the pipeline's modules: 2.0 s without .pyc files, 0.6 s with them).
$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv==0.13.8
	$(BIN)/uv pip install --python $(BIN)/python --quiet --compile-bytecode -r requirements.txt
	$(BIN)/uv pip install --python $(BIN)/python --quiet --no-deps -e .
	touch $(STAMP)

venv: $(STAMP)

## The dbt manifest cosmos renders the DAG's dbt tasks from (the DAG file never runs dbt).
manifest: venv
	$(BIN)/recpipe manifest

## Generate a synthetic shop, ingest it and run recpipe_daily through Airflow on DuckDB.
demo: venv
	$(BIN)/recpipe demo

## Lint, then every test suite: fast unit/DAG tests and the slow end-to-end ones, on pytest-xdist
## workers, a test file at a time (tests/conftest.py: work units). Three on a 2-core box: the
## suite waits much of its time (scheduler loops, the emulator, process start-ups): two workers
## kept ~1.65 of the 2 cores busy, three 1.8-1.9 (docs/decisions.md).
TEST_WORKERS ?= 3
test: venv bqemulator lint manifest
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --no-loadscope-reorder --durations=20

test-fast: venv manifest
	$(BIN)/python -m pytest -n $(TEST_WORKERS) -m "not slow"

## A local Airflow on 127.0.0.1 (api-server, scheduler, dag-processor; AIRFLOW_HOME under
## $(RECPIPE_HOME)/airflow): waits until recpipe_daily is parsed, prints URL and login. Ctrl-C stops.
airflow: venv
	$(BIN)/python -m recpipe.services up

## The local BigQuery emulator's own venv (.venv-bqemu: bqemulator pins duckdb 1.5.5) used by
## tests/bigquery; the tests create it too when it is missing.
bqemulator: venv
	$(BIN)/python -c "from tests.bigquery.conftest import ensure_emulator_venv as e; e()"

## sqlfluff (.sqlfluff) renders every dbt model and singular test with the dbt templater on
## DuckDB (an empty scratch file: incremental models lint as their first build; dbt's target
## directory in scratch too, so the DAG's manifest and partial parse stay as built) and lints them.
SQLFLUFF_VENV := .venv-sqlfluff
$(SQLFLUFF_VENV)/.installed: requirements-sqlfluff.txt | venv
	test -x $(SQLFLUFF_VENV)/bin/python || $(BIN)/uv venv --quiet --python $(BIN)/python $(SQLFLUFF_VENV)
	$(BIN)/uv pip install --python $(SQLFLUFF_VENV)/bin/python --quiet -r requirements-sqlfluff.txt
	touch $@

lint: venv $(SQLFLUFF_VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	scratch=$$(mktemp -d) && RECPIPE_DUCKDB_PATH=$$scratch/lint.duckdb DBT_TARGET_PATH=$$scratch/target \
		$(SQLFLUFF_VENV)/bin/sqlfluff lint --disable-progress-bar dbt_project/models dbt_project/tests; \
		status=$$?; rm -rf $$scratch; exit $$status

clean:
	rm -rf .recpipe dbt_project/target dbt_project/logs
