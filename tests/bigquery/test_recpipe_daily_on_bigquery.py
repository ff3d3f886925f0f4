"""The whole recpipe_daily DAG, through Airflow (dag.test) and cosmos, on the BigQuery target.

Opt-in (RECPIPE_TEST_BIGQUERY_DAG=1): every cosmos dbt task costs ~20 s on the bigquery target
(dbt-bigquery's start-up in each task; ~1 s on DuckDB), so the run takes ~25 min on a 2-core
box. CI covers the same stages, with dbt in one `dbt build`, in test_parity_with_duckdb.py.
"""

from __future__ import annotations

import os
from datetime import timedelta

import pytest

from recpipe.airflow_runner import run_dag
from recpipe.ingest import ingest_events, ingest_items, ingest_users
from recpipe.warehouse import session

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        os.environ.get("RECPIPE_TEST_BIGQUERY_DAG") != "1",
        reason="the whole DAG on the emulator takes ~25 min: set RECPIPE_TEST_BIGQUERY_DAG=1",
    ),
]


def test_daily_run_on_the_bigquery_target(bq_settings, tiny_shop, airflow_db):
    as_of = tiny_shop.end_date + timedelta(days=1)
    with session(bq_settings) as wh:
        ingest_items(wh, tiny_shop.files["items"])
        ingest_users(wh, tiny_shop.files["users"])
        ingest_events(wh, tiny_shop.files["events"])
    outcome = run_dag(bq_settings, as_of, {"retrain": "always", "k": 10})
    assert outcome.ok, outcome.failed_tasks
    with session(bq_settings) as wh:
        recs = wh.query_df(
            "select user_id, rank, item_id from recpipe.recommendations where run_date = @d",
            {"d": as_of},
        )
        runs = wh.query_df(
            "select status, rows from recpipe.pipeline_runs where run_date = @d", {"d": as_of}
        )
        latest = wh.query_df("select count(*) as n from recpipe.recommendations_latest")
        gates = wh.query_df(
            "select distinct stage from recpipe.dq_results where run_date = @d", {"d": as_of}
        )
    assert runs["status"].tolist() == ["success"]
    assert int(runs["rows"].iloc[0]) == len(recs) == int(latest["n"].iloc[0]) > 0
    assert recs.groupby("user_id").size().max() <= 10
    assert not recs.duplicated(["user_id", "item_id"]).any()
    assert {"raw", "features", "candidates", "model", "output"} <= set(gates["stage"])
    print(f"\nwhole DAG on bigquery: {len(recs)} rows, task seconds {outcome.task_seconds}")
