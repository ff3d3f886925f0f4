"""The dbt project's bigquery target against the emulator: every model and test of a run."""

from __future__ import annotations

from datetime import timedelta

import pytest

from recpipe.dbt_cli import run_dbt
from recpipe.ingest import ingest_events, ingest_items, ingest_users
from recpipe.warehouse import session
from tests.partitions import assert_only_own_partitions_replaced, build_twice_around_the_next_day

pytestmark = pytest.mark.slow


def test_dbt_build_on_the_bigquery_target(bq_settings, tiny_shop, tmp_path):
    with session(bq_settings) as wh:
        ingest_items(wh, tiny_shop.files["items"])
        ingest_users(wh, tiny_shop.files["users"])
        ingest_events(wh, tiny_shop.files["events"])
    as_of = (tiny_shop.end_date + timedelta(days=1)).isoformat()
    run_dbt("build", bq_settings, as_of=as_of, work_dir=tmp_path / "dbt")
    with session(bq_settings) as wh:
        # the run's cutoffs are ephemeral (no table a run of another date could overwrite)
        assert not wh.table_exists("intermediate", "int_cutoffs")
        n = wh.query_df(
            f"select count(*) as n from {wh.table('candidates', 'cand_popularity')} "
            "where as_of_date = @d",
            {"d": tiny_shop.end_date + timedelta(days=1)},
        )["n"].iloc[0]
        assert n > 0
        # partitioned by cutoff on BigQuery (bigquery_layout); clustering: real-BigQuery test
        for dataset, table in (("features", "fct_user_features"), ("candidates", "cand_recent")):
            found = wh.client.get_table(wh._table_id(dataset, table))
            assert found.time_partitioning is not None
            assert found.time_partitioning.field == "as_of_date"


def test_a_build_replaces_only_its_own_cutoffs_partitions_on_bigquery(
    bq_settings, tiny_shop, tmp_path
):
    """insert_overwrite with static partitions (this run's cutoffs): building D, then D+1, then
    D again leaves D's partitions identical and D+1's untouched."""
    with session(bq_settings) as wh:
        ingest_items(wh, tiny_shop.files["items"])
        ingest_users(wh, tiny_shop.files["users"])
        ingest_events(wh, tiny_shop.files["events"])

    def build(day) -> None:
        run_dbt("build", bq_settings, as_of=day, work_dir=tmp_path / "dbt")

    as_of = tiny_shop.end_date - timedelta(days=2)
    first, second, third = build_twice_around_the_next_day(build, bq_settings, as_of)
    assert_only_own_partitions_replaced(first, second, third, as_of)
