"""Parity: the same tiny shop, built and run for the same date on DuckDB and on the BigQuery
target (the emulator), publishes the same recommendations.

Every stage of recpipe_daily runs, in the DAG's order, through the same functions the DAG's
tasks call (recpipe.pipeline) and one `dbt build` of the project's target; only Airflow is left
out, which keeps this test at about a minute. The BigQuery run is also scored again in four
user shards (RECPIPE_USER_SHARDS) and must publish the same rows. The whole DAG through
Airflow and cosmos on the BigQuery target is test_recpipe_daily_on_bigquery.py.
"""

from __future__ import annotations

import dataclasses
import time
from datetime import timedelta

import pandas as pd
import pytest

from recpipe import pipeline
from recpipe.dbt_cli import run_dbt
from recpipe.ingest import ingest_events, ingest_items, ingest_users
from recpipe.settings import Settings, load_settings
from recpipe.warehouse import session
from tests.partitions import python_candidates

pytestmark = pytest.mark.slow


def run_every_stage(settings: Settings, shop, as_of, work, *, ingest=True) -> dict[str, float]:
    """Ingest the shop (unless ``ingest`` is False) and run recpipe_daily's stages for
    ``as_of``; returns seconds per stage."""
    seconds: dict[str, float] = {}

    def timed(name, call, *args, **kwargs):
        started = time.monotonic()
        result = call(*args, **kwargs)
        seconds[name] = round(time.monotonic() - started, 1)
        return result

    if ingest:
        ingest_shop(settings, shop)
    run = run_of(settings, as_of)
    timed("start", pipeline.start_run, run, settings)
    timed("gate__raw", pipeline.check_raw, run, settings)
    timed(
        "dbt", run_dbt, "build", settings, as_of=as_of, work_dir=work / f"dbt_{settings.warehouse}"
    )
    timed("gate__features", pipeline.check_features, run, settings)
    timed("candidates__python", pipeline.generate_python_candidates, run, settings)
    timed("candidates__python_merge", pipeline.merge_python_candidates, run, settings)
    timed("gate__candidates", pipeline.check_candidates, run, settings)
    version = timed("model__train", pipeline.train_or_load_ranker, run, settings)
    timed("gate__model", pipeline.check_model, run, version, settings)
    timed("score", pipeline.score_candidates, run, version, settings)
    timed("gate__output", pipeline.check_output, run, settings)
    timed("publish", pipeline.publish_recommendations, run, settings)
    return seconds


def run_of(settings: Settings, as_of) -> pipeline.Run:
    return pipeline.Run(
        as_of=as_of.isoformat(),
        run_id=f"parity-{settings.warehouse}-{as_of:%Y%m%d}",
        k=10,
        retrain="always",
    )


def ingest_shop(settings: Settings, shop) -> None:
    with session(settings) as wh:
        ingest_items(wh, shop.files["items"])
        ingest_users(wh, shop.files["users"])
        ingest_events(wh, shop.files["events"])


def published(settings: Settings, run_date) -> pd.DataFrame:
    with session(settings) as wh:
        frame = wh.query_df(
            "select user_id, rank, item_id, score, model_version, sources "
            f"from {wh.table('recpipe', 'recommendations')} where run_date = @d "
            "order by user_id, rank",
            {"d": run_date},
        )
        status = wh.query_df(
            f"select status from {wh.table('recpipe', 'pipeline_runs')} where run_date = @d",
            {"d": run_date},
        )["status"].tolist()
    assert status == ["success"]
    frame["rank"] = frame["rank"].astype("int64")
    return frame.reset_index(drop=True)


def test_bigquery_publishes_the_same_recommendations_as_duckdb(
    bq_settings, tiny_shop, tmp_path, monkeypatch
):
    as_of = tiny_shop.end_date + timedelta(days=1)
    bigquery_seconds = run_every_stage(bq_settings, tiny_shop, as_of, tmp_path)
    on_bigquery = published(bq_settings, as_of)
    sharded = dataclasses.replace(bq_settings, user_shards=4)
    run = run_of(bq_settings, as_of)
    # The Python sources again as 4 user shards (4 staging tables, one merge): the same rows.
    candidates = python_candidates(bq_settings)
    staged = [pipeline.generate_python_candidates(run, sharded, shard=i) for i in range(4)]
    assert pipeline.merge_python_candidates(run, sharded) == sum(staged) > 0
    for before, after in zip(candidates, python_candidates(bq_settings), strict=True):
        pd.testing.assert_frame_equal(before, after)
    # Scored again as 4 user shards (4 staging tables, one publish): the same rows.
    version = on_bigquery["model_version"].iloc[0]
    staged = [pipeline.score_candidates(run, version, sharded, shard=shard) for shard in range(4)]
    pipeline.check_output(run, sharded)
    assert pipeline.publish_recommendations(run, sharded) == sum(staged) == len(on_bigquery)
    assert min(staged) > 0
    pd.testing.assert_frame_equal(published(bq_settings, as_of), on_bigquery)

    for name in ("RECPIPE_BQ_PROJECT", "RECPIPE_BQ_API_ENDPOINT", "RECPIPE_BQ_DATASET_PREFIX"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("RECPIPE_WAREHOUSE", "duckdb")
    monkeypatch.setenv("RECPIPE_HOME", str(tmp_path / "duckdb_home"))
    duckdb_settings = load_settings()
    duckdb_seconds = run_every_stage(duckdb_settings, tiny_shop, as_of, tmp_path)
    on_duckdb = published(duckdb_settings, as_of)

    same_items = (
        (on_bigquery["item_id"] == on_duckdb["item_id"]).mean()
        if len(on_bigquery) == len(on_duckdb)
        else float("nan")
    )
    print(
        f"\nparity {as_of}: duckdb {len(on_duckdb)} rows / {on_duckdb['user_id'].nunique()} users"
        f" / model {on_duckdb['model_version'].iloc[0]}; bigquery {len(on_bigquery)} rows / "
        f"{on_bigquery['user_id'].nunique()} users / model {on_bigquery['model_version'].iloc[0]};"
        f" same (user, rank, item): {same_items:.4f}; max |score diff|: "
        f"{(on_bigquery['score'] - on_duckdb['score']).abs().max():.2e}\n"
        f"seconds per stage: duckdb {duckdb_seconds}\n  bigquery {bigquery_seconds}"
    )
    pd.testing.assert_frame_equal(
        on_bigquery[["user_id", "rank", "item_id", "sources", "model_version"]],
        on_duckdb[["user_id", "rank", "item_id", "sources", "model_version"]],
    )
    assert (on_bigquery["score"] - on_duckdb["score"]).abs().max() < 1e-9
