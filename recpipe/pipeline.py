"""The task bodies of one ``recpipe_daily`` run for as-of date D, one function per DAG task.

Each takes the run (date, id, params), opens the warehouse for its own unit of work and hands
it to the module that owns the job: the run record (:mod:`recpipe.runs`), the gates'
measurements (:mod:`recpipe.quality`) and verdicts (:mod:`recpipe.gates`), Python candidates
and candidate recall (:mod:`recpipe.candidates`), the ranker (:mod:`recpipe.ranker`), the
evaluation harness (:mod:`recpipe.validation`) and the model registry
(:mod:`recpipe.model_registry`). Nothing here reads the wall clock for a computation:
timestamps written (``started_at``, ``trained_at``) are bookkeeping only.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import asdict

import pandas as pd
import pyarrow as pa

from recpipe import model_registry, ranker
from recpipe.candidates import (
    measure_candidate_recall,
    python_candidate_rows,
    replace_python_candidates,
)
from recpipe.gates import GateFailed, enforce
from recpipe.quality import (
    candidate_checks,
    feature_checks,
    feature_profile,
    model_checks,
    output_checks,
    raw_checks,
    record_feature_profile,
)
from recpipe.runs import (
    Run,
    mark_failed,
    now,
    record_success,
    run_cutoffs,
    start_run,
    train_cutoffs,
)
from recpipe.settings import Settings, load_settings
from recpipe.tables import PUBLISHED, UNION_SOURCE, ensure_tables
from recpipe.validation import evaluate_on_window
from recpipe.warehouse import Warehouse, session

# the DAG's tasks, in their order (the first and the last come from the run record)
__all__ = [
    "start_run",
    "check_raw",
    "check_features",
    "generate_python_candidates",
    "merge_python_candidates",
    "check_candidates",
    "train_or_load_ranker",
    "check_model",
    "score_candidates",
    "check_output",
    "publish_recommendations",
    "mark_failed",
    "Run",
    "run_cutoffs",
    "stage_table",
    "staged_rows",
]


def check_raw(run: Run, settings: Settings | None = None) -> None:
    with session(settings or load_settings()) as wh:
        enforce(wh, run.run_date, run.run_id, raw_checks(wh, run.as_of_date))


def check_features(run: Run, settings: Settings | None = None) -> None:
    """Gate the feature tables at D; their profile is stored for the next runs' drift check."""
    with session(settings or load_settings()) as wh:
        ensure_tables(wh)
        profile = feature_profile(wh, run.as_of_date)
        record_feature_profile(wh, run.run_date, run.run_id, profile, now())
        enforce(wh, run.run_date, run.run_id, feature_checks(wh, run.as_of_date, profile))


def generate_python_candidates(
    run: Run, settings: Settings | None = None, *, shard: int = 0
) -> int:
    """The registered Python sources' candidates for every cutoff of the run, for one user shard
    (of ``settings.user_shards``), written to the shard's staging table."""
    settings = settings or load_settings()
    where = (shard, settings.user_shards)
    written = 0
    with session(settings) as wh:
        parts = python_candidate_rows(wh, run_cutoffs(run, settings), settings, where)
        # the first write replaces the table a failed attempt may have left; the others append
        for index, rows in enumerate(_batches(parts, _STAGE_WRITE_ROWS)):
            wh.write_df(rows, *stage_table(run, where, PYTHON_CANDIDATES), append=index > 0)
            written += rows.num_rows
    return written


# Python candidate rows per staging write: one write for a small shop (on BigQuery each write is
# a load job of several seconds), a few hundred MB of Arrow at most at 10M events.
_STAGE_WRITE_ROWS = 4_000_000


def _batches(parts: Iterable[pa.Table], rows: int) -> Iterator[pa.Table]:
    """``parts`` (of one schema) concatenated, in order, into tables of at least ``rows`` rows
    (the last may have fewer)."""
    buffer: list[pa.Table] = []
    buffered = 0
    for part in parts:
        buffer.append(part)
        buffered += part.num_rows
        if buffered >= rows:
            yield pa.concat_tables(buffer)
            buffer, buffered = [], 0
    if buffer:
        yield pa.concat_tables(buffer)


def merge_python_candidates(run: Run, settings: Settings | None = None) -> int:
    """Every shard's staged Python candidates in as the run's cutoffs of each source's table,
    in one transaction (a missing shard is an error naming it); the staging tables dropped."""
    settings = settings or load_settings()
    with session(settings) as wh:
        staged = staged_rows(wh, run, settings.user_shards, PYTHON_CANDIDATES)
        written = replace_python_candidates(wh, staged, run_cutoffs(run, settings))
        for table in stage_tables(run, settings.user_shards, PYTHON_CANDIDATES):
            wh.execute(f"drop table if exists {wh.table(*table)}")
    return written


def check_candidates(run: Run, settings: Settings | None = None) -> None:
    """User coverage at D and union recall of the candidate sources on the validation window.

    Recall per source and of the union is also stored in ``recpipe.candidate_recall``.
    """
    settings = settings or load_settings()
    with session(settings) as wh:
        valid = run_cutoffs(run, settings)["valid"]
        recall = measure_candidate_recall(
            wh, run, valid, settings.candidate_depth, settings.max_labelled_users
        )
        union = recall.pop(UNION_SOURCE)
        checks = candidate_checks(
            wh, run.as_of_date, run.k, union, recall, valid, settings.candidate_depth
        )
        enforce(wh, run.run_date, run.run_id, checks)


def train_or_load_ranker(run: Run, settings: Settings | None = None) -> str:
    """Train a LightGBM ranker (or reuse the champion, per ``retrain``) and evaluate it.

    Training uses the stacked 'train' cutoffs (their labels end by the 'valid' cutoff, before
    D); metrics come from the 'valid' window, which the model never saw, beside the baselines
    on the same users. A new model that is worse than the champion (trained for a date <= D)
    on that window, beyond the configured tolerance, is recorded as rejected with the reason,
    and the champion's version is returned instead. Returns the version that serves D.
    """
    settings = settings or load_settings()
    as_of = run.as_of_date
    cutoffs = run_cutoffs(run, settings)
    params = ranker.RankerParams(seed=settings.seed)
    stacked = train_cutoffs(cutoffs)
    with session(settings) as wh:
        ensure_tables(wh)
        if run.retrain != "always":
            serving = model_registry.reusable_champion(wh, settings, as_of, run.retrain)
            if serving is not None:
                return serving
        rows = ranker.stacked_training_rows(
            wh,
            stacked,
            params,
            users_per_chunk=settings.users_per_chunk,
            max_users=settings.max_labelled_users,
        )
    # Trained with the warehouse closed: DuckDB's buffer pool, filled by the reads, would
    # otherwise stay beside LightGBM's copies (10M events: 5.7 GiB at the peak).
    trained = ranker.train(rows, params)
    del rows
    with session(settings) as wh:
        version = f"lgbm-{as_of:%Y%m%d}-{trained.version_hash}"
        path = ranker.save(trained, settings.models_dir, version)
        metrics, baselines = evaluate_on_window(
            wh, trained.booster, trained.features, cutoffs["valid"], settings
        )
        metrics["early_stopping_ndcg@10"] = trained.early_stopping_ndcg
        metrics["best_iteration"] = trained.best_iteration
        metrics["train_users"] = trained.train_users
        metrics["train_baskets"] = trained.train_queries
        metrics["train_cutoffs"] = [c.isoformat() for c in stacked]
        status, kept_champion, decision = model_registry.compare_with_champion(
            wh, settings, as_of, version, metrics, cutoffs["valid"]
        )
        metrics["champion_decision"] = decision
        model_registry.record(
            wh,
            {
                "model_version": version,
                "trained_at": now(),
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
            },
        )
    return version if kept_champion is None else str(kept_champion["model_version"])


def check_model(run: Run, version: str, settings: Settings | None = None) -> None:
    """The model must beat the gate's baseline on the validation window of D.

    A newly trained model that passes becomes the champion; one that fails is rejected.
    A reused champion is re-evaluated on this run's window.
    """
    settings = settings or load_settings()
    with session(settings) as wh:
        row = model_registry.model_row(wh, version)
        if pd.Timestamp(row["as_of_date"]).date() == run.as_of_date:
            metrics = json.loads(row["validation_metrics"])
            baselines = json.loads(row["baseline_metrics"])
        else:
            booster, features = ranker.load(settings.models_dir / f"{version}.txt")
            metrics, baselines = evaluate_on_window(
                wh, booster, features, run_cutoffs(run, settings)["valid"], settings
            )
        results = [
            *model_checks(version, metrics, baselines),
            *model_registry.champion_comparison(wh, run.as_of_date),
        ]
        try:
            enforce(wh, run.run_date, run.run_id, results)
        except GateFailed:
            model_registry.set_status(wh, version, "rejected", only_if="challenger")
            raise
        model_registry.set_status(wh, version, "champion", only_if="challenger")


# The staged rows' column types, fixed: a shard with no users stages no rows, and its table must
# still have the columns' types (not untyped ones) to union with the other shards'.
STAGED_SCHEMA = pa.schema(
    [
        ("run_date", pa.date32()),
        ("user_id", pa.string()),
        ("rank", pa.int32()),
        ("item_id", pa.string()),
        ("score", pa.float64()),
        ("model_version", pa.string()),
        ("sources", pa.string()),
    ]
)


# What a user shard stages, and the mapped task that stages it.
RECOMMENDATIONS = "recommendations"
PYTHON_CANDIDATES = "python_candidates"
_STAGING_TASK = {
    RECOMMENDATIONS: "score__rank_candidates",
    PYTHON_CANDIDATES: "candidates__python_sources",
}


def stage_table(
    run: Run, shard: tuple[int, int] = (0, 1), what: str = RECOMMENDATIONS
) -> tuple[str, str]:
    """Where shard ``(i, n)`` of D's ``what`` (its scored top K, or its Python candidates) waits
    for the next stage: ``work.<what>_stage_<D>`` (one shard) or ``..._<D>_shard_<i>_of_<n>``."""
    index, count = shard
    name = f"{what}_stage_{run.as_of_date:%Y%m%d}"
    return "work", name if count == 1 else f"{name}_shard_{index}_of_{count}"


def stage_tables(run: Run, shards: int, what: str = RECOMMENDATIONS) -> list[tuple[str, str]]:
    """The staging table of each of ``shards`` user shards of run D."""
    return [stage_table(run, (index, shards), what) for index in range(shards)]


def staged_rows(wh: Warehouse, run: Run, shards: int, what: str = RECOMMENDATIONS) -> str:
    """D's staged ``what`` of every shard, as a table or a ``union all`` to select from. A shard
    with no staging table is an error naming it (its mapped task did not finish)."""
    tables = stage_tables(run, shards, what)
    missing = [".".join(t) for t in tables if not wh.table_exists(*t)]
    if missing:
        raise RuntimeError(
            f"{len(missing)} of {shards} user shards have no staged {what} for "
            f"{run.as_of_date} ({', '.join(missing[:3])}): rerun {_STAGING_TASK[what]}"
        )
    if shards == 1:
        return wh.table(*tables[0])
    union = " union all ".join(f"select * from {wh.table(*t)}" for t in tables)
    return f"({union})"


def score_candidates(
    run: Run, version: str, settings: Settings | None = None, *, shard: int = 0
) -> int:
    """Rank the candidates of one user shard (of ``settings.user_shards``) at D with the model
    and write their top K per user to the shard's staging table."""
    settings = settings or load_settings()
    booster, features = ranker.load(settings.models_dir / f"{version}.txt")
    where = (shard, settings.user_shards)
    with session(settings) as wh:
        top = ranker.rank_in_chunks(
            wh,
            run.as_of_date,
            booster,
            features,
            run.k,
            users_per_chunk=settings.users_per_chunk,
            shard=where,
            discovery_slots=settings.discovery_slots,
        )
        top.insert(0, "run_date", run.as_of_date)
        top["model_version"] = version
        staged = pa.Table.from_pandas(
            top[STAGED_SCHEMA.names], schema=STAGED_SCHEMA, preserve_index=False
        )
        wh.write_df(staged, *stage_table(run, where))
    return staged.num_rows


def check_output(run: Run, settings: Settings | None = None) -> None:
    settings = settings or load_settings()
    with session(settings) as wh:
        staged = staged_rows(wh, run, settings.user_shards)
        enforce(wh, run.run_date, run.run_id, output_checks(wh, staged, run.as_of_date, run.k))


def publish_recommendations(run: Run, settings: Settings | None = None) -> int:
    """Swap the audited staging rows of every shard in as D's partition, atomically, and close
    the run."""
    settings = settings or load_settings()
    with session(settings) as wh:
        staged = staged_rows(wh, run, settings.user_shards)
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
            record_success(wh, run, stats["version"], int(stats["users"]), int(stats["n"]))
        for table in stage_tables(run, settings.user_shards):
            wh.execute(f"drop table if exists {wh.table(*table)}")
        return int(stats["n"])
