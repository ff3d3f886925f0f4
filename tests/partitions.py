"""The dbt tables kept per cutoff (incremental: a run replaces its own cutoffs' partitions), and
a digest of each (table, as_of_date) partition to show what a build changed."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import date, timedelta

import pandas as pd

from recpipe import sources
from recpipe.ranker import FEATURE_DECIMALS
from recpipe.settings import Settings
from recpipe.warehouse import session

PER_CUTOFF_TABLES = (
    ("intermediate", "int_active_users"),
    ("intermediate", "int_labels"),
    ("intermediate", "int_item_covisitation_pairs"),
    ("intermediate", "int_cand_item_purchase_pairs"),
    ("features", "fct_user_features"),
    ("features", "fct_item_features"),
    ("features", "fct_user_item_features"),
    ("candidates", "cand_popularity"),
    ("candidates", "cand_repurchase"),
    ("candidates", "cand_covisitation"),
    ("candidates", "cand_recent"),
    ("candidates", "cand_category_popularity"),
    ("candidates", "cand_covisitation_purchase"),
)


def partition_digests(settings: Settings) -> dict[tuple[str, date], str]:
    """{(table, as_of_date): hash of that partition's rows, in a fixed order} of every table."""
    digests = {}
    with session(settings) as wh:
        for dataset, table in PER_CUTOFF_TABLES:
            frame = wh.query_df(f"select * from {wh.table(dataset, table)}")
            frame["as_of_date"] = pd.to_datetime(frame["as_of_date"]).dt.date
            for column in frame.columns:
                if pd.api.types.is_float_dtype(frame[column]):
                    # parallel float sums may differ in the last bits between builds (the
                    # ranker rounds features the same way): compare what readers use
                    frame[column] = frame[column].round(FEATURE_DECIMALS)
            for as_of_date, rows in frame.groupby("as_of_date"):
                ordered = rows.sort_values(list(rows.columns)).reset_index(drop=True)
                hashed = pd.util.hash_pandas_object(ordered, index=False).values
                digests[(table, as_of_date)] = hashlib.sha256(hashed.tobytes()).hexdigest()
    return digests


def cutoffs_of(as_of: date, label_days: int = 7) -> set[date]:
    """The three cutoffs a run for ``as_of`` builds (serve, valid, train)."""
    return {as_of - timedelta(days=steps * label_days) for steps in range(3)}


def build_twice_around_the_next_day(
    build: Callable[[date], None], settings: Settings, as_of: date
) -> tuple[dict, dict, dict]:
    """Build D, then D+1, then D again; the partition digests after each build."""
    build(as_of)
    first = partition_digests(settings)
    build(as_of + timedelta(days=1))
    second = partition_digests(settings)
    build(as_of)
    return first, second, partition_digests(settings)


def assert_only_own_partitions_replaced(
    first: dict, second: dict, third: dict, as_of: date
) -> None:
    """Each build wrote its own cutoffs' partitions and nothing else; the rebuild of D is
    identical, partition by partition, and left D+1's partitions as they were."""
    own, next_own = cutoffs_of(as_of), cutoffs_of(as_of + timedelta(days=1))
    assert {day for _, day in first} == own
    for table in ("fct_user_features", "fct_item_features", "cand_popularity", "cand_recent"):
        assert {day for name, day in second if name == table} == own | next_own, table
    assert {key: second[key] for key in first} == first  # D+1 left D's partitions alone
    changed = sorted(key for key in second if second[key] != third.get(key))
    assert changed == [], f"partitions changed by rebuilding {as_of}: {changed[:5]}"
    assert third.keys() == second.keys()


def python_candidates(settings: Settings) -> list[pd.DataFrame]:
    """Every Python source's candidate table (``recpipe.sources.PYTHON_SOURCES``), ordered."""
    with session(settings) as wh:
        return [
            wh.query_df(
                f"select * from {wh.table('candidates', source.table)} "
                "order by as_of_date, user_id, item_id"
            )
            for source in sources.PYTHON_SOURCES
        ]
