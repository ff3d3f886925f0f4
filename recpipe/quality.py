"""What each gate measures. Functions return CheckResults; ``gates.enforce`` records and judges.

Every measurement is taken relative to the run's as-of date D (never the wall clock), so a
backfill of an old date is judged exactly as its scheduled run was.
"""

from __future__ import annotations

import math
from datetime import date, datetime, timedelta

import numpy as np
import pandas as pd

from recpipe import sources
from recpipe.evaluation import EVAL_K
from recpipe.gates import CheckResult, judge
from recpipe.tables import EVENT_COLUMNS, EVENT_TYPES, ITEM_COLUMNS, PUBLISHED, RAW
from recpipe.warehouse import Warehouse, batch_table

VOLUME_BASELINE_DAYS = 28
FEATURE_TABLES = ("fct_user_features", "fct_item_features", "fct_user_item_features")
FEATURE_KEYS = ("as_of_date", "user_id", "item_id")
# Score histograms for the distribution gate: bins of a quarter standard deviation, clamped.
SCORE_BINS_PER_STD, SCORE_BIN_LIMIT = 4, 16
REQUIRED_RAW_COLUMNS = {
    "events": ("event_id", *EVENT_COLUMNS, "loaded_at"),
    "items": ITEM_COLUMNS,
}


def _scalar(wh: Warehouse, sql: str, params: dict) -> float:
    value = wh.query_df(sql, params).iloc[0, 0]
    return float("nan") if value is None or pd.isna(value) else float(value)


def _schema_check(wh: Warehouse) -> CheckResult:
    """Contract columns missing from ``raw.events`` / ``raw.items`` (a missing table counts all)."""
    missing = [
        f"{RAW}.{table}.{column}"
        for table, required in REQUIRED_RAW_COLUMNS.items()
        for column in required
        if column not in set(wh.columns(RAW, table))
    ]
    return judge("raw", "schema_missing_columns", len(missing), ", ".join(missing[:5]))


def raw_checks(wh: Warehouse, as_of: date) -> list[CheckResult]:
    """Checks on ``raw.events`` before D and on the catalog: schema, counts, ids, event types,
    duplicates, timestamps later than their load, unknown items, freshness and volume against D.

    A broken schema is reported alone: every other check would only fail on the same cause.
    """
    schema = _schema_check(wh)
    if schema.status == "fail":
        return [schema]
    events, items = wh.table(RAW, "events"), wh.table(RAW, "items")
    # event_ts is a TIMESTAMP: BigQuery compares it with timestamps only, not with dates
    params = {"as_of": as_of, "as_of_ts": datetime(as_of.year, as_of.month, as_of.day)}
    before = f"from {events} where event_ts < @as_of_ts"
    types = ", ".join(f"'{t}'" for t in EVENT_TYPES)
    summary = wh.query_df(
        f"""
        select count(*) as events,
               count(distinct event_id) as distinct_ids,
               sum(case when user_id is null or trim(user_id) = '' or item_id is null
                        or trim(item_id) = '' then 1 else 0 end) as null_ids,
               sum(case when event_type not in ({types}) then 1 else 0 end) as bad_types,
               max(event_ts) as last_event,
               sum(case when item_id not in (select item_id from {items}) then 1 else 0 end)
                   as unknown_items,
               sum(case when event_ts > loaded_at then 1 else 0 end) as future_events
        {before}
        """,
        params,
    ).iloc[0]
    # On no rows the sums are NULL: count them as 0.
    counts = summary.drop("last_event").fillna(0).astype("float64")
    n_events = counts["events"]
    results = [
        schema,
        judge("raw", "events_before_as_of", n_events, f"events before {as_of}"),
        judge(
            "raw",
            "future_events",
            counts["future_events"],
            "events stamped later than the moment they were loaded",
        ),
        judge("raw", "null_or_empty_ids", counts["null_ids"]),
        judge("raw", "unknown_event_types", counts["bad_types"]),
        judge("raw", "duplicate_event_ids", n_events - counts["distinct_ids"]),
        judge(
            "raw",
            "unknown_item_share",
            counts["unknown_items"] / n_events if n_events else float("nan"),
            f"{int(counts['unknown_items'])} events for item ids missing from the catalog",
        ),
    ]
    last_event = summary["last_event"]
    if pd.isna(last_event):
        results.append(judge("raw", "freshness_days", float("inf"), "no events before D"))
    else:
        age = (pd.Timestamp(as_of) - pd.Timestamp(last_event)) / pd.Timedelta(days=1)
        results.append(judge("raw", "freshness_days", age, f"last event {last_event}"))
    results.append(_volume_check(wh, as_of))
    available = _scalar(wh, f"select count(*) from {items} where is_available", {})
    results.append(judge("raw", "available_items", available))
    return results


def _volume_check(wh: Warehouse, as_of: date) -> CheckResult:
    """Events on D-1 against the median day of the 28 days before it."""
    start = as_of - timedelta(days=VOLUME_BASELINE_DAYS + 1)
    daily = wh.query_df(
        f"""
        select cast(event_ts as date) as day, count(*) as n
        from {wh.table(RAW, "events")}
        where event_ts >= @start and event_ts < @as_of
        group by 1
        """,
        # timestamps, not dates: BigQuery does not compare a TIMESTAMP with a DATE
        {
            "start": datetime(start.year, start.month, start.day),
            "as_of": datetime(as_of.year, as_of.month, as_of.day),
        },
    )
    counts = dict(zip(pd.to_datetime(daily["day"]).dt.date, daily["n"], strict=True))
    last_day = counts.get(as_of - timedelta(days=1), 0)
    trailing = [counts.get(start + timedelta(days=i), 0) for i in range(VOLUME_BASELINE_DAYS)]
    observed_days = [c for c in trailing if c > 0]
    if len(observed_days) < 7:
        return judge(
            "raw",
            "volume_vs_trailing_median",
            float("nan"),
            f"only {len(observed_days)} earlier days with events: not judged",
        )
    median = float(np.median(trailing))
    return judge(
        "raw",
        "volume_vs_trailing_median",
        last_day / median if median else float("nan"),
        f"{last_day} events on {as_of - timedelta(days=1)} vs trailing median {median:g}",
    )


def _range_violation(column: str) -> str:
    """SQL that is true when a feature value is outside its range (known from its name)."""
    if "trend" in column:  # log growth ratios: any sign
        return "false"
    if column.endswith("_rate") or "affinity" in column or column.endswith("is_available"):
        return f"({column} < 0 or {column} > 1)"
    return f"{column} < 0"  # counts, days since, quantities, prices, conversions


def feature_profile(wh: Warehouse, as_of: date) -> pd.DataFrame:
    """One row per numeric feature column at cutoff D: rows, mean, stddev, null share and the
    number of values outside the column's range (see ``_range_violation``)."""
    parts = []
    for table in FEATURE_TABLES:
        columns = [c for c in wh.columns("features", table) if c not in FEATURE_KEYS]
        if not columns:
            continue
        aggregates = ", ".join(
            f"avg({c}) as {c}__mean, stddev_samp({c}) as {c}__stddev, "
            f"avg(case when {c} is null then 1.0 else 0.0 end) as {c}__null_share, "
            f"sum(case when {_range_violation(c)} then 1 else 0 end) as {c}__out_of_range"
            for c in columns
        )
        row = wh.query_df(
            f"select count(*) as n_rows, {aggregates} from {wh.table('features', table)} "
            "where as_of_date = @as_of",
            {"as_of": as_of},
        ).iloc[0]
        parts.append(
            pd.DataFrame(
                {
                    "table_name": table,
                    "column_name": columns,
                    "row_count": int(row["n_rows"]),
                    **{
                        stat: [row[f"{c}__{stat}"] for c in columns]
                        for stat in ("mean", "stddev", "null_share", "out_of_range")
                    },
                }
            )
        )
    profile = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    for stat in ("mean", "stddev", "null_share", "out_of_range"):
        if stat in profile:
            profile[stat] = pd.to_numeric(profile[stat], errors="coerce").astype("float64")
    if "out_of_range" in profile:
        profile["out_of_range"] = profile["out_of_range"].fillna(0).astype("int64")
    return profile


def record_feature_profile(
    wh: Warehouse, run_date: date, run_id: str, profile: pd.DataFrame, profiled_at: datetime
) -> None:
    """Store ``profile`` in ``recpipe.feature_profiles`` (this run's earlier rows replaced)."""
    table = wh.table(PUBLISHED, "feature_profiles")
    frame = profile.assign(run_date=run_date, run_id=run_id, profiled_at=profiled_at)
    columns = [
        "run_date", "run_id", "table_name", "column_name", "row_count", "mean", "stddev",
        "null_share", "out_of_range", "profiled_at",
    ]  # fmt: skip
    with batch_table(wh, frame[columns], "feature_profile_batch") as batch, wh.transaction():
        wh.execute(f"delete from {table} where run_id = @run_id", {"run_id": run_id})
        wh.execute(
            f"insert into {table} ({', '.join(columns)}) select {', '.join(columns)} from {batch}"
        )


def previous_feature_profile(wh: Warehouse, as_of: date) -> tuple[str | None, pd.DataFrame]:
    """The feature profile of the latest successful run for a date before D (point in time:
    a backfill of an old date compares with its own predecessor): (a label naming that run,
    its profile rows), or (None, an empty frame) when there is none."""
    runs = wh.query_df(
        f"""select r.run_id, r.run_date from {wh.table(PUBLISHED, "pipeline_runs")} r
            where r.status = 'success' and r.run_date < @as_of and exists (
                select 1 from {wh.table(PUBLISHED, "feature_profiles")} p
                where p.run_id = r.run_id)
            order by r.run_date desc, r.finished_at desc, r.run_id limit 1""",
        {"as_of": as_of},
    )
    if runs.empty:
        return None, pd.DataFrame()
    run_id = str(runs["run_id"].iloc[0])
    rows = wh.query_df(
        f"select * from {wh.table(PUBLISHED, 'feature_profiles')} where run_id = @r",
        {"r": run_id},
    )
    return f"{run_id} ({pd.Timestamp(runs['run_date'].iloc[0]).date()})", rows


def _feature_drift(profile: pd.DataFrame, previous: pd.DataFrame) -> tuple[float, str]:
    """Largest shift of a feature's mean, in standard deviations of the previous run."""
    if previous.empty or profile.empty:
        return float("nan"), ""
    joined = profile.merge(previous, on=["table_name", "column_name"], suffixes=("", "_prev"))
    joined = joined.dropna(subset=["mean", "mean_prev"])
    if joined.empty:
        return float("nan"), ""
    scale = joined["stddev_prev"].where(joined["stddev_prev"] > 0, 1.0).fillna(1.0)
    shift = (joined["mean"] - joined["mean_prev"]).abs() / scale
    worst = joined.loc[shift.idxmax()]
    detail = (
        f"{worst['table_name']}.{worst['column_name']} mean {worst['mean']:.4g} "
        f"vs {worst['mean_prev']:.4g} (stddev {worst['stddev_prev']:.4g})"
    )
    return float(shift.max()), detail


def feature_checks(
    wh: Warehouse, as_of: date, profile: pd.DataFrame | None = None
) -> list[CheckResult]:
    """Row counts, null shares, ranges and drift of the feature tables at the serving cutoff.

    ``profile`` is :func:`feature_profile` of D (computed when not given); drift compares it
    with the profile of the latest successful run for an earlier date.
    """
    params = {"as_of": as_of}
    active_users = wh.table("intermediate", "int_active_users")
    active = _scalar(wh, f"select count(*) from {active_users} where as_of_date = @as_of", params)
    missing_users = _scalar(
        wh,
        f"""select count(*) from {active_users} a
           where a.as_of_date = @as_of and not exists (
             select 1 from {wh.table("features", "fct_user_features")} f
             where f.as_of_date = a.as_of_date and f.user_id = a.user_id)""",
        params,
    )
    missing_items = _scalar(
        wh,
        f"""select count(*) from {wh.table("staging", "stg_shop__items")} i where not exists (
             select 1 from {wh.table("features", "fct_item_features")} f
             where f.as_of_date = @as_of and f.item_id = i.item_id)""",
        params,
    )
    profile = feature_profile(wh, as_of) if profile is None else profile
    # Counts are never null by construction (0 when nothing happened); recency, ratio and price
    # features are legitimately null (no purchase yet) and LightGBM treats null as missing.
    counts = profile[profile["column_name"].str.contains("_count")] if len(profile) else profile
    worst_null, worst_column = 0.0, ""
    if len(counts) and counts["null_share"].max() > 0:
        worst = counts.loc[counts["null_share"].idxmax()]
        worst_null = float(worst["null_share"])
        worst_column = f"{worst['table_name']}.{worst['column_name']}"
    out_of_range = profile[profile["out_of_range"] > 0] if len(profile) else profile
    range_detail = ", ".join(
        f"{r.table_name}.{r.column_name}: {r.out_of_range}" for r in out_of_range.itertuples()
    )
    previous_run, previous = previous_feature_profile(wh, as_of)
    drift, drift_detail = _feature_drift(profile, previous)
    return [
        judge(
            "features", "active_users", active, f"users with events in the window before {as_of}"
        ),
        judge("features", "users_without_features", missing_users),
        judge("features", "items_without_features", missing_items),
        judge("features", "count_feature_null_share", worst_null, worst_column),
        judge(
            "features",
            "out_of_range_values",
            int(out_of_range["out_of_range"].sum()) if len(out_of_range) else 0,
            range_detail[:500],
        ),
        judge(
            "features",
            "drift_vs_previous_run",
            drift,
            f"vs run {previous_run}: {drift_detail}" if previous_run else "no earlier run",
        ),
    ]


def output_checks(wh: Warehouse, staged: str, as_of: date, k: int) -> list[CheckResult]:
    """Every invariant of ``recommendations`` (README "Tables"), measured on the
    staged rows of run D."""
    params = {"as_of": as_of, "k": k}
    row = wh.query_df(
        f"""
        with per_user as (
            select user_id, count(*) as n, min(rank) as lo, max(rank) as hi,
                   count(distinct rank) as ranks, count(distinct item_id) as items
            from {staged} group by user_id
        ),
        ordered as (
            select rank, row_number() over (
                       partition by user_id order by score desc, item_id) as expected_rank
            from {staged}
        )
        select
            (select count(*) from per_user where n > @k) as over_k,
            (select count(*) from per_user where lo <> 1 or hi <> n or ranks <> n)
                as non_contiguous,
            (select count(*) from per_user where items <> n) as duplicate_items,
            (select count(*) from ordered where rank <> expected_rank) as misordered,
            (select count(*) from {staged} s where not exists (
                select 1 from {wh.table(RAW, "items")} i
                where i.item_id = s.item_id and i.is_available)) as bad_items,
            (select count(*) from {staged}
             where score is null or not abs(score) <= 1.7976931348623157e308)
                as non_finite,
            (select count(distinct user_id) from {staged}) as users,
            (select count(*) from {wh.table("intermediate", "int_active_users")}
             where as_of_date = @as_of) as active
        """,
        params,
    ).iloc[0]
    coverage = row["users"] / row["active"] if row["active"] else float("nan")
    shift, shift_detail = _score_shift(wh, staged, as_of)
    return [
        judge("output", "users_over_k_rows", row["over_k"]),
        judge("output", "non_contiguous_ranks", row["non_contiguous"]),
        judge("output", "duplicate_user_items", row["duplicate_items"]),
        judge("output", "rank_order_violations", row["misordered"], "score desc, then item_id"),
        judge("output", "unknown_or_unavailable_items", row["bad_items"]),
        judge("output", "non_finite_scores", row["non_finite"]),
        judge(
            "output",
            "active_user_coverage",
            coverage,
            f"{int(row['users'])} of {int(row['active'])} active users",
        ),
        judge("output", "score_distribution_vs_previous_publish", shift, shift_detail),
    ]


def _score_histogram(wh: Warehouse, source: str, params: dict) -> tuple[pd.Series, float, float]:
    """Share of ``source``'s scores per bin of a quarter standard deviation around its mean."""
    stats = wh.query_df(
        f"select avg(score) as mean, stddev_samp(score) as sd, count(*) as n from {source}",
        params,
    ).iloc[0]
    mean, sd = float(stats["mean"]), float(stats["sd"]) if pd.notna(stats["sd"]) else 0.0
    if not sd > 0:
        return pd.Series(dtype="float64"), mean, sd
    limit = SCORE_BIN_LIMIT
    bins = wh.query_df(
        f"""select greatest(-{limit}, least({limit},
                   floor((score - @mean) / @sd * {SCORE_BINS_PER_STD}))) as bin,
                   count(*) as n
            from {source} group by 1""",
        {**params, "mean": mean, "sd": sd},
    )
    shares = bins.set_index("bin")["n"].astype("float64")
    return shares / shares.sum(), mean, sd


def _score_shift(wh: Warehouse, staged: str, as_of: date) -> tuple[float, str]:
    """Kolmogorov-Smirnov distance between the shapes (standardised scores) of the staged
    scores and those of the latest publish before D; 1.0 when the staged scores are constant.

    Shapes, not raw values: a retrained LightGBM ranker legitimately moves the score scale, a
    broken one collapses or distorts the distribution.
    """
    recs = wh.table(PUBLISHED, "recommendations")
    previous_date = wh.query_df(
        f"select max(run_date) as d from {recs} where run_date < @as_of", {"as_of": as_of}
    )["d"].iloc[0]
    if previous_date is None or pd.isna(previous_date):
        return float("nan"), "no earlier publish"
    previous_date = pd.Timestamp(previous_date).date()
    now, now_mean, now_sd = _score_histogram(wh, staged, {})
    if now.empty:
        return 1.0, f"every staged score equals {now_mean:.4g}"
    before, _, _ = _score_histogram(
        wh, f"(select score from {recs} where run_date = @d) previous", {"d": previous_date}
    )
    if before.empty:
        return float("nan"), f"publish of {previous_date} has constant scores: not judged"
    bins = sorted(set(now.index) | set(before.index))
    gap = now.reindex(bins, fill_value=0).cumsum() - before.reindex(bins, fill_value=0).cumsum()
    return float(gap.abs().max()), f"vs publish of {previous_date}"


# the candidate gate ----------------------------------------------------------------------------
def candidate_checks(
    wh: Warehouse,
    as_of: date,
    k: int,
    union_recall: float,
    recall: dict[str, float],
    valid: date,
    depth: int,
) -> list[CheckResult]:
    """User coverage at D (active users with >= k candidates over every registered source) and
    the union's recall on the validation window (``recall`` per source goes in the details)."""
    union = sources.union_sql(wh, "user_id, item_id", "as_of_date = @as_of")
    coverage = wh.query_df(
        f"""
        with per_user as (
            select user_id, count(distinct item_id) as n from ({union}) u group by user_id
        )
        select count(*) as active, sum(case when p.n >= @k then 1 else 0 end) as covered
        from {wh.table("intermediate", "int_active_users")} a
        left join per_user p on p.user_id = a.user_id
        where a.as_of_date = @as_of
        """,
        {"as_of": as_of, "k": k},
    ).iloc[0]
    active = float(coverage["active"])
    detail = ", ".join(f"{s}={v:.3f}" for s, v in recall.items())
    return [
        judge(
            "candidates",
            "user_coverage",
            float(coverage["covered"] or 0) / active if active else float("nan"),
            f"active users with >= {k} candidates",
        ),
        judge(
            "candidates",
            "union_recall_valid",
            union_recall,
            f"window from {valid}, depth {depth}; per source: {detail}",
        ),
    ]


# the model gate --------------------------------------------------------------------------------
def model_checks(version: str, metrics: dict, baselines: dict) -> list[CheckResult]:
    """Enough validation users, and the model's NDCG lift over the popularity baseline, both
    measured on the validation window (``metrics`` and ``baselines`` at EVAL_K)."""
    key = f"ndcg@{EVAL_K}"
    ndcg, base = metrics[key], baselines["popularity"][key]
    lift = ndcg / base if base else (math.inf if ndcg > 0 else math.nan)
    return [
        judge("model", "validation_users", metrics.get("users", 0)),
        judge(
            "model",
            "ndcg_lift_over_popularity",
            lift,
            f"{version}: {key} {ndcg:.4f} vs popularity {base:.4f}",
        ),
    ]
