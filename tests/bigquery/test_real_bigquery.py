"""What only real BigQuery can show. Runs only with real credentials and a project to bill:

    RECPIPE_TEST_REAL_BIGQUERY_PROJECT=my-project \\
    GOOGLE_APPLICATION_CREDENTIALS=key.json \\
    .venv/bin/python -m pytest tests/bigquery -m real_bigquery

Each test works in datasets named `recpipe_test_<random>_*` and deletes them afterwards; the
whole file processes a few MB (the tiny shop), within BigQuery's free tier.
"""

from __future__ import annotations

import os
import uuid
from datetime import date, timedelta

import pytest

from recpipe.tables import PUBLISHED, ensure_tables

PROJECT = os.environ.get("RECPIPE_TEST_REAL_BIGQUERY_PROJECT")

pytestmark = [
    pytest.mark.real_bigquery,
    pytest.mark.slow,
    pytest.mark.skipif(not PROJECT, reason="set RECPIPE_TEST_REAL_BIGQUERY_PROJECT to run"),
]


@pytest.fixture
def real_settings(recpipe_home, monkeypatch):
    from recpipe.settings import load_settings

    prefix = f"recpipe_test_{uuid.uuid4().hex[:8]}_"
    monkeypatch.setenv("RECPIPE_WAREHOUSE", "bigquery")
    monkeypatch.setenv("RECPIPE_BQ_PROJECT", PROJECT)
    monkeypatch.delenv("RECPIPE_BQ_API_ENDPOINT", raising=False)
    monkeypatch.setenv("RECPIPE_BQ_DATASET_PREFIX", prefix)
    settings = load_settings()
    yield settings
    from recpipe.warehouse import connect

    wh = connect(settings)
    for dataset in wh.client.list_datasets():
        if dataset.dataset_id.startswith(prefix):
            wh.client.delete_dataset(dataset.reference, delete_contents=True, not_found_ok=True)
    wh.close()


@pytest.fixture
def real_warehouse(real_settings):
    from recpipe.warehouse import connect

    wh = connect(real_settings)
    yield wh
    wh.close()


def test_published_tables_are_partitioned_and_clustered(real_warehouse):
    ensure_tables(real_warehouse)
    recs = real_warehouse.client.get_table(real_warehouse._table_id(PUBLISHED, "recommendations"))
    assert recs.time_partitioning.field == "run_date"
    assert recs.clustering_fields == ["user_id"]
    events = real_warehouse.client.get_table(real_warehouse._table_id("raw", "events"))
    assert events.time_partitioning is not None
    assert events.clustering_fields == ["user_id", "item_id"]


def test_a_transaction_is_invisible_until_commit(real_warehouse):
    """The emulator applies a session's statements at once; BigQuery isolates them (snapshot)."""
    ensure_tables(real_warehouse)
    recs = real_warehouse.table(PUBLISHED, "recommendations")
    day = date(2026, 3, 1)
    real_warehouse.execute(
        f"insert into {recs} values (@d, 'u1', 1, 'i1', 1.0, 'm', 'popularity')", {"d": day}
    )
    count = f"select count(*) as n from {recs} where run_date = @d"
    with real_warehouse.transaction():
        real_warehouse.execute(f"delete from {recs} where run_date = @d", {"d": day})
        reader = type(real_warehouse)(real_warehouse.client)
        assert int(reader.query_df(count, {"d": day})["n"].iloc[0]) == 1
    assert int(real_warehouse.query_df(count, {"d": day})["n"].iloc[0]) == 0


def test_maximum_bytes_billed_stops_a_query(real_warehouse):
    from google.api_core.exceptions import GoogleAPICallError

    ensure_tables(real_warehouse)
    real_warehouse.maximum_bytes_billed = 1  # below BigQuery's 10 MB minimum per query
    with pytest.raises(GoogleAPICallError, match="(?i)bytes billed"):
        real_warehouse.query_df(
            "select count(*) from `bigquery-public-data.samples.shakespeare` where word = @w",
            {"w": "king"},
        )


def test_every_stage_publishes_on_real_bigquery(real_settings, tiny_shop, tmp_path):
    """Type rules the emulator (DuckDB underneath) is lenient about, e.g. TIMESTAMP vs DATE."""
    from tests.bigquery.stages import published, run_every_stage

    as_of = tiny_shop.end_date + timedelta(days=1)
    run_every_stage(real_settings, tiny_shop, as_of, tmp_path)
    recs = published(real_settings, as_of)
    assert len(recs) > 0
    assert recs.groupby("user_id").size().max() <= 10
