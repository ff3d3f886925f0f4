"""recpipe_daily's stages in the DAG's order, called as its tasks call them (recpipe.pipeline)
with one `dbt build` of the project's target and without Airflow: the tests run a date this way on
DuckDB and on the BigQuery target (the emulator, or real BigQuery) and compare what each
published (test_recpipe_daily_on_bigquery.py, test_real_bigquery.py)."""

from __future__ import annotations

import time

import pandas as pd

from recpipe import pipeline
from recpipe.dbt_cli import run_dbt
from recpipe.ingest import ingest_events, ingest_items, ingest_users
from recpipe.settings import Settings
from recpipe.warehouse import session


def run_every_stage(
    settings: Settings, shop, as_of, work, *, ingest=True, after_dbt=None
) -> dict[str, float]:
    """Ingest the shop (unless ``ingest`` is False) and run recpipe_daily's stages for
    ``as_of``; ``after_dbt()``, when given, is called once the dbt build ended. Returns seconds
    per stage."""
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
    if after_dbt is not None:
        after_dbt()
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
