"""The evaluation harness every run measures its model with: the truth of a label window, the
baselines' top-K lists, and the ranker's and baselines' metrics on the same users
(``recpipe.evaluation`` holds the metric functions themselves)."""

from __future__ import annotations

from datetime import date

import pandas as pd

from recpipe import ranker, sources
from recpipe.evaluation import EVAL_K, evaluate
from recpipe.settings import Settings
from recpipe.tables import EVENT_WEIGHTS
from recpipe.warehouse import Warehouse

# Baselines read straight from a candidate source's own ranking (name -> source).


def truth_sql(wh: Warehouse) -> str:
    """The query of :func:`window_truth` (parameter ``@cutoff``)."""
    labels = wh.table("intermediate", "int_labels")
    return f"""select user_id, item_id from {labels} where as_of_date = @cutoff
        and (purchased or not exists (
            select 1 from {labels} where as_of_date = @cutoff and purchased))"""


def window_truth(wh: Warehouse, cutoff: date, max_users: int | None = None) -> pd.DataFrame:
    """Relevant items of the window after ``cutoff``: purchases, or any event if none bought;
    of the users :func:`validation_users_sql` samples when ``max_users`` is given."""
    return wh.query_df(sampled_truth_sql(wh, max_users), {"cutoff": cutoff})


def validation_users_sql(wh: Warehouse, max_users: int | None) -> str:
    """A query of the users a validation window is measured on (parameter ``@cutoff``): those
    with truth, at most ``max_users`` of them (:func:`recpipe.ranker.sample_of_users`). dbt's
    int_active_users keeps the same users at the valid cutoff (and only they get candidates)."""
    return ranker.sample_of_users(f"select user_id from ({truth_sql(wh)}) as truth", max_users)


def sampled_truth_sql(wh: Warehouse, max_users: int | None) -> str:
    """:func:`truth_sql` of the users of :func:`validation_users_sql` (all when None)."""
    if max_users is None:
        return truth_sql(wh)
    return f"select * from ({truth_sql(wh)}) as truth{_where(validation_users_sql(wh, max_users))}"


# The user's events on each catalog item over the history window, weighted by type, read from
# the per-cutoff user-item features (dbt counts them from the same point-in-time events).
_PERSONAL_WEIGHT = " + ".join(
    f"{weight:g} * pairs.ui_{event_type}_count_history"
    for event_type, weight in EVENT_WEIGHTS.items()
)


def _only(users_in: str | None, column: str = "user_id") -> str:
    """The filter to the users ``users_in`` returns, if given (after a where clause)."""
    return f" and {column} in ({users_in})" if users_in else ""


def _where(users_in: str) -> str:
    """A where clause keeping the users ``users_in`` returns."""
    return f" where user_id in ({users_in})"


def _personal_top_frequency_sql(wh: Warehouse, users_in: str | None) -> str:
    return f"""
    with personal as (
        select pairs.user_id, pairs.item_id, {_PERSONAL_WEIGHT} as score
        from {wh.table("features", "fct_user_item_features")} pairs
        inner join {wh.table("intermediate", "int_active_users")} active
            on active.as_of_date = pairs.as_of_date and active.user_id = pairs.user_id
        inner join {wh.table("staging", "stg_shop__items")} items on items.item_id = pairs.item_id
        where pairs.as_of_date = @c and items.is_available{_only(users_in, "pairs.user_id")}
    ),
    popular as (
        select user_id, item_id, -rank as score
        from {wh.table("candidates", "cand_popularity")}
        where as_of_date = @c and rank <= @k{_only(users_in)}
    ),
    tiered as (
        select user_id, item_id, 0 as tier, score from personal
        union all
        select user_id, item_id, 1 as tier, score from popular
    ),
    best as (
        select *, row_number() over (partition by user_id, item_id order by tier) as n
        from tiered
    ),
    ranked as (
        select user_id, item_id,
               row_number() over (partition by user_id order by tier, score desc, item_id)
                   as rank
        from best where n = 1
    )
    select * from ranked where rank <= @k
    """


def baseline_recommendations(
    wh: Warehouse, valid: date, users_in: str | None = None
) -> dict[str, pd.DataFrame]:
    """Top-EVAL_K lists at the ``valid`` cutoff of each baseline (user_id, item_id, rank), of
    the users the query ``users_in`` returns (it may use ``@cutoff``) when given, else all.

    popularity, implicit ALS and item-kNN are their candidate sources' own rankings;
    personal_top_frequency is the user's most interacted items (weighted by event type) before
    the cutoff, filled up with global popularity.
    """
    params = {"c": valid, "cutoff": valid, "k": EVAL_K}
    lists = {
        name: wh.query_df(
            f"select user_id, item_id, rank from {wh.table('candidates', f'cand_{source}')} "
            f"where as_of_date = @c and rank <= @k{_only(users_in)}",
            params,
        )
        for name, source in sources.SOURCE_BASELINES.items()
    }
    lists["personal_top_frequency"] = wh.query_df(_personal_top_frequency_sql(wh, users_in), params)
    return lists


def evaluate_on_window(
    wh: Warehouse,
    booster,
    features: list[str],
    valid: date,
    settings: Settings,
    *,
    with_baselines: bool = True,
) -> tuple[dict, dict]:
    """Ranker and baseline metrics at EVAL_K on the validation window, on the same users.

    Users: those with relevant items in the window among the users the ranker could serve
    (only they are scored), at most ``settings.max_labelled_users`` of them
    (:func:`recpipe.ranker.sample_of_users`). Metrics: NDCG, recall, MAP, hit rate, catalog
    coverage of these users' lists, and recall split into items the user purchased before the
    cutoff (repeat) and the rest (new).
    """
    users_in = validation_users_sql(wh, settings.max_labelled_users)
    params = {"cutoff": valid}
    truth = window_truth(wh, valid, settings.max_labelled_users)
    recommended = ranker.rank_in_chunks(
        wh,
        valid,
        booster,
        features,
        EVAL_K,
        users_per_chunk=settings.users_per_chunk,
        users_in=users_in,
    )
    truth = truth[truth["user_id"].isin(recommended["user_id"])]
    evaluated = truth["user_id"].unique()
    items = int(
        wh.query_df(
            f"select count(*) as n from {wh.table('staging', 'stg_shop__items')} where is_available"
        )["n"].iloc[0]
    )
    repeat = wh.query_df(
        f"select user_id, item_id from {wh.table('features', 'fct_user_item_features')} "
        f"where as_of_date = @cutoff and ui_purchase_count_history > 0{_only(users_in)}",
        params,
    )

    def measure(recommendations: pd.DataFrame) -> dict:
        lists = recommendations[recommendations["user_id"].isin(evaluated)]
        return evaluate(lists, truth, EVAL_K, catalog_size=max(items, 1), repeat_items=repeat)

    metrics = measure(recommended)
    baselines = (
        {
            name: measure(found)
            for name, found in baseline_recommendations(wh, valid, users_in).items()
        }
        if with_baselines
        else {}
    )
    return metrics, baselines
