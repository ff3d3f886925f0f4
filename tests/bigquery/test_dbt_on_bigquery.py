"""The dbt project's bigquery target against the emulator: every model and test of a run, and
runs of two dates replacing only their own cutoffs' partitions."""

from __future__ import annotations

from datetime import timedelta

import pytest

from recpipe.dbt_cli import run_dbt
from recpipe.ingest import ingest_events, ingest_items, ingest_users
from recpipe.warehouse import session
from tests.partitions import assert_only_own_partitions_replaced, build_twice_around_the_next_day

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def built(bq_module_settings, tiny_shop):
    """The tiny shop on the emulator, built with dbt's bigquery target for D, then D+1, then D
    again (dbt builds on the emulator cost a minute each: the tests share these three)."""
    settings = bq_module_settings
    with session(settings) as wh:
        ingest_items(wh, tiny_shop.files["items"])
        ingest_users(wh, tiny_shop.files["users"])
        ingest_events(wh, tiny_shop.files["events"])
    work_dir = settings.home / "dbt"

    def build(day) -> None:
        run_dbt("build", settings, as_of=day, work_dir=work_dir)

    as_of = tiny_shop.end_date - timedelta(days=2)
    return settings, as_of, build_twice_around_the_next_day(build, settings, as_of)


def test_dbt_build_on_the_bigquery_target(built):
    settings, as_of, _ = built
    with session(settings) as wh:
        # the run's cutoffs are ephemeral (no table a run of another date could overwrite)
        assert not wh.table_exists("intermediate", "int_cutoffs")
        n = wh.query_df(
            f"select count(*) as n from {wh.table('candidates', 'cand_popularity')} "
            "where as_of_date = @d",
            {"d": as_of},
        )["n"].iloc[0]
        assert n > 0
        # partitioned by cutoff on BigQuery (bigquery_layout); clustering: real-BigQuery test
        for dataset, table in (("features", "fct_user_features"), ("candidates", "cand_recent")):
            found = wh.client.get_table(wh._table_id(dataset, table))
            assert found.time_partitioning is not None
            assert found.time_partitioning.field == "as_of_date"


def test_a_build_replaces_only_its_own_cutoffs_partitions_on_bigquery(built):
    """insert_overwrite with static partitions (this run's cutoffs): building D, then D+1, then
    D again leaves D's partitions identical and D+1's untouched."""
    _, as_of, (first, second, third) = built
    assert_only_own_partitions_replaced(first, second, third, as_of)
