"""``recpipe demo``: a synthetic shop through the whole pipeline, then what it published."""

from __future__ import annotations

import json
import time
from datetime import timedelta

from recpipe.settings import Settings


def run_demo(settings: Settings, *, users: int, items: int, days: int, seed: int) -> None:
    from recpipe.cli import EXAMPLE_QUERY, _run_one
    from recpipe.ingest import ingest_events, ingest_items, ingest_users
    from recpipe.synthetic import generate_shop
    from recpipe.warehouse import session

    timings: dict[str, float] = {}
    started = time.monotonic()
    shop_dir = settings.home / "demo_shop"
    summary = generate_shop(shop_dir, users=users, items=items, days=days, seed=seed)
    timings["generate"] = time.monotonic() - started
    print(
        f"generated {summary.events:,} events, {summary.users:,} users, "
        f"{summary.items:,} items ({summary.start_date} .. {summary.end_date}) in {shop_dir}"
    )

    t0 = time.monotonic()
    with session(settings) as wh:
        ingest_items(wh, summary.files["items"])
        ingest_users(wh, summary.files["users"])
        loaded = ingest_events(wh, summary.files["events"])
    timings["ingest"] = time.monotonic() - t0
    print(
        f"ingested: {loaded.rows_loaded:,} new events "
        f"({loaded.duplicates_skipped:,} already loaded)"
    )

    as_of = summary.end_date + timedelta(days=1)
    t0 = time.monotonic()
    outcome = _run_one(settings, as_of, {"as_of": as_of.isoformat()})
    timings["airflow run (total)"] = time.monotonic() - t0
    _print_results(settings, outcome, timings, time.monotonic() - started)
    query = " ".join(EXAMPLE_QUERY.split())
    print(f"\nLook at the output (DuckDB file {settings.duckdb_path}):\n\n{EXAMPLE_QUERY}\n")
    print("for instance with the duckdb package of the venv:\n")
    print(
        f"  .venv/bin/python -c \"import duckdb; print(duckdb.connect('{settings.duckdb_path}', "
        f"read_only=True).sql('''{query}'''))\""
    )


def _stage_seconds(task_seconds: dict[str, float]) -> dict[str, float]:
    stages: dict[str, float] = {}
    for task_id, seconds in task_seconds.items():
        stage = "dbt (models + tests)" if task_id.startswith("dbt.") else task_id
        stages[stage] = stages.get(stage, 0.0) + seconds
    return stages


def _print_results(settings: Settings, outcome, timings: dict[str, float], total: float) -> None:
    from recpipe.warehouse import session

    with session(settings) as wh:
        gates = wh.query_df(
            "select stage, status, count(*) as n from recpipe.dq_results where run_id = @r "
            "group by 1, 2 order by 1, 2",
            {"r": outcome.run_id},
        )
        run = wh.query_df(
            "select * from recpipe.pipeline_runs where run_id = @r", {"r": outcome.run_id}
        ).iloc[0]
        model = wh.query_df(
            "select * from recpipe.model_registry where model_version = @v",
            {"v": run["model_version"]},
        ).iloc[0]
    print("\nStage timings (seconds):")
    for name, seconds in {**timings, **_stage_seconds(outcome.task_seconds)}.items():
        print(f"  {name:<34} {seconds:7.1f}")
    print(f"  {'total':<34} {total:7.1f}")
    print("\nGates (checks per stage and status):")
    for stage, frame in gates.groupby("stage", sort=False):
        counts = ", ".join(f"{n} {s}" for s, n in zip(frame["status"], frame["n"], strict=True))
        print(f"  {stage:<12} {counts}")
    print(
        f"\nPublished {int(run['rows']):,} rows for {int(run['users']):,} users "
        f"(run_date {run['run_date']:%Y-%m-%d}, model {run['model_version']})"
    )
    metrics = json.loads(model["validation_metrics"])
    baseline = json.loads(model["baseline_metrics"])["popularity"]
    print(
        f"\nHeld-out window {model['valid_cutoff']:%Y-%m-%d} .. "
        f"{model['valid_label_end']:%Y-%m-%d} ({int(metrics['users']):,} users with purchases):"
    )
    print(f"  {'':<12} {'NDCG@10':>8} {'Recall@10':>10}")
    print(f"  {'ranker':<12} {metrics['ndcg@10']:8.4f} {metrics['recall@10']:10.4f}")
    print(f"  {'popularity':<12} {baseline['ndcg@10']:8.4f} {baseline['recall@10']:10.4f}")
    lift = metrics["ndcg@10"] / baseline["ndcg@10"] if baseline["ndcg@10"] else float("inf")
    print(f"  NDCG@10 lift over popularity: {lift:.2f}x")
