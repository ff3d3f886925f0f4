"""What each gate measures. Functions return CheckResults; ``gates.enforce`` records and judges.

Every measurement is taken relative to the run's as-of date D (never the wall clock), so a
backfill of an old date is judged exactly as its scheduled run was.
"""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pandas as pd

from recpipe.gates import CheckResult, judge
from recpipe.tables import EVENT_TYPES, RAW
from recpipe.warehouse import Warehouse

VOLUME_BASELINE_DAYS = 28


def _scalar(wh: Warehouse, sql: str, params: dict) -> float:
    value = wh.query_df(sql, params).iloc[0, 0]
    return float("nan") if value is None or pd.isna(value) else float(value)


def raw_checks(wh: Warehouse, as_of: date) -> list[CheckResult]:
    """Schema-level and volume checks on ``raw.events`` before D and on the catalog."""
    events, items = wh.table(RAW, "events"), wh.table(RAW, "items")
    params = {"as_of": as_of}
    before = f"from {events} where event_ts < @as_of"
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
                   as unknown_items
        {before}
        """,
        params,
    ).iloc[0]
    n_events = float(summary["events"])
    results = [
        judge("raw", "events_before_as_of", n_events, f"events before {as_of}"),
        judge("raw", "null_or_empty_ids", summary["null_ids"] or 0),
        judge("raw", "unknown_event_types", summary["bad_types"] or 0),
        judge("raw", "duplicate_event_ids", n_events - float(summary["distinct_ids"])),
        judge(
            "raw",
            "unknown_item_share",
            (summary["unknown_items"] or 0) / n_events if n_events else float("nan"),
            f"{int(summary['unknown_items'] or 0)} events for item ids missing from the catalog",
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
        {"start": start, "as_of": as_of},
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


def feature_checks(wh: Warehouse, as_of: date) -> list[CheckResult]:
    """Row counts and null shares of the feature tables at the serving cutoff."""
    params = {"as_of": as_of}
    active = _scalar(
        wh,
        "select count(*) from intermediate.int_active_users where as_of_date = @as_of",
        params,
    )
    missing_users = _scalar(
        wh,
        """select count(*) from intermediate.int_active_users a
           where a.as_of_date = @as_of and not exists (
             select 1 from features.fct_user_features f
             where f.as_of_date = a.as_of_date and f.user_id = a.user_id)""",
        params,
    )
    missing_items = _scalar(
        wh,
        """select count(*) from staging.stg_shop__items i where not exists (
             select 1 from features.fct_item_features f
             where f.as_of_date = @as_of and f.item_id = i.item_id)""",
        params,
    )
    # Counts are never null by construction (0 when nothing happened); recency, ratio and price
    # features are legitimately null (no purchase yet) and LightGBM treats null as missing.
    worst_null, worst_column = 0.0, ""
    for table in ("fct_user_features", "fct_item_features"):
        columns = [c for c in wh.columns("features", table) if "_count" in c]
        if not columns:
            continue
        shares = ", ".join(
            f"avg(case when {c} is null then 1.0 else 0.0 end) as {c}" for c in columns
        )
        row = (
            wh.query_df(f"select {shares} from features.{table} where as_of_date = @as_of", params)
            .iloc[0]
            .fillna(0.0)
        )
        if float(row.max()) > worst_null:
            worst_null, worst_column = float(row.max()), f"{table}.{row.idxmax()}"
    return [
        judge(
            "features", "active_users", active, f"users with events in the window before {as_of}"
        ),
        judge("features", "users_without_features", missing_users),
        judge("features", "items_without_features", missing_items),
        judge("features", "count_feature_null_share", worst_null, worst_column),
    ]


def output_checks(wh: Warehouse, staged: str, as_of: date, k: int) -> list[CheckResult]:
    """Every SPEC invariant of ``recommendations``, measured on the staged rows of run D."""
    params = {"as_of": as_of, "k": k}
    row = wh.query_df(
        f"""
        with per_user as (
            select user_id, count(*) as n, min(rank) as lo, max(rank) as hi,
                   count(distinct rank) as ranks, count(distinct item_id) as items
            from {staged} group by user_id
        )
        select
            (select count(*) from per_user where n > @k) as over_k,
            (select count(*) from per_user where lo <> 1 or hi <> n or ranks <> n)
                as non_contiguous,
            (select count(*) from per_user where items <> n) as duplicate_items,
            (select count(*) from {staged} s where not exists (
                select 1 from {wh.table(RAW, "items")} i
                where i.item_id = s.item_id and i.is_available)) as bad_items,
            (select count(*) from {staged} where score is null or not isfinite(score))
                as non_finite,
            (select count(distinct user_id) from {staged}) as users,
            (select count(*) from intermediate.int_active_users where as_of_date = @as_of)
                as active
        """,
        params,
    ).iloc[0]
    coverage = row["users"] / row["active"] if row["active"] else float("nan")
    return [
        judge("output", "users_over_k_rows", row["over_k"]),
        judge("output", "non_contiguous_ranks", row["non_contiguous"]),
        judge("output", "duplicate_user_items", row["duplicate_items"]),
        judge("output", "unknown_or_unavailable_items", row["bad_items"]),
        judge("output", "non_finite_scores", row["non_finite"]),
        judge(
            "output",
            "active_user_coverage",
            coverage,
            f"{int(row['users'])} of {int(row['active'])} active users",
        ),
    ]
