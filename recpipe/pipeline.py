"""The stages of one ``recpipe_daily`` run for as-of date D, one function per DAG task.

Each function takes the run (date, id, params), opens the warehouse for its own unit of work
and writes one thing. Nothing here reads the wall clock for a computation: timestamps written
(``started_at``, ``trained_at``) are bookkeeping only.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pandas as pd

from recpipe import ranker
from recpipe.evaluation import candidate_recall, evaluate
from recpipe.gates import FAIL, WARN, CheckResult, GateFailed, enforce, judge
from recpipe.quality import (
    feature_checks,
    feature_profile,
    output_checks,
    raw_checks,
    record_feature_profile,
)
from recpipe.settings import Settings, load_settings
from recpipe.tables import (
    CANDIDATES,
    PUBLISHED,
    PYTHON_CANDIDATE_COLUMNS,
    PYTHON_CANDIDATE_LAYOUT,
    UNION_SOURCE,
    ensure_tables,
)
from recpipe.warehouse import Warehouse, batch_table, session

EVAL_K = 10
RETRAIN_MODES = ("auto", "always", "never")
MAX_K = 200
AUTO_RETRAIN_DAYS = 7
EVENT_WEIGHTS = {"view": 1.0, "add_to_cart": 3.0, "purchase": 5.0}
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class ParamError(ValueError):
    """A run parameter is invalid; the run stops before touching the warehouse."""


@dataclass(frozen=True)
class Run:
    """One DAG run: the as-of date D and its validated params (JSON-serialisable via asdict)."""

    as_of: str
    run_id: str
    k: int
    retrain: str

    @property
    def as_of_date(self) -> date:
        return date.fromisoformat(self.as_of)

    @property
    def run_date(self) -> date:
        return self.as_of_date


def resolve_run(
    params: dict[str, Any], logical_date: datetime | None, run_after: datetime | None, run_id: str
) -> Run:
    """Validate DAG params and decide the as-of date.

    ``as_of`` param when given; else the logical date (scheduled runs and backfills: the run of
    day D uses events before D); else, for manual runs, the day the run was requested.
    """
    raw_as_of = params.get("as_of")
    if raw_as_of not in (None, ""):
        text = str(raw_as_of)
        if not _DATE.match(text):
            raise ParamError(f"as_of must be a date YYYY-MM-DD, got {text[:40]!r}")
        try:
            as_of = date.fromisoformat(text)
        except ValueError as err:
            raise ParamError(f"as_of is not a valid date: {text!r}") from err
    elif logical_date is not None:
        as_of = logical_date.astimezone(UTC).date()
    elif run_after is not None:
        as_of = run_after.astimezone(UTC).date()
    else:
        raise ParamError("cannot tell the as-of date: no as_of param and no logical date")
    k = params.get("k", 20)
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_K:
        raise ParamError(f"k must be an integer between 1 and {MAX_K}, got {str(k)[:40]!r}")
    retrain = params.get("retrain", "auto")
    if retrain not in RETRAIN_MODES:
        raise ParamError(
            f"retrain must be one of {', '.join(RETRAIN_MODES)}, got {str(retrain)[:40]!r}"
        )
    return Run(as_of=as_of.isoformat(), run_id=str(run_id), k=k, retrain=retrain)


def _now() -> datetime:
    """Wall-clock time for bookkeeping columns only."""
    return datetime.now(UTC).replace(tzinfo=None)


def run_cutoffs(run: Run, settings: Settings) -> dict[str, date]:
    """The run's cutoffs by role, as dbt's ``int_cutoffs`` derives them from the same vars
    (``label_days``, ``train_cutoffs`` reach dbt from the settings: :meth:`Settings.dbt_vars`):
    serve = D, valid = D - label_days, train = D - 2 x label_days, train_2 one window earlier.."""
    window = timedelta(days=settings.label_days)
    cutoffs = {"serve": run.as_of_date, "valid": run.as_of_date - window}
    for step in range(1, settings.train_cutoffs + 1):
        role = "train" if step == 1 else f"train_{step}"
        cutoffs[role] = run.as_of_date - (step + 1) * window
    return cutoffs


def train_cutoffs(cutoffs: dict[str, date]) -> list[date]:
    """The training cutoffs among ``run_cutoffs`` (train, train_2, ..), latest first."""
    return sorted((c for role, c in cutoffs.items() if role.startswith("train")), reverse=True)


def start_run(run: Run, settings: Settings | None = None) -> None:
    """Create recpipe's tables if needed and record the run as running.

    An earlier run of the same date still marked running was killed before it could close
    (one run per date at a time): it is closed as failed. Should it still be alive (BigQuery
    allows overlapping runs), its own publish sets it to success again.
    """
    settings = settings or load_settings()
    with session(settings) as wh:
        ensure_tables(wh)
        table = wh.table(PUBLISHED, "pipeline_runs")
        with wh.transaction():
            wh.execute(
                f"update {table} set status = 'failed', finished_at = @now, "
                "error = coalesce(error, @reason) "
                "where run_date = @run_date and status = 'running' and run_id <> @run_id",
                {
                    "now": _now(),
                    "reason": f"abandoned: never finished; superseded by run {run.run_id}",
                    "run_date": run.run_date,
                    "run_id": run.run_id,
                },
            )
            wh.execute(f"delete from {table} where run_id = @run_id", {"run_id": run.run_id})
            wh.execute(
                f"insert into {table} (run_date, run_id, status, started_at, params) "
                "values (@run_date, @run_id, 'running', @started_at, @params)",
                {
                    "run_date": run.run_date,
                    "run_id": run.run_id,
                    "started_at": _now(),
                    "params": json.dumps(asdict(run)),
                },
            )


def check_raw(run: Run, settings: Settings | None = None) -> None:
    with session(settings or load_settings()) as wh:
        enforce(wh, run.run_date, run.run_id, raw_checks(wh, run.as_of_date))


def check_features(run: Run, settings: Settings | None = None) -> None:
    """Gate the feature tables at D; their profile is stored for the next runs' drift check."""
    with session(settings or load_settings()) as wh:
        ensure_tables(wh)
        profile = feature_profile(wh, run.as_of_date)
        record_feature_profile(wh, run.run_date, run.run_id, profile, _now())
        enforce(wh, run.run_date, run.run_id, feature_checks(wh, run.as_of_date, profile))


def _python_source_inputs(
    wh: Warehouse, cutoff: date, settings: Settings
) -> tuple[pd.DataFrame, list[str], list[str]]:
    """Weighted (user, item) interactions before ``cutoff``, its active users, available items."""
    weight = (
        "case event_type "
        + " ".join(f"when '{t}' then {w}" for t, w in EVENT_WEIGHTS.items())
        + " else 1.0 end"
    )
    start = cutoff - timedelta(days=settings.active_days * 2)
    params = {
        "cutoff": cutoff,
        # event_ts is a TIMESTAMP: BigQuery compares it with timestamps only, not with dates
        "cutoff_ts": datetime(cutoff.year, cutoff.month, cutoff.day),
        "start_ts": datetime(start.year, start.month, start.day),
    }
    interactions = wh.query_df(
        f"""select user_id, item_id, sum({weight}) as weight
            from staging.stg_shop__events
            where event_ts < @cutoff_ts and event_ts >= @start_ts
              and item_id in (select item_id from staging.stg_shop__items)
            group by user_id, item_id""",
        params,
    )
    users = wh.query_df(
        "select user_id from intermediate.int_active_users where as_of_date = @cutoff "
        "order by user_id",
        params,
    )["user_id"]
    items = wh.query_df(
        "select item_id from staging.stg_shop__items where is_available order by item_id"
    )["item_id"]
    return interactions, users.tolist(), items.tolist()


def _python_source_baskets(wh: Warehouse, cutoff: date, settings: Settings) -> pd.DataFrame:
    """Purchased (user, item, basket) rows before ``cutoff`` over the same history window as
    :func:`_python_source_inputs`; a basket is the session, or the user's day without one."""
    start = cutoff - timedelta(days=settings.active_days * 2)
    return wh.query_df(
        """select user_id, item_id,
                   coalesce(session_id, cast(event_date as string)) as basket_id,
                   min(event_ts) as basket_ts
            from staging.stg_shop__events
            where event_type = 'purchase' and event_ts < @cutoff_ts and event_ts >= @start_ts
              and item_id in (select item_id from staging.stg_shop__items)
            group by user_id, item_id, basket_id""",
        {
            "cutoff_ts": datetime(cutoff.year, cutoff.month, cutoff.day),
            "start_ts": datetime(start.year, start.month, start.day),
        },
    )


def generate_python_candidates(run: Run, settings: Settings | None = None) -> int:
    """Implicit-ALS, item-kNN and TIFU-kNN candidates for every cutoff into
    ``candidates.cand_<source>``.

    ALS and item-kNN read the same point-in-time interactions (events before each cutoff,
    weighted by event type); TIFU-kNN reads the purchased baskets before each cutoff.
    Returns the number of rows written over all Python sources.
    """
    from recpipe.candidates_python import (
        als_candidates,
        item_knn_candidates,
        tifuknn_candidates,
    )

    settings = settings or load_settings()
    frames: dict[str, list[pd.DataFrame]] = {source: [] for source in ranker.PYTHON_SOURCES}
    with session(settings) as wh:
        for cutoff in sorted(run_cutoffs(run, settings).values()):
            interactions, users, items = _python_source_inputs(wh, cutoff, settings)
            found = {
                "als": als_candidates(
                    interactions, users, items, depth=settings.candidate_depth, seed=settings.seed
                ),
                "knn": item_knn_candidates(
                    interactions, users, items, depth=settings.candidate_depth
                ),
                "tifuknn": tifuknn_candidates(
                    _python_source_baskets(wh, cutoff, settings),
                    users,
                    items,
                    depth=settings.candidate_depth,
                ),
            }
            for source, frame in found.items():
                frame.insert(0, "as_of_date", cutoff)
                frames[source].append(frame)
        written = 0
        for source, parts in frames.items():
            result = pd.concat(parts, ignore_index=True)
            result["as_of_date"] = pd.to_datetime(result["as_of_date"]).dt.date
            _replace_cutoffs(wh, f"cand_{source}", result, run_cutoffs(run, settings))
            written += len(result)
    return written


def _replace_cutoffs(
    wh: Warehouse, name: str, rows: pd.DataFrame, cutoffs: dict[str, date]
) -> None:
    """Replace this run's cutoffs in ``candidates.<name>`` with ``rows``, in one transaction;
    other dates' rows stay (runs of other dates may be reading or writing them)."""
    wh.create_table(CANDIDATES, name, PYTHON_CANDIDATE_COLUMNS, **PYTHON_CANDIDATE_LAYOUT)
    table = wh.table(CANDIDATES, name)
    columns = "as_of_date, user_id, item_id, score, rank"
    with batch_table(wh, rows[columns.split(", ")], name) as batch, wh.transaction():
        wh.execute(
            f"delete from {table} where as_of_date in ({', '.join('@' + r for r in cutoffs)})",
            cutoffs,
        )
        wh.execute(f"insert into {table} ({columns}) select {columns} from {batch}")


def _truth(wh: Warehouse, cutoff: date) -> pd.DataFrame:
    """Relevant items of the window after ``cutoff``: purchases, or any event if none bought."""
    labels = wh.query_df(
        "select user_id, item_id, purchased from intermediate.int_labels "
        "where as_of_date = @cutoff",
        {"cutoff": cutoff},
    )
    if labels["purchased"].any():
        labels = labels[labels["purchased"]]
    return labels[["user_id", "item_id"]]


def measure_candidate_recall(wh: Warehouse, run: Run, cutoff: date, depth: int) -> dict[str, float]:
    """Recall of each candidate source and of their union at ``depth`` on the window after
    ``cutoff``; stored in ``recpipe.candidate_recall`` (this run's rows replaced).

    Truth is ``_truth`` (purchases, or any event if the window has none) of every user with one,
    so users the candidates miss entirely count as misses. Returns {source: recall, "union": ..}.
    """
    ensure_tables(wh)
    truth = _truth(wh, cutoff)
    recall: dict[str, float] = {}
    found_all = []
    for source in ranker.SOURCES:
        found = wh.query_df(
            f"select user_id, item_id from candidates.cand_{source} "
            "where as_of_date = @c and rank <= @depth",
            {"c": cutoff, "depth": depth},
        )
        found_all.append(found)
        recall[source] = candidate_recall(found, truth) if len(truth) else math.nan
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
            "computed_at": _now(),
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


def check_candidates(run: Run, settings: Settings | None = None) -> None:
    """User coverage at D and union recall of the candidate sources on the validation window.

    Recall per source and of the union is also stored in ``recpipe.candidate_recall``.
    """
    settings = settings or load_settings()
    with session(settings) as wh:
        cutoffs = run_cutoffs(run, settings)
        coverage = wh.query_df(
            f"""
            with per_user as (
                select user_id, count(distinct item_id) as n
                from ({
                " union all ".join(
                    f"select user_id, item_id from candidates.cand_{s} where as_of_date = @as_of"
                    for s in ranker.SOURCES
                )
            }) u
                group by user_id
            )
            select count(*) as active,
                   sum(case when p.n >= @k then 1 else 0 end) as covered
            from intermediate.int_active_users a
            left join per_user p on p.user_id = a.user_id
            where a.as_of_date = @as_of
            """,
            {"as_of": run.as_of_date, "k": run.k},
        ).iloc[0]
        active = float(coverage["active"])
        results = [
            judge(
                "candidates",
                "user_coverage",
                float(coverage["covered"] or 0) / active if active else float("nan"),
                f"active users with >= {run.k} candidates",
            )
        ]
        valid = cutoffs["valid"]
        recall = measure_candidate_recall(wh, run, valid, settings.candidate_depth)
        union = recall.pop(UNION_SOURCE)
        detail = ", ".join(f"{s}={v:.3f}" for s, v in recall.items())
        results.append(
            judge(
                "candidates",
                "union_recall_valid",
                union,
                f"window from {valid}, depth {settings.candidate_depth}; per source: {detail}",
            )
        )
        enforce(wh, run.run_date, run.run_id, results)


# Baselines read straight from a candidate source's own ranking (name -> source).
SOURCE_BASELINES = {
    "popularity": "popularity",
    "implicit_als": "als",
    "item_knn": "knn",
    "tifuknn": "tifuknn",
}

# The user's events on each catalog item over the history window, weighted by type, read from
# the per-cutoff user-item features (dbt counts them from the same point-in-time events).
# (No alias may be a schema's name: the BigQuery warehouse qualifies `schema.name`.)
_PERSONAL_WEIGHT = " + ".join(
    f"{weight:g} * pairs.ui_{event_type}_count_history"
    for event_type, weight in EVENT_WEIGHTS.items()
)
_PERSONAL_TOP_FREQUENCY_SQL = f"""
    with personal as (
        select pairs.user_id, pairs.item_id, {_PERSONAL_WEIGHT} as score
        from features.fct_user_item_features pairs
        inner join intermediate.int_active_users active
            on active.as_of_date = pairs.as_of_date and active.user_id = pairs.user_id
        inner join staging.stg_shop__items items on items.item_id = pairs.item_id
        where pairs.as_of_date = @c and items.is_available
    ),
    popular as (
        select user_id, item_id, -rank as score
        from candidates.cand_popularity where as_of_date = @c and rank <= @k
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


def _baseline_recommendations(wh: Warehouse, valid: date) -> dict[str, pd.DataFrame]:
    """Top-EVAL_K lists at the ``valid`` cutoff of each baseline (user_id, item_id, rank).

    popularity, implicit ALS and item-kNN are their candidate sources' own rankings;
    personal_top_frequency is the user's most interacted items (weighted by event type) before
    the cutoff, filled up with global popularity.
    """
    params = {"c": valid, "k": EVAL_K}
    lists = {
        name: wh.query_df(
            f"select user_id, item_id, rank from candidates.cand_{source} "
            "where as_of_date = @c and rank <= @k",
            params,
        )
        for name, source in SOURCE_BASELINES.items()
    }
    lists["personal_top_frequency"] = wh.query_df(_PERSONAL_TOP_FREQUENCY_SQL, params)
    return lists


def _evaluate_on_valid(
    wh: Warehouse,
    booster,
    features: list[str],
    valid: date,
    settings: Settings,
    *,
    with_baselines: bool = True,
) -> tuple[dict, dict]:
    """Ranker and baseline metrics at EVAL_K on the validation window, on the same users.

    Users: those with relevant items in the window among the users the ranker could serve.
    Metrics: NDCG, recall, MAP, hit rate, catalog coverage, and recall split into items the
    user purchased before the cutoff (repeat) and the rest (new).
    """
    truth = _truth(wh, valid)
    recommended = ranker.rank_in_chunks(
        wh, valid, booster, features, EVAL_K, users_per_chunk=settings.users_per_chunk
    )
    users = recommended["user_id"].unique()
    truth = truth[truth["user_id"].isin(users)]
    items = int(
        wh.query_df("select count(*) as n from staging.stg_shop__items where is_available")[
            "n"
        ].iloc[0]
    )
    repeat = wh.query_df(
        "select user_id, item_id from features.fct_user_item_features "
        "where as_of_date = @c and ui_purchase_count_history > 0",
        {"c": valid},
    )

    def measure(recommendations: pd.DataFrame) -> dict:
        return evaluate(
            recommendations, truth, EVAL_K, catalog_size=max(items, 1), repeat_items=repeat
        )

    metrics = measure(recommended)
    baselines = (
        {name: measure(found) for name, found in _baseline_recommendations(wh, valid).items()}
        if with_baselines
        else {}
    )
    return metrics, baselines


def _registry_champion(wh: Warehouse, as_of: date, since: date | None) -> pd.Series | None:
    """Newest champion trained for a date in (since, as_of]: point in time, never from later."""
    rows = wh.query_df(
        f"""select * from {wh.table(PUBLISHED, "model_registry")}
            where status = 'champion' and as_of_date <= @as_of and as_of_date > @since
            order by as_of_date desc, trained_at desc limit 1""",
        # date.min, not NULL: a NULL parameter has no type on BigQuery
        {"as_of": as_of, "since": since if since is not None else date.min},
    )
    return None if rows.empty else rows.iloc[0]


def _compare_with_champion(
    wh: Warehouse, settings: Settings, as_of: date, version: str, metrics: dict, valid: date
) -> tuple[str, pd.Series | None, dict]:
    """Decide whether a new model may replace the champion, on the same validation window.

    The champion considered is the newest one trained for a date <= ``as_of`` (point in time:
    its training labels end before this run's validation window starts). The new model's
    NDCG@EVAL_K divided by the champion's is judged against ``model.challenger_ndcg_vs_champion``
    in gates.yml: below its fail level the newcomer is rejected and the champion keeps serving.
    Returns (status of the new model, the champion row or None, the decision record).
    """
    champion = _registry_champion(wh, as_of, None)
    key = f"ndcg@{EVAL_K}"
    if champion is None or champion["model_version"] == version:
        return "challenger", None, {"decision": "challenger", "reason": "no earlier champion"}
    champion_version = str(champion["model_version"])
    try:
        booster, features = ranker.load(settings.models_dir / f"{champion_version}.txt")
        champion_metrics, _ = _evaluate_on_valid(
            wh, booster, features, valid, settings, with_baselines=False
        )
    except (FileNotFoundError, ValueError) as err:
        reason = f"champion {champion_version} cannot be evaluated ({err}); replaced"
        return "challenger", None, {"decision": "challenger", "reason": reason}
    new, old = float(metrics[key]), float(champion_metrics[key])
    ratio = new / old if old > 0 else (math.inf if new > 0 else 1.0)
    verdict = judge("model", "challenger_ndcg_vs_champion", ratio)
    accepted = verdict.status != "fail"
    record = {
        "decision": "challenger" if accepted else "rejected",
        "champion": champion_version,
        f"champion_{key}": old,
        f"challenger_{key}": new,
        "ratio": ratio,
        "tolerance_floor": verdict.threshold,
        "reason": (
            f"{key} {new:.4f} vs champion {champion_version} {old:.4f} on the window from "
            f"{valid} (ratio {ratio:.3f}, floor {verdict.threshold})"
            + ("" if accepted else "; the champion keeps serving")
        ),
    }
    return ("challenger" if accepted else "rejected"), (None if accepted else champion), record


def train_or_load_ranker(run: Run, settings: Settings | None = None) -> str:
    """Train a LightGBM ranker (or reuse the champion, per ``retrain``) and evaluate it.

    Training uses the 'train' cutoff (labels end at the 'valid' cutoff, before D); metrics
    come from the 'valid' window, which the model never saw, beside the baselines on the same
    users. A new model that is worse than the champion (trained for a date <= D) on that window,
    beyond the configured tolerance, is recorded as rejected with the reason, and the champion's
    version is returned instead. Returns the version that serves D.
    """
    settings = settings or load_settings()
    with session(settings) as wh:
        ensure_tables(wh)
        as_of = run.as_of_date
        if run.retrain != "always":
            since = None if run.retrain == "never" else as_of - timedelta(days=AUTO_RETRAIN_DAYS)
            champion = _registry_champion(wh, as_of, since)
            unusable = None
            if champion is not None:
                try:  # a champion whose artifact is gone or corrupt cannot serve
                    ranker.load(settings.models_dir / f"{champion['model_version']}.txt")
                    return str(champion["model_version"])
                except (FileNotFoundError, ValueError) as err:
                    unusable = str(err)
            if run.retrain == "never":
                raise GateFailed(
                    f"retrain=never but no usable champion model exists for {as_of}"
                    + (f": {unusable}" if unusable else "")
                )
            if unusable:  # retrain=auto: train a replacement, saying why
                print(f"champion not usable ({unusable}); training a new model")
        cutoffs = run_cutoffs(run, settings)
        params = ranker.RankerParams(seed=settings.seed)
        stacked = train_cutoffs(cutoffs)
        trained = ranker.train(
            ranker.stacked_training_rows(
                wh, stacked, params, users_per_chunk=settings.users_per_chunk
            ),
            params,
        )
        version = f"lgbm-{as_of:%Y%m%d}-{trained.version_hash}"
        path = ranker.save(trained, settings.models_dir, version)
        metrics, baselines = _evaluate_on_valid(
            wh, trained.booster, trained.features, cutoffs["valid"], settings
        )
        metrics["early_stopping_ndcg@10"] = trained.early_stopping_ndcg
        metrics["best_iteration"] = trained.best_iteration
        metrics["train_users"] = trained.train_users
        metrics["train_baskets"] = trained.train_queries
        metrics["train_cutoffs"] = [c.isoformat() for c in stacked]
        status, kept_champion, decision = _compare_with_champion(
            wh, settings, as_of, version, metrics, cutoffs["valid"]
        )
        metrics["champion_decision"] = decision
        registry = wh.table(PUBLISHED, "model_registry")
        row = {
            "model_version": version,
            "trained_at": _now(),
            "as_of_date": as_of,
            "train_cutoff": cutoffs["train"],
            "train_label_end": cutoffs["valid"],
            "valid_cutoff": cutoffs["valid"],
            "valid_label_end": as_of,
            "params": json.dumps(asdict(params)),
            "features": json.dumps(trained.features),
            "feature_importance": json.dumps(trained.importance),
            "validation_metrics": json.dumps(metrics),
            "baseline_metrics": json.dumps(baselines),
            "status": status,
            "artifact_path": str(path),
        }
        with wh.transaction():
            wh.execute(f"delete from {registry} where model_version = @v", {"v": version})
            wh.execute(
                f"insert into {registry} ({', '.join(row)}) "
                f"values ({', '.join('@' + c for c in row)})",
                row,
            )
    return version if kept_champion is None else str(kept_champion["model_version"])


def _model_row(wh: Warehouse, version: str) -> pd.Series:
    rows = wh.query_df(
        f"select * from {wh.table(PUBLISHED, 'model_registry')} where model_version = @v",
        {"v": version},
    )
    if rows.empty:
        raise GateFailed(f"model {version} is not in the model registry")
    return rows.iloc[0]


def check_model(run: Run, version: str, settings: Settings | None = None) -> None:
    """The model must beat the popularity baseline on the validation window of D.

    A newly trained model that passes becomes the champion; one that fails is rejected.
    A reused champion is re-evaluated on this run's window.
    """
    settings = settings or load_settings()
    with session(settings) as wh:
        row = _model_row(wh, version)
        if pd.Timestamp(row["as_of_date"]).date() == run.as_of_date:
            metrics = json.loads(row["validation_metrics"])
            baselines = json.loads(row["baseline_metrics"])
        else:
            booster, features = ranker.load(settings.models_dir / f"{version}.txt")
            metrics, baselines = _evaluate_on_valid(
                wh, booster, features, run_cutoffs(run, settings)["valid"], settings
            )
        ndcg, base = metrics[f"ndcg@{EVAL_K}"], baselines["popularity"][f"ndcg@{EVAL_K}"]
        lift = ndcg / base if base else (math.inf if ndcg > 0 else math.nan)
        results = [
            judge("model", "validation_users", metrics.get("users", 0)),
            judge(
                "model",
                "ndcg_lift_over_popularity",
                lift,
                f"{version}: ndcg@{EVAL_K} {ndcg:.4f} vs popularity {base:.4f}",
            ),
            *_champion_comparison(wh, run.as_of_date),
        ]
        try:
            enforce(wh, run.run_date, run.run_id, results)
        except GateFailed:
            _set_status(wh, version, "rejected", only_if="challenger")
            raise
        _set_status(wh, version, "champion", only_if="challenger")


def _champion_comparison(wh: Warehouse, as_of: date) -> list[CheckResult]:
    """The champion/challenger verdict of the model trained for D, if one was compared.

    A rejected challenger does not stop the run (the champion serves), so its "fail" is
    recorded as a warning with the reason.
    """
    rows = wh.query_df(
        f"select validation_metrics from {wh.table(PUBLISHED, 'model_registry')} "
        "where as_of_date = @d order by trained_at desc limit 1",
        {"d": as_of},
    )
    metrics = json.loads(rows["validation_metrics"].iloc[0] or "{}") if len(rows) else {}
    decision = metrics.get("champion_decision", {})
    if "ratio" not in decision:
        return []
    verdict = judge("model", "challenger_ndcg_vs_champion", decision["ratio"], decision["reason"])
    return [replace(verdict, status=WARN) if verdict.status == FAIL else verdict]


def _set_status(wh: Warehouse, version: str, status: str, only_if: str) -> None:
    wh.execute(
        f"update {wh.table(PUBLISHED, 'model_registry')} set status = @status "
        "where model_version = @v and status = @only_if",
        {"status": status, "v": version, "only_if": only_if},
    )


def stage_table(run: Run) -> tuple[str, str]:
    return "work", f"recommendations_stage_{run.as_of_date:%Y%m%d}"


def score_candidates(run: Run, version: str, settings: Settings | None = None) -> int:
    """Rank D's candidates with the model and write the top K per user to a staging table."""
    settings = settings or load_settings()
    booster, features = ranker.load(settings.models_dir / f"{version}.txt")
    with session(settings) as wh:
        top = ranker.rank_in_chunks(
            wh, run.as_of_date, booster, features, run.k, users_per_chunk=settings.users_per_chunk
        )
        top.insert(0, "run_date", run.as_of_date)
        top["model_version"] = version
        top = top[["run_date", "user_id", "rank", "item_id", "score", "model_version", "sources"]]
        top["rank"] = top["rank"].astype("int32")
        wh.write_df(top, *stage_table(run))
    return len(top)


def check_output(run: Run, settings: Settings | None = None) -> None:
    with session(settings or load_settings()) as wh:
        staged = wh.table(*stage_table(run))
        enforce(wh, run.run_date, run.run_id, output_checks(wh, staged, run.as_of_date, run.k))


def publish_recommendations(run: Run, settings: Settings | None = None) -> int:
    """Swap the audited staging rows in as D's partition, atomically, and close the run."""
    with session(settings or load_settings()) as wh:
        staged = wh.table(*stage_table(run))
        recs = wh.table(PUBLISHED, "recommendations")
        stats = wh.query_df(
            f"select count(*) as n, count(distinct user_id) as users, "
            f"min(model_version) as version from {staged}"
        ).iloc[0]
        with wh.transaction():
            wh.execute(f"delete from {recs} where run_date = @d", {"d": run.run_date})
            wh.execute(
                f"insert into {recs} select run_date, user_id, rank, item_id, score, "
                f"model_version, sources from {staged} order by user_id, rank"
            )
            wh.execute(
                f"update {wh.table(PUBLISHED, 'pipeline_runs')} set status = 'success', "
                "finished_at = @now, model_version = @v, users = @users, rows = @n, "
                "error = null where run_id = @run_id",
                {
                    "now": _now(),
                    "v": stats["version"],
                    "users": int(stats["users"]),
                    "n": int(stats["n"]),
                    "run_id": run.run_id,
                },
            )
        wh.execute(f"drop table if exists {staged}")
        return int(stats["n"])


def mark_failed(run: Run, reason: str | None, settings: Settings | None = None) -> str:
    """Record a failed run (keeping an earlier, more precise reason when ``reason`` is None).

    Published recommendations are left exactly as they were. Returns the recorded reason.
    """
    with session(settings or load_settings()) as wh:
        ensure_tables(wh)
        table = wh.table(PUBLISHED, "pipeline_runs")
        wh.execute(
            f"update {table} set status = 'failed', finished_at = @now, "
            "error = coalesce(@reason, error, 'a task failed') where run_id = @run_id",
            {"now": _now(), "reason": reason[:1000] if reason else None, "run_id": run.run_id},
        )
        found = wh.query_df(
            f"select error from {table} where run_id = @run_id", {"run_id": run.run_id}
        )
        return str(found["error"].iloc[0]) if len(found) else (reason or "unknown")
