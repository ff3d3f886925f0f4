"""The whole recpipe_daily DAG on the BigQuery target (the emulator), through Airflow (dag.test)
and cosmos, while a run of the day before (every stage, without Airflow: tests/bigquery/stages.py)
goes on at the same time in the same datasets; as in the DAG, only the two dbt builds take turns.

BigQuery lets runs of different dates overlap (``dag_concurrency``); nothing one run writes may
be read or replaced by the other. Both dates must publish exactly what the same shop publishes
on DuckDB, where the two dates ran one after the other; the day before, scored again in four
user shards (``RECPIPE_USER_SHARDS``), publishes the same rows once more.

Airflow runs in a child process, as on a worker: cosmos runs dbt in-process (dbtRunner), and
after a hundred bigquery-target invocations the test process's later in-process dbt runs on
DuckDB were several times slower.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import threading
from dataclasses import replace
from datetime import timedelta

import pandas as pd
import pytest

from recpipe import pipeline
from recpipe.settings import REPO_ROOT
from recpipe.warehouse import session
from tests.bigquery.stages import ingest_shop, published, run_every_stage, run_of
from tests.partitions import python_candidates

pytestmark = pytest.mark.slow

CONF = {"retrain": "always", "k": 10}

# recpipe_daily through Airflow for one date, in a child process; prints the outcome as JSON.
_RUN_DAG = """
import json, sys
from datetime import date
import google.cloud.bigquery.client as client
client._GENERIC_CONTENT_TYPE = "application/octet-stream"  # as the emulator_uploads fixture
from recpipe.airflow_runner import run_dag
from recpipe.settings import load_settings
outcome = run_dag(load_settings(), date.fromisoformat(sys.argv[1]), json.loads(sys.argv[2]))
print("OUTCOME " + json.dumps(
    {"state": outcome.state, "failed": outcome.failed_tasks, "seconds": outcome.task_seconds}
))
"""


def run_dag_in_a_child(day, conf, log) -> dict:
    with log.open("w") as sink:
        subprocess.run(
            [sys.executable, "-c", _RUN_DAG, day.isoformat(), json.dumps(conf)],
            cwd=REPO_ROOT,
            env=os.environ.copy(),
            stdout=sink,
            stderr=subprocess.STDOUT,
            timeout=1800,
            check=False,
        )
    lines = [line for line in log.read_text().splitlines() if line.startswith("OUTCOME ")]
    assert lines, f"the DAG run printed no outcome; its log: {log}"
    return json.loads(lines[-1].removeprefix("OUTCOME "))


def test_two_dates_at_once_on_bigquery_publish_what_duckdb_publishes(
    bq_settings, tiny_shop, airflow_db, tmp_path
):
    day = tiny_shop.end_date + timedelta(days=1)
    day_before = day - timedelta(days=1)

    duckdb_settings = replace(bq_settings, warehouse="duckdb", home=tmp_path / "duckdb_home")
    run_every_stage(duckdb_settings, tiny_shop, day_before, tmp_path / "duckdb")
    run_every_stage(duckdb_settings, tiny_shop, day, tmp_path / "duckdb", ingest=False)

    ingest_shop(bq_settings, tiny_shop)
    errors: list[BaseException] = []

    built = threading.Event()

    def the_day_before() -> None:
        try:
            run_every_stage(
                bq_settings, tiny_shop, day_before, tmp_path / "other", ingest=False,
                after_dbt=built.set,
            )  # fmt: skip
        except BaseException as err:  # re-raised in the test's thread below
            errors.append(err)
        finally:
            built.set()

    other = threading.Thread(target=the_day_before, name="run-of-the-day-before")
    other.start()
    # The DAG lets one dbt build run at a time (dag_definition.dbt_producer_args): the run of
    # `day` starts once the day before's build ended, and the rest of both runs overlaps.
    built.wait()
    outcome = run_dag_in_a_child(day, CONF, tmp_path / "dag_run.log")
    other.join()
    assert outcome["state"] == "success", outcome["failed"]
    if errors:
        raise errors[0]

    with session(bq_settings) as wh:
        latest = wh.query_df(
            f"select count(*) as n from {wh.table('recpipe', 'recommendations_latest')}"
        )
        gates = wh.query_df(
            f"select distinct stage from {wh.table('recpipe', 'dq_results')} where run_date = @d",
            {"d": day},
        )
    assert {"raw", "features", "candidates", "model", "output"} <= set(gates["stage"])
    for run_date in (day_before, day):
        on_bigquery = published(bq_settings, run_date)
        on_duckdb = published(duckdb_settings, run_date)
        assert len(on_bigquery) > 0
        assert on_bigquery.groupby("user_id").size().max() <= CONF["k"]
        columns = ["user_id", "rank", "item_id", "sources", "model_version"]
        pd.testing.assert_frame_equal(on_bigquery[columns], on_duckdb[columns])
        assert (on_bigquery["score"] - on_duckdb["score"]).abs().max() < 1e-9
    assert int(latest["n"].iloc[0]) == len(published(bq_settings, day))
    print(
        f"\nwhole DAG on bigquery for {day} beside a run of {day_before}: "
        f"{len(published(bq_settings, day))} rows, same as DuckDB for both dates; "
        f"task seconds {outcome['seconds']}"
    )
    assert_four_shards_publish_the_same(bq_settings, day_before)


def assert_four_shards_publish_the_same(settings, day) -> None:
    """The Python sources and the scoring of ``day``'s run again as 4 user shards (4 staging
    tables, one merge; 4 staging tables, one audit, one publish): the same rows."""
    before = published(settings, day)
    sharded = dataclasses.replace(settings, user_shards=4)
    run = run_of(settings, day)
    candidates = python_candidates(settings)
    staged = [pipeline.generate_python_candidates(run, sharded, shard=i) for i in range(4)]
    assert pipeline.merge_python_candidates(run, sharded) == sum(staged) > 0
    for unsharded, shards in zip(candidates, python_candidates(settings), strict=True):
        pd.testing.assert_frame_equal(unsharded, shards)
    version = before["model_version"].iloc[0]
    staged = [pipeline.score_candidates(run, version, sharded, shard=i) for i in range(4)]
    assert min(staged) > 0
    pipeline.check_output(run, sharded)
    assert pipeline.publish_recommendations(run, sharded) == sum(staged) == len(before)
    pd.testing.assert_frame_equal(published(settings, day), before)
