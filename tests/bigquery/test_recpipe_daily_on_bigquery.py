"""The whole recpipe_daily DAG on the BigQuery target (the emulator), through Airflow (dag.test)
and cosmos, while a run of the day before (every stage, without Airflow: tests/bigquery/stages.py)
goes on at the same time in the same datasets; as in the DAG, only the two dbt builds take turns
(and, on the emulator only, the two runs' transactions: tests/bigquery/emulator_sessions.py).

BigQuery lets runs of different dates overlap (``dag_concurrency``); nothing one run writes may
be read or replaced by the other. Both dates must publish exactly what the same shop publishes
on DuckDB, where the two dates ran one after the other; the day before, scored again in four
user shards (``RECPIPE_USER_SHARDS``), publishes the same rows once more. The day before is then
built again: dbt's bigquery target replaced only its own cutoffs' partitions each time.

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
from recpipe.dbt_cli import run_dbt
from recpipe.settings import REPO_ROOT
from recpipe.warehouse import session
from tests.bigquery.emulator_sessions import transactions_one_at_a_time
from tests.bigquery.stages import ingest_shop, published, run_every_stage, run_of
from tests.partitions import (
    assert_only_own_partitions_replaced,
    partition_digests,
    python_candidates,
)

pytestmark = pytest.mark.slow

CONF = {"retrain": "always", "k": 10}

# recpipe_daily through Airflow for one date, in a child process; prints the outcome as JSON.
_RUN_DAG = """
import json, sys
from datetime import date
import google.cloud.bigquery.client as client
client._GENERIC_CONTENT_TYPE = "application/octet-stream"  # as the emulator_uploads fixture
from tests.bigquery.emulator_sessions import serialize_transactions
serialize_transactions()  # as the test's process (emulator_sessions.py)
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


@dataclasses.dataclass
class TwoDates:
    """What the scenario left for its tests: the settings of both warehouses, the two dates,
    the DAG run's outcome and the dbt tables' partition digests after each build."""

    bq: object
    duckdb: object
    day: object
    day_before: object
    outcome: dict
    digests: tuple


@pytest.fixture(scope="module")
def two_dates(bq_module_settings, tiny_shop, airflow_db, tmp_path_factory) -> TwoDates:
    """The day before (every stage, without Airflow) and the day (the DAG, in a child process)
    at once on the emulator, then the day before's dbt build again; the same two dates on DuckDB,
    one after the other. dbt builds on the emulator cost about a minute each: the tests of this
    module share these three (D - 1, D, D - 1 again)."""
    bq_settings, tmp_path = bq_module_settings, tmp_path_factory.mktemp("two_dates")
    day = tiny_shop.end_date + timedelta(days=1)
    day_before = day - timedelta(days=1)

    duckdb_settings = replace(bq_settings, warehouse="duckdb", home=tmp_path / "duckdb_home")
    run_every_stage(duckdb_settings, tiny_shop, day_before, tmp_path / "duckdb")
    run_every_stage(duckdb_settings, tiny_shop, day, tmp_path / "duckdb", ingest=False)

    ingest_shop(bq_settings, tiny_shop)
    errors: list[BaseException] = []
    digests: list[dict] = []
    built = threading.Event()

    def after_the_day_before_built() -> None:
        digests.append(partition_digests(bq_settings))  # before the DAG's build starts
        built.set()

    def the_day_before() -> None:
        try:
            run_every_stage(
                bq_settings, tiny_shop, day_before, tmp_path / "other", ingest=False,
                after_dbt=after_the_day_before_built,
            )  # fmt: skip
        except BaseException as err:  # re-raised in the test's thread below
            errors.append(err)
        finally:
            built.set()

    with transactions_one_at_a_time(str(tmp_path / "transaction.lock")):
        other = threading.Thread(target=the_day_before, name="run-of-the-day-before")
        other.start()
        # The DAG lets one dbt build run at a time (dag_definition.dbt_producer_args): the run
        # of `day` starts once the day before's build ended, and the rest of both runs overlaps.
        built.wait()
        outcome = run_dag_in_a_child(day, CONF, tmp_path / "dag_run.log")
        other.join()
    assert outcome["state"] == "success", outcome["failed"]
    if errors:
        raise errors[0]
    digests.append(partition_digests(bq_settings))
    run_dbt("build", bq_settings, as_of=day_before, work_dir=tmp_path / "dbt_again")
    digests.append(partition_digests(bq_settings))
    return TwoDates(bq_settings, duckdb_settings, day, day_before, outcome, tuple(digests))


def test_two_dates_at_once_on_bigquery_publish_what_duckdb_publishes(two_dates):
    bq_settings, duckdb_settings = two_dates.bq, two_dates.duckdb
    day, day_before = two_dates.day, two_dates.day_before
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
        f"task seconds {two_dates.outcome['seconds']}"
    )
    assert_four_shards_publish_the_same(bq_settings, day_before)


def test_dbt_build_on_the_bigquery_target(two_dates):
    with session(two_dates.bq) as wh:
        # the run's cutoffs are ephemeral (no table a run of another date could overwrite)
        assert not wh.table_exists("intermediate", "int_cutoffs")
        n = wh.query_df(
            f"select count(*) as n from {wh.table('candidates', 'cand_popularity')} "
            "where as_of_date = @d",
            {"d": two_dates.day},
        )["n"].iloc[0]
        assert n > 0
        # partitioned by cutoff on BigQuery (bigquery_layout); clustering: real-BigQuery test
        for dataset, table in (("features", "fct_user_features"), ("candidates", "cand_recent")):
            found = wh.client.get_table(wh._table_id(dataset, table))
            assert found.time_partitioning is not None
            assert found.time_partitioning.field == "as_of_date"


def test_a_build_replaces_only_its_own_cutoffs_partitions_on_bigquery(two_dates):
    """insert_overwrite with static partitions (this run's cutoffs): building D - 1, then D (the
    DAG, while D - 1's run went on), then D - 1 again leaves D - 1's partitions identical and
    D's untouched."""
    first, second, third = two_dates.digests
    assert_only_own_partitions_replaced(first, second, third, two_dates.day_before)


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
