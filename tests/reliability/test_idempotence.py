"""Reruns are transactions: rerunning a date gives identical rows (hashed) and changes no other
date; LightGBM retrained on the same data is the same model; awkward ids are served as data.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from recpipe.ingest import ingest_events, ingest_items, ingest_users
from recpipe.settings import load_settings
from recpipe.warehouse import session
from tests.partitions import (
    assert_only_own_partitions_replaced,
    build_twice_around_the_next_day,
    partition_digests,
)

from .conftest import (
    ODD_USERS,
    ONE_EVENT_USER,
    K,
    dbt_build,
    digest,
    make_run,
    published,
    run_stages,
)

pytestmark = pytest.mark.slow


def registry_version(settings, run_date) -> str:
    with session(settings) as wh:
        return wh.query_df(
            "select model_version from recpipe.model_registry where as_of_date = @d",
            {"d": run_date},
        )["model_version"].iloc[0]


def test_rerunning_dates_in_any_order_is_identical_and_isolated(shop, prepared_shop):
    previous, as_of = prepared_shop.previous, prepared_shop.as_of
    trained = registry_version(shop, previous)

    # Backfill D-1 again after D, retraining: LightGBM is deterministic, so the same model.
    dbt_build(shop, previous)
    assert run_stages(shop, make_run(previous, "rerun-previous", retrain="always")) == trained
    assert digest(published(shop, previous)) == prepared_shop.digests[previous]
    assert digest(published(shop, as_of)) == prepared_shop.digests[as_of]  # untouched

    dbt_build(shop, as_of)
    run_stages(shop, make_run(as_of, "rerun-as-of"))
    assert digest(published(shop, as_of)) == prepared_shop.digests[as_of]
    assert digest(published(shop, previous)) == prepared_shop.digests[previous]
    latest = published(shop, view="recommendations_latest")
    assert digest(latest) == prepared_shop.digests[as_of]
    with session(shop) as wh:
        runs = wh.query_df("select status from recpipe.pipeline_runs")
    assert set(runs["status"]) == {"success"}


def test_sql_formula_and_unicode_ids_and_a_one_event_user_are_served_as_data(
    prepared_shop,
):
    settings = replace(load_settings(), home=prepared_shop.home)
    recs = published(settings, prepared_shop.as_of)
    per_user = recs.groupby("user_id").size()
    for user in (*ODD_USERS, ONE_EVENT_USER):
        assert per_user.get(user) == K, user
    with session(settings) as wh:
        tables = wh.query_df(
            "select table_name from information_schema.tables where table_schema = 'raw'"
        )
        events = wh.query_df("select count(*) as n from raw.events")["n"].iloc[0]
    assert {"events", "items", "users"} <= set(tables["table_name"])  # nothing was dropped
    assert events > 0


def test_a_dbt_build_replaces_only_its_own_cutoffs_partitions(tiny_shop, tmp_path):
    """Features, candidates and the per-cutoff intermediates are incremental: building D, then
    D+1, then D again leaves D's partitions identical and D+1's untouched; a full refresh keeps
    D's cutoffs only, with the same rows."""
    settings = replace(load_settings(), home=tmp_path / "home")
    with session(settings) as wh:
        ingest_items(wh, tiny_shop.files["items"])
        ingest_users(wh, tiny_shop.files["users"])
        ingest_events(wh, tiny_shop.files["events"])
    as_of = tiny_shop.end_date - timedelta(days=2)
    first, second, third = build_twice_around_the_next_day(
        lambda day: dbt_build(settings, day), settings, as_of
    )
    assert_only_own_partitions_replaced(first, second, third, as_of)

    dbt_build(settings, as_of, "--full-refresh")
    assert partition_digests(settings) == first
