"""Python candidate sources' warehouse I/O (their point-in-time inputs, their tables
``candidates.cand_<source>``) and candidate recall per source (``recpipe.candidate_recall``).
The sources themselves are declared in ``recpipe.sources``."""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator
from datetime import date, datetime, timedelta

import pandas as pd
import pyarrow as pa

from recpipe import sources
from recpipe.evaluation import candidate_recall
from recpipe.ranker import shard_slice
from recpipe.runs import Run, now
from recpipe.settings import Settings
from recpipe.tables import (
    CANDIDATES,
    EVENT_WEIGHTS,
    PUBLISHED,
    PYTHON_CANDIDATE_COLUMNS,
    PYTHON_CANDIDATE_LAYOUT,
    UNION_SOURCE,
    ensure_tables,
)
from recpipe.validation import sampled_truth_sql, window_truth
from recpipe.warehouse import Warehouse, batch_table


def _interactions(
    wh: Warehouse, cutoff: date, settings: Settings
) -> tuple[pd.DataFrame, list[str], list[str]]:
    """Weighted (user, item) interactions before ``cutoff``, its active users, available items."""
    weight = (
        "case event_type "
        + " ".join(f"when '{t}' then {w}" for t, w in EVENT_WEIGHTS.items())
        + " else 1.0 end"
    )
    start = cutoff - timedelta(days=settings.history_days)
    params = {
        "cutoff": cutoff,
        # event_ts is a TIMESTAMP: BigQuery compares it with timestamps only, not with dates
        "cutoff_ts": datetime(cutoff.year, cutoff.month, cutoff.day),
        "start_ts": datetime(start.year, start.month, start.day),
    }
    interactions = wh.query_df(
        f"""select user_id, item_id, sum({weight}) as weight
            from {wh.table("staging", "stg_shop__events")}
            where event_ts < @cutoff_ts and event_ts >= @start_ts
              and item_id in (select item_id from {wh.table("staging", "stg_shop__items")})
            group by user_id, item_id""",
        params,
    )
    users = wh.query_df(
        f"select user_id from {wh.table('intermediate', 'int_active_users')} "
        "where as_of_date = @cutoff order by user_id",
        params,
    )["user_id"]
    items = wh.query_df(
        f"select item_id from {wh.table('staging', 'stg_shop__items')} "
        "where is_available order by item_id"
    )["item_id"]
    return interactions, users.tolist(), items.tolist()


def _baskets(wh: Warehouse, cutoff: date, settings: Settings) -> pd.DataFrame:
    """Purchased (user, item, basket) rows before ``cutoff`` over the same history window as
    :func:`_interactions`; a basket is the session, or the user's day without one."""
    start = cutoff - timedelta(days=settings.history_days)
    return wh.query_df(
        f"""select user_id, item_id,
                   coalesce(session_id, cast(event_date as string)) as basket_id,
                   min(event_ts) as basket_ts
            from {wh.table("staging", "stg_shop__events")}
            where event_type = 'purchase' and event_ts < @cutoff_ts and event_ts >= @start_ts
              and item_id in (select item_id from {wh.table("staging", "stg_shop__items")})
            group by user_id, item_id, basket_id""",
        {
            "cutoff_ts": datetime(cutoff.year, cutoff.month, cutoff.day),
            "start_ts": datetime(start.year, start.month, start.day),
        },
    )


# The staged rows of a user shard of the Python sources: fixed types, so that a shard with no
# users stages a typed empty table that unions with the others'.
PYTHON_STAGED_SCHEMA = pa.schema(
    [
        ("as_of_date", pa.date32()),
        ("source", pa.string()),
        ("user_id", pa.string()),
        ("item_id", pa.string()),
        ("score", pa.float64()),
        ("rank", pa.int64()),
    ]
)


def python_candidate_rows(
    wh: Warehouse, cutoffs: dict[str, date], settings: Settings, shard: tuple[int, int] = (0, 1)
) -> Iterator[pa.Table]:
    """Every registered Python source's candidates for each of ``cutoffs``, for the active users
    of ``shard`` (:func:`recpipe.ranker.shard_slice`): one table per cutoff and source, with a
    ``source`` column (so the caller can write each part before the next is computed: at 10M
    events all parts together take several GB).

    ALS and item-kNN read the same point-in-time interactions (events before each cutoff,
    weighted by event type); TIFU-kNN reads the purchased baskets before each cutoff. Each
    source fits on every user's history (deterministically) and scores the shard's users, so
    the shards together hold exactly the rows of one unsharded run.
    """
    for cutoff in sorted(cutoffs.values()):
        interactions, users, items = _interactions(wh, cutoff, settings)
        inputs = sources.SourceInputs(
            interactions=interactions,
            baskets=functools.partial(_baskets, wh, cutoff, settings),
            users=shard_slice(users, shard),
            items=items,
            depth=settings.candidate_depth,
            seed=settings.seed,
        )
        for source in sources.PYTHON_SOURCES:
            frame = source.generate(inputs)
            frame.insert(0, "as_of_date", cutoff)
            frame.insert(1, "source", source.name)
            yield pa.Table.from_pandas(
                frame[PYTHON_STAGED_SCHEMA.names], schema=PYTHON_STAGED_SCHEMA, preserve_index=False
            )


def replace_python_candidates(wh: Warehouse, staged: str, cutoffs: dict[str, date]) -> int:
    """Replace ``cutoffs`` in every Python source's ``candidates.cand_<source>`` with its rows of
    ``staged`` (a table or subquery of :data:`PYTHON_STAGED_SCHEMA` rows), all sources in one
    transaction; other dates' rows stay (runs of other dates may be reading or writing them).
    Returns the number of rows written."""
    for source in sources.PYTHON_SOURCES:
        wh.create_table(
            CANDIDATES, source.table, PYTHON_CANDIDATE_COLUMNS, **PYTHON_CANDIDATE_LAYOUT
        )
    columns = "as_of_date, user_id, item_id, score, rank"
    dates = ", ".join("@" + r for r in cutoffs)
    with wh.transaction():
        for source in sources.PYTHON_SOURCES:
            table = wh.table(CANDIDATES, source.table)
            wh.execute(f"delete from {table} where as_of_date in ({dates})", cutoffs)
            wh.execute(
                f"insert into {table} ({columns}) select {columns} from {staged} as staged "
                f"where source = @source and as_of_date in ({dates})",
                {**cutoffs, "source": source.name},
            )
    return int(
        wh.query_df(
            f"select count(*) as n from {staged} as staged where as_of_date in ({dates})", cutoffs
        )["n"].iloc[0]
    )


def measure_candidate_recall(
    wh: Warehouse, run: Run, cutoff: date, depth: int, max_users: int | None = None
) -> dict[str, float]:
    """Recall of each candidate source and of their union at ``depth`` on the window after
    ``cutoff``; stored in ``recpipe.candidate_recall`` (this run's rows replaced).

    Truth is :func:`recpipe.validation.window_truth` (purchases, or any event if the window has
    none) of every user with one (at most ``max_users`` of them: the validation sample, the
    only users with candidates at the valid cutoff), so users the candidates miss entirely
    count as misses.
    Returns {source: recall, "union": ..}. Only the candidates that are in the truth are read
    (the join runs in the warehouse): recall counts nothing else, and at 10M events a cutoff's
    candidates are ~100M rows.
    """
    ensure_tables(wh)
    truth = window_truth(wh, cutoff, max_users)
    recall: dict[str, float] = {}
    found_all = []
    for source in sources.SOURCES:
        found = wh.query_df(
            f"select c.user_id, c.item_id from {wh.table('candidates', source.table)} c "
            f"inner join ({sampled_truth_sql(wh, max_users)}) as truth "
            "on truth.user_id = c.user_id and truth.item_id = c.item_id "
            "where c.as_of_date = @cutoff and c.rank <= @depth",
            {"cutoff": cutoff, "depth": depth},
        )
        found_all.append(found)
        recall[source.name] = candidate_recall(found, truth) if len(truth) else math.nan
    union = pd.concat(found_all).drop_duplicates()
    recall[UNION_SOURCE] = candidate_recall(union, truth) if len(truth) else math.nan
    rows = pd.DataFrame(
        {
            "run_date": run.run_date,
            "run_id": run.run_id,
            "cutoff": cutoff,
            "source": list(recall),
            "depth": depth,
            "recall": list(recall.values()),
            "users": truth["user_id"].nunique(),
            "computed_at": now(),
        }
    )
    rows["depth"] = rows["depth"].astype("int32")
    rows["users"] = rows["users"].astype("int64")
    table = wh.table(PUBLISHED, "candidate_recall")
    with batch_table(wh, rows, "candidate_recall_batch") as batch, wh.transaction():
        wh.execute(f"delete from {table} where run_id = @run_id", {"run_id": run.run_id})
        wh.execute(
            f"insert into {table} (run_date, run_id, cutoff, source, depth, recall, users, "
            f"computed_at) select run_date, run_id, cutoff, source, depth, recall, users, "
            f"computed_at from {batch}"
        )
    return recall
