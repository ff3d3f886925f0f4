"""``recpipe demo``: a synthetic shop through the whole pipeline, then what it published."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta

from recpipe.settings import Settings

EXAMPLE_QUERY = """select user_id, rank, item_id, round(score, 3) as score, sources
from recpipe.recommendations_latest
where user_id = (select min(user_id) from recpipe.recommendations_latest)
order by rank;"""


def run_demo(
    settings: Settings, *, run_one: Callable, users: int, items: int, days: int, seed: int
) -> None:
    """Generate, ingest and run the demo shop; ``run_one(settings, as_of, conf)`` is the CLI's
    way to run one date (its log file, progress lines and one-line failure)."""
    from recpipe.ingest import ingest_events, ingest_items, ingest_users
    from recpipe.synthetic import DEFAULT_END_DATE, generate_shop
    from recpipe.warehouse import session

    timings: dict[str, float] = {}
    started = time.monotonic()
    shop_dir = settings.home / "demo_shop"
    # The shop ends yesterday, so unpausing the DAG afterwards runs today's date on fresh data.
    # Its weekly cycle is pinned to the generator's default calendar: any day's demo shop is
    # the same shop shifted in time, and its metrics do not depend on the day it is run.
    end_date = demo_end_date()
    with session(settings) as wh:
        _refuse_another_shop(settings, wh, end_date)
    summary = generate_shop(
        shop_dir,
        users=users,
        items=items,
        days=days,
        seed=seed,
        end_date=end_date,
        end_weekday=DEFAULT_END_DATE.weekday(),
    )
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
    outcome = run_one(settings, as_of, {"as_of": as_of.isoformat()})
    timings["airflow run (total)"] = time.monotonic() - t0
    _print_results(settings, outcome, timings, time.monotonic() - started)
    query = " ".join(EXAMPLE_QUERY.split())
    print(f"\nLook at the output (DuckDB file {settings.duckdb_path}):\n\n{EXAMPLE_QUERY}\n")
    print("for instance with the duckdb package of the venv:\n")
    print(
        f"  .venv/bin/python -c \"import duckdb; print(duckdb.connect('{settings.duckdb_path}', "
        f"read_only=True).sql('''{query}'''))\""
    )


def demo_end_date(today: date | None = None) -> date:
    """The demo shop's last day of events: yesterday (UTC)."""
    return (today or datetime.now(UTC).date()) - timedelta(days=1)


def _refuse_another_shop(settings: Settings, wh, end_date: date) -> None:
    """Mixing the demo shop with other events (a demo of another day is a time-shifted copy)
    would double every user's history: refuse with one line instead."""
    import pandas as pd

    if not wh.table_exists("raw", "events"):
        return
    last = wh.query_df(f"select max(event_ts) as last from {wh.table('raw', 'events')}")["last"]
    if last.isna().iloc[0]:
        return
    last_day = pd.Timestamp(last.iloc[0]).date()
    if last_day != end_date:
        raise RuntimeError(
            f"the {settings.warehouse} warehouse of RECPIPE_HOME {settings.home} already holds "
            f"events up to {last_day} (an earlier day's demo or other data) and today's demo "
            f"shop ends {end_date}: run the demo with a fresh RECPIPE_HOME"
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
            f"select stage, status, count(*) as n from {wh.table('recpipe', 'dq_results')} "
            "where run_id = @r group by 1, 2 order by 1, 2",
            {"r": outcome.run_id},
        )
        run = wh.query_df(
            f"select * from {wh.table('recpipe', 'pipeline_runs')} where run_id = @r",
            {"r": outcome.run_id},
        ).iloc[0]
        model = wh.query_df(
            f"select * from {wh.table('recpipe', 'model_registry')} where model_version = @v",
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
    baselines = json.loads(model["baseline_metrics"])
    print(
        f"\nHeld-out window {model['valid_cutoff']:%Y-%m-%d} .. "
        f"{model['valid_label_end']:%Y-%m-%d} ({int(metrics['users']):,} users with purchases):"
    )
    print(headline_lines(metrics, baselines))


def headline_lines(metrics: dict, baselines: dict) -> str:
    """The ranker and every baseline of the run (strongest first), then the ranker's NDCG@10
    against the STRONGEST baseline of the run, not the weakest (issue 11)."""
    from recpipe.report import HEADLINE_METRIC, strongest_baseline

    width = max([len("ranker"), *map(len, baselines)])
    lines = [f"  {'':<{width}} {'NDCG@10':>8} {'Recall@10':>10}"]
    rows = {"ranker": metrics, **dict(sorted(baselines.items(), key=lambda kv: -kv[1]["ndcg@10"]))}
    for name, values in rows.items():
        lines.append(f"  {name:<{width}} {values['ndcg@10']:8.4f} {values['recall@10']:10.4f}")
    name, best = strongest_baseline(baselines)
    if not name:
        return "\n".join([*lines, "  no baseline was measured"])
    ranker, base = metrics[HEADLINE_METRIC], best[HEADLINE_METRIC]
    change = f"{ranker / base - 1:+.1%}" if base else "n/a (the baseline scored 0)"
    lines.append(
        f"  NDCG@10 of the ranker vs the strongest baseline ({name}): "
        f"{ranker:.4f} vs {base:.4f}, {change}"
    )
    return "\n".join(lines)
