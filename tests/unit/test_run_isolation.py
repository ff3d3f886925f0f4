"""What lets runs of different dates overlap on BigQuery: per-call batch tables, cutoffs derived
from the run itself, and the DAG's concurrency per warehouse."""

from __future__ import annotations

from dataclasses import replace
from datetime import date

import pandas as pd
import pytest

from recpipe.airflow_tasks import dbt_vars_template
from recpipe.dag_definition import WAREHOUSE_POOL, dag_concurrency
from recpipe.runs import Run, run_cutoffs, train_cutoffs
from recpipe.settings import Settings, load_settings
from recpipe.warehouse import DuckDBWarehouse, batch_table


def test_duckdb_runs_one_date_at_a_time_bigquery_several(tmp_path, monkeypatch):
    duckdb = Settings(home=tmp_path)
    assert dag_concurrency(duckdb) == {"max_active_runs": 1, "pool": WAREHOUSE_POOL}
    bigquery = replace(duckdb, warehouse="bigquery")
    assert dag_concurrency(bigquery) == {"max_active_runs": 4, "pool": "default_pool"}
    monkeypatch.setenv("RECPIPE_WAREHOUSE", "bigquery")
    monkeypatch.setenv("RECPIPE_MAX_ACTIVE_RUNS", "6")
    assert dag_concurrency(load_settings())["max_active_runs"] == 6
    monkeypatch.setenv("RECPIPE_WAREHOUSE", "duckdb")
    assert dag_concurrency(load_settings())["max_active_runs"] == 1


def test_cutoffs_come_from_the_run_and_reach_dbt_as_vars(tmp_path):
    settings = Settings(home=tmp_path, label_days=5, active_days=30, candidate_depth=20)
    run = Run(as_of="2026-10-01", run_id="r", k=10, retrain="auto")
    assert run_cutoffs(run, settings) == {
        "serve": date(2026, 10, 1),
        "valid": date(2026, 9, 26),
        "train": date(2026, 9, 21),
    }
    stacked = replace(settings, train_cutoffs=3)
    assert run_cutoffs(run, stacked) == {
        "serve": date(2026, 10, 1),
        "valid": date(2026, 9, 26),
        "train": date(2026, 9, 21),
        "train_2": date(2026, 9, 16),
        "train_3": date(2026, 9, 11),
    }
    assert train_cutoffs(run_cutoffs(run, stacked)) == [
        date(2026, 9, 21), date(2026, 9, 16), date(2026, 9, 11)
    ]  # fmt: skip
    assert dbt_vars_template("run__resolve_params", stacked)["train_cutoffs"] == 3
    dbt_vars = dbt_vars_template("run__resolve_params", settings)
    assert dbt_vars["label_days"] == 5 and dbt_vars["active_days"] == 30
    assert dbt_vars["train_cutoffs"] == 1
    assert dbt_vars["candidate_depth"] == 20 and "xcom_pull" in dbt_vars["as_of"]


def test_every_batch_gets_its_own_table_dropped_after_use(tmp_path):
    wh = DuckDBWarehouse(str(tmp_path / "w.duckdb"))
    rows = pd.DataFrame({"x": [1, 2]})
    with batch_table(wh, rows, "dq_batch") as first, batch_table(wh, rows, "dq_batch") as second:
        assert first != second
        assert wh.query_df(f"select count(*) as n from {first}")["n"].iloc[0] == 2
    with pytest.raises(RuntimeError), batch_table(wh, rows, "dq_batch"):
        raise RuntimeError("a failed insert")
    left = wh.query_df(
        "select count(*) as n from information_schema.tables where table_schema = 'work'"
    )
    assert left["n"].iloc[0] == 0
    wh.close()
