"""Second stage: assemble candidates with their features, train and apply a LightGBM ranker.

One row per (cutoff, user, candidate item). Features are every numeric column of the dbt
feature tables (user, item, user×item, all point in time at the cutoff) plus each candidate
source's score and rank; the label is the graded relevance of the item in the window after the
cutoff (3 purchase, 2 cart, 1 view, 0 none).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from recpipe import sources
from recpipe.warehouse import Warehouse

KEY_COLUMNS = ("user_id", "item_id")
FEATURE_DECIMALS = 9
# How many of an item the user bought in the history window: 0 (or none) = never bought.
NEVER_BOUGHT = "ui_purchased_quantity_history"
NON_FEATURES = ("as_of_date", "user_id", "item_id", "sources", "label", "purchased", "query_id")
FEATURE_TABLES = {  # table -> join keys
    "fct_user_features": ("user_id",),
    "fct_item_features": ("item_id",),
    "fct_user_item_features": ("user_id", "item_id"),
}


@dataclass(frozen=True)
class RankerParams:
    """LightGBM lambdarank settings; deterministic for a given seed and thread count."""

    learning_rate: float = 0.1
    num_leaves: int = 31
    min_child_samples: int = 20
    n_estimators: int = 400
    early_stopping_rounds: int = 40
    feature_fraction: float = 0.8
    max_negatives_per_user: int = 50
    validation_user_share: float = 0.2
    eval_at: int = 10
    num_threads: int = 2
    seed: int = 42

    def lgbm_params(self) -> dict:
        return {
            "objective": "lambdarank",
            "metric": "ndcg",
            "eval_at": [self.eval_at],
            "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves,
            "min_child_samples": self.min_child_samples,
            "feature_fraction": self.feature_fraction,
            "feature_fraction_seed": self.seed,
            "bagging_seed": self.seed,
            "data_random_seed": self.seed,
            "seed": self.seed,
            "deterministic": True,
            "force_row_wise": True,
            "num_threads": self.num_threads,
            "verbosity": -1,
        }


@dataclass
class TrainedRanker:
    booster: lgb.Booster
    features: list[str]
    best_iteration: int
    train_users: int
    train_rows: int
    train_queries: int
    early_stopping_ndcg: float
    importance: dict[str, float] = field(default_factory=dict)

    @property
    def model_text(self) -> str:
        return self.booster.model_to_string(num_iteration=self.best_iteration)

    @property
    def version_hash(self) -> str:
        return hashlib.sha256(self.model_text.encode()).hexdigest()[:12]


def labelled_users(wh: Warehouse) -> str:
    """A query of the users with an event in the label window after ``@cutoff``."""
    labels = wh.table("intermediate", "int_labels")
    return f"select user_id from {labels} where as_of_date = @cutoff"


def sample_of_users(users_in: str, max_users: int | None) -> str:
    """A query of at most ``max_users`` of the users ``users_in`` returns: those first in the
    order of the MD5 of their id, so the same users in every run, chunking and warehouse
    (DuckDB's hex string and BigQuery's bytes sort alike). ``None``: all of them."""
    if max_users is None:
        return users_in
    return (
        f"select user_id from (select distinct user_id from ({users_in}) as listed) as users "
        f"order by md5(user_id), user_id limit {int(max_users)}"
    )


def _candidates_at_cutoff(users_in: str | None) -> str:
    """The filter of the candidate tables' rows at ``@cutoff``, of the users ``users_in``
    returns when given."""
    return "as_of_date = @cutoff" + (f" and user_id in ({users_in})" if users_in else "")


def candidate_table(
    wh: Warehouse,
    cutoff: date,
    *,
    with_labels: bool,
    users: tuple[str, str] | None = None,
    users_in: str | None = None,
    sample: RankerParams | None = None,
) -> pa.Table:
    """All candidates of every source at ``cutoff`` with their features (and labels); only
    those of users from ``users[0]`` to ``users[1]`` (inclusive) when given, and only those of
    the users that the query ``users_in`` returns (it may use ``@cutoff``) when given. With
    ``sample`` (labels only): the training sample of :func:`sample_training_rows`, drawn in the
    warehouse, so only the kept rows are joined to their features and read. Rows come in the
    warehouse's order, which varies between runs: every user of a frame sorts it (sorting
    in the warehouse cost a third of the read at 1M events)."""
    if sample is not None and not with_labels:
        raise ValueError("a training sample needs the labels")
    where = _candidates_at_cutoff(users_in)
    if users:
        where += " and user_id between @first_user and @last_user"
    labels = (
        f"left join {wh.table('intermediate', 'int_labels')} l on l.as_of_date = @cutoff "
        "and l.user_id = c.user_id and l.item_id = c.item_id"
    )
    candidates = f"with pivoted as ({sources.pivot_sql(wh, where)}), " + (
        _sampled(labels, sample) if sample else "candidates as (select * from pivoted)"
    )
    selects, joins = ["c.*"], []
    for alias, (table, keys) in enumerate(FEATURE_TABLES.items()):
        columns = [col for col in wh.columns("features", table) if col not in NON_FEATURES]
        selects += [f"f{alias}.{col}" for col in columns]
        on = " and ".join(f"f{alias}.{key} = c.{key}" for key in keys)
        joins.append(
            f"left join {wh.table('features', table)} f{alias} "
            f"on f{alias}.as_of_date = @cutoff and {on}"
        )
    if with_labels:
        selects += ["coalesce(l.label, 0) as label", "coalesce(l.purchased, false) as purchased"]
        joins.append(labels)
    sql = f"""
        {candidates}
        select {", ".join(selects)}
        from candidates c
        {" ".join(joins)}
    """
    params = {"cutoff": cutoff}
    if users:
        params.update(first_user=users[0], last_user=users[1])
    return wh.query_arrow(sql, params)


def candidate_frame(wh: Warehouse, cutoff: date, **query) -> pd.DataFrame:
    """:func:`candidate_table` (same arguments) as the ranker's frame (:func:`_to_frame`)."""
    return _to_frame(candidate_table(wh, cutoff, **query))


def _to_frame(table: pa.Table) -> pd.DataFrame:
    """Candidate rows as pandas: every feature numeric, floats rounded to FEATURE_DECIMALS."""
    frame = table.to_pandas()
    for column in frame.columns:
        if column in NON_FEATURES:
            continue
        if frame[column].dtype == object:
            frame[column] = pd.to_numeric(frame[column])
        if pd.api.types.is_float_dtype(frame[column]):
            # Parallel float sums in the warehouse may differ in the last bits between runs;
            # rounding makes reruns feed the model byte-identical features.
            frame[column] = frame[column].round(FEATURE_DECIMALS)
    return frame


def _draw_key(user: str, item: str, seed: int) -> str:
    """The sampling draw of a negative (user, item): in the warehouse's SQL and in pandas."""
    return f"{user}|{item}|{seed}"


def _sampled(labels: str, params: RankerParams) -> str:
    """CTEs after ``pivoted``: ``candidates``, those of ``pivoted`` in the sample of
    :func:`sample_training_rows`: users with a positive label, their positives and the
    ``max_negatives_per_user`` negatives first by the MD5 of :func:`_draw_key` (DuckDB's hex
    string and BigQuery's bytes sort alike; item_id breaks a tie). One pass over ``pivoted``
    (a second reference would compute the pivot twice)."""
    key = _draw_key("' || c.user_id || '", "' || c.item_id || '", int(params.seed))
    label = "coalesce(l.label, 0)"
    return f"""
        drawn as (
            select c.*, {label} as draw_label,
                max({label}) over (partition by c.user_id) as best_label,
                row_number() over (
                    partition by c.user_id, {label} > 0 order by md5('{key}'), c.item_id
                ) as draw
            from pivoted c
            {labels}
        ),
        candidates as (
            select {", ".join(sources.pivot_columns())} from drawn
            where best_label > 0
                and (draw_label > 0 or draw <= {int(params.max_negatives_per_user)})
        )
    """


def shard_slice(users: list[str], shard: tuple[int, int]) -> list[str]:
    """Shard ``i`` of ``n`` of the sorted ``users``: the i-th of n contiguous slices whose sizes
    differ by at most one (empty when there are fewer users than shards)."""
    index, count = shard
    if not 0 <= index < count:
        raise ValueError(f"shard {index} of {count} does not exist")
    return users[len(users) * index // count : len(users) * (index + 1) // count]


def candidate_tables(
    wh: Warehouse,
    cutoff: date,
    *,
    with_labels: bool,
    users_per_chunk: int,
    shard: tuple[int, int] = (0, 1),
    users_in: str | None = None,
    sample: RankerParams | None = None,
) -> Iterator[pa.Table]:
    """:func:`candidate_table` in chunks of at most ``users_per_chunk`` users (consecutive
    user_id ranges in the warehouse's order), so memory grows with the chunk, not the shop;
    only the users of ``shard`` (index, count): :func:`shard_slice`. Every stage that uses them
    works per user, so neither the chunks nor the shards change a result. ``users_in``: only
    the users this query returns, and ``sample``: the training sample (see
    :func:`candidate_table`)."""
    unions = sources.union_sql(wh, "user_id", _candidates_at_cutoff(users_in))
    every_user = wh.query_df(
        f"select distinct user_id from ({unions}) as candidate_users order by user_id",
        {"cutoff": cutoff},
    )["user_id"].tolist()
    users = shard_slice(every_user, shard)
    if not users:  # an empty table with every column, from a user range nothing falls in
        yield candidate_table(wh, cutoff, with_labels=with_labels, users=("1", "0"), sample=sample)
        return
    for start in range(0, len(users), max(1, users_per_chunk)):
        chunk = users[start : start + max(1, users_per_chunk)]
        yield candidate_table(
            wh,
            cutoff,
            with_labels=with_labels,
            users=(chunk[0], chunk[-1]),
            users_in=users_in,
            sample=sample,
        )


def _training_table(
    wh: Warehouse,
    cutoff: date,
    params: RankerParams,
    *,
    users_per_chunk: int,
    max_users: int | None,
) -> pa.Table:
    """:func:`training_rows` before the conversion to pandas, ordered by user_id, item_id."""
    table = pa.concat_tables(
        candidate_tables(
            # users without an event in the window have no positive: sampling drops them anyway
            wh,
            cutoff,
            with_labels=True,
            users_per_chunk=users_per_chunk,
            users_in=sample_of_users(labelled_users(wh), max_users),
            sample=params,
        ),
        promote_options="permissive",
    )
    return table.take(pc.sort_indices(table, [("user_id", "ascending"), ("item_id", "ascending")]))


def training_rows(
    wh: Warehouse,
    cutoff: date,
    params: RankerParams,
    *,
    users_per_chunk: int,
    max_users: int | None = None,
) -> pd.DataFrame:
    """The sampled, labelled training rows at ``cutoff`` (:func:`sample_training_rows`, per
    user, drawn in the warehouse), gathered chunk by chunk; of at most ``max_users`` labelled
    users (:func:`sample_of_users`); ordered by user_id, item_id."""
    return _to_frame(
        _training_table(wh, cutoff, params, users_per_chunk=users_per_chunk, max_users=max_users)
    )


def stacked_training_rows(
    wh: Warehouse,
    cutoffs: list[date],
    params: RankerParams,
    *,
    users_per_chunk: int,
    max_users: int | None = None,
) -> pd.DataFrame:
    """:func:`training_rows` of several cutoffs (at most ``max_users`` users each), stacked. One
    ranking query per (cutoff, user): ``query_id`` = 'cutoff|user_id'; rows ordered by
    query_id, item_id (deterministic). Chunks and cutoffs are joined and ordered in Arrow and
    converted to pandas once: concatenating the wide pandas frames and sorting them took ~4 s
    of the 1M training stage."""
    parts = []
    for cutoff in sorted(cutoffs):
        table = _training_table(
            wh, cutoff, params, users_per_chunk=users_per_chunk, max_users=max_users
        )
        user_ids = pc.cast(table["user_id"], pa.string())
        query_id = pc.binary_join_element_wise(f"{cutoff:%Y-%m-%d}|", user_ids, "")
        parts.append(table.add_column(0, "query_id", query_id))
    # each part is sorted by user_id, item_id and the parts by date, so the rows are in
    # query_id, item_id order already
    return _to_frame(pa.concat_tables(parts, promote_options="permissive"))


def _query(frame: pd.DataFrame) -> pd.Series:
    """The ranking query of each row: ``query_id`` when stacked, else the user."""
    return frame["query_id"] if "query_id" in frame.columns else frame["user_id"]


def rank_in_chunks(
    wh: Warehouse,
    cutoff: date,
    booster: lgb.Booster,
    features: list[str],
    k: int,
    *,
    users_per_chunk: int,
    shard: tuple[int, int] = (0, 1),
    users_in: str | None = None,
    discovery_slots: int = 0,
) -> pd.DataFrame:
    """:func:`rank_candidates` over every user with candidates at ``cutoff`` (of ``shard``
    only, and of ``users_in`` only: see :func:`candidate_tables`), chunk by chunk. The features
    go from Arrow to LightGBM's array directly (:func:`table_feature_matrix`) when they can."""
    keys = ["user_id", "item_id", "sources"] + ([NEVER_BOUGHT] if discovery_slots else [])
    ranked = []
    for table in candidate_tables(
        wh,
        cutoff,
        with_labels=False,
        users_per_chunk=users_per_chunk,
        shard=shard,
        users_in=users_in,
    ):
        matrix = table_feature_matrix(table, features)
        if matrix is None:
            frame = _to_frame(table)
        else:
            frame = table.select([key for key in keys if key in table.column_names]).to_pandas()
        ranked.append(rank_candidates(frame, booster, features, k, discovery_slots, matrix=matrix))
    return pd.concat(ranked, ignore_index=True)


def table_feature_matrix(table: pa.Table, features: list[str]) -> np.ndarray | None:
    """``feature_matrix(_to_frame(table), features)`` made from the Arrow columns directly,
    each rounded into its place: the same float64 values without the pandas copy and the
    rounded copy of every column. None when a feature is not an Arrow int32, int64 or
    float64 (the pandas path converts those)."""
    missing = [name for name in features if name not in table.column_names]
    if missing:
        raise ValueError(f"candidate frame lacks model features: {', '.join(missing[:5])}")
    types = [table.schema.field(name).type for name in features]
    plain = (pa.int32(), pa.int64(), pa.float64())  # the ones feature_matrix makes float64
    if not all(kind in plain for kind in types):
        return None
    matrix = np.empty((table.num_rows, len(features)), dtype=np.float64, order="F")
    for position, (name, kind) in enumerate(zip(features, types, strict=True)):
        column = table[name]
        if kind != pa.float64():  # an int: pandas makes it float64 when nulls, and never rounds
            matrix[:, position] = column.cast(pa.float64()).to_numpy()
        else:
            np.round(column.to_numpy(), FEATURE_DECIMALS, out=matrix[:, position])
    return matrix


def feature_columns(frame: pd.DataFrame) -> list[str]:
    return [c for c in frame.columns if c not in NON_FEATURES]


def _stable_fraction(values: pd.Series, salt: str) -> np.ndarray:
    """A deterministic pseudo-random number in [0, 1) per value, independent of row order."""
    hashed = pd.util.hash_pandas_object(values.astype(str) + salt, index=False).to_numpy()
    return (hashed % np.uint64(1_000_000)).astype(np.float64) / 1_000_000


def sample_training_rows(frame: pd.DataFrame, params: RankerParams) -> pd.DataFrame:
    """Keep queries (users, or (cutoff, user) when stacked) with a positive; all their
    positives and at most N random negatives: those first by the MD5 of :func:`_draw_key`, then
    by item, the draw :func:`candidate_frame` makes in the warehouse (independent of row order).
    Selects by position and copies only the kept rows: a chunk of 2,500 users is ~700 MB at 10M
    events, and whole-frame copies tripled it."""
    query = _query(frame).to_numpy()
    label = frame["label"].to_numpy()
    in_positive = pd.Series(query).isin(pd.unique(query[label > 0])).to_numpy()
    negative = np.flatnonzero(in_positive & (label == 0))
    codes = pd.factorize(query[negative], sort=True)[0]
    over_cap = np.bincount(codes)[codes] > params.max_negatives_per_user
    keep = negative[~over_cap]  # no draw needed: every negative of such a query is kept
    negative = negative[over_cap]
    codes = pd.factorize(query[negative], sort=True)[0]
    users = frame["user_id"].to_numpy()[negative]
    items = frame["item_id"].to_numpy()[negative]
    draw = np.array(
        [
            hashlib.md5(_draw_key(user, item, params.seed).encode()).hexdigest()
            for user, item in zip(users, items, strict=True)
        ],
        dtype="U32",
    )
    item_order = pd.factorize(items, sort=True)[0]
    order = np.lexsort((item_order, draw, codes))  # by query, then draw, then item
    grouped = codes[order]
    starts = np.flatnonzero(np.r_[True, grouped[1:] != grouped[:-1]])
    rank_in_query = np.arange(len(order)) - np.repeat(starts, np.diff(np.r_[starts, len(order)]))
    chosen = negative[order[rank_in_query < params.max_negatives_per_user]]
    rows = np.concatenate([np.flatnonzero(in_positive & (label > 0)), keep, chosen])
    if len(rows) == len(frame) and _in_query_item_order(query, frame["item_id"].to_numpy()):
        # drawn in the warehouse already (training_rows): every row kept, in order; copying
        # the wide frame twice more took ~2 s at 1M events
        return frame.reset_index(drop=True)  # copy-on-write: no data copied
    sampled = frame.iloc[rows].assign(_query=query[rows])
    sampled = sampled.sort_values(["_query", "item_id"]).reset_index(drop=True)
    return sampled.drop(columns=["_query"])


def _in_query_item_order(query: np.ndarray, item: np.ndarray) -> bool:
    """Whether the rows are sorted by query, then item (both strings)."""
    if len(query) < 2:
        return True
    same = query[1:] == query[:-1]
    return bool(np.all((query[1:] > query[:-1]) | (same & (item[1:] >= item[:-1]))))


def train(frame: pd.DataFrame, params: RankerParams) -> TrainedRanker:
    """Fit lambdarank on the labelled candidates, early stopping on a held-out share of users."""
    rows = sample_training_rows(frame, params)
    if rows.empty:
        raise ValueError("no training user has a positive label among the candidates")
    features = feature_columns(rows)
    users = pd.Series(rows["user_id"].unique())
    is_valid_user = _stable_fraction(users, "valid") < params.validation_user_share
    valid_users = set(users[is_valid_user])
    if not valid_users or len(valid_users) == len(users):
        valid_users = set(users.iloc[: max(1, len(users) // 5)])
    in_valid = rows["user_id"].isin(valid_users)
    train_rows, valid_rows = rows[~in_valid], rows[in_valid]

    def dataset(part: pd.DataFrame, reference: lgb.Dataset | None = None) -> lgb.Dataset:
        groups = part.groupby(_query(part), sort=False).size().to_numpy()
        return lgb.Dataset(
            part[features],
            label=part["label"],
            group=groups,
            reference=reference,
            free_raw_data=False,
        )

    train_set = dataset(train_rows)
    valid_set = dataset(valid_rows, train_set)
    booster = lgb.train(
        params.lgbm_params(),
        train_set,
        num_boost_round=params.n_estimators,
        valid_sets=[valid_set],
        valid_names=["valid_users"],
        callbacks=[lgb.early_stopping(params.early_stopping_rounds, verbose=False)],
    )
    best = booster.best_iteration or booster.current_iteration()
    gains = booster.feature_importance(importance_type="gain", iteration=best)
    total = float(gains.sum()) or 1.0
    importance = {f: round(float(g) / total, 6) for f, g in zip(features, gains, strict=True)}
    score = booster.best_score.get("valid_users", {}).get(f"ndcg@{params.eval_at}", float("nan"))
    return TrainedRanker(
        booster,
        features,
        best,
        len(users),
        len(rows),
        int(_query(rows).nunique()),
        float(score),
        dict(sorted(importance.items(), key=lambda kv: -kv[1])),
    )


def save(ranker: TrainedRanker, directory: Path, version: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{version}.txt"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(ranker.model_text)
    tmp.replace(path)  # atomic: a reader never sees half a model
    (directory / f"{version}.features.json").write_text(json.dumps(ranker.features))
    return path


def load(path: Path) -> tuple[lgb.Booster, list[str]]:
    """Load a saved model; a missing or corrupt artifact raises a clear error."""
    if not path.exists():
        raise FileNotFoundError(f"model artifact {path} is missing")
    text = path.read_text()
    # LightGBM's parser can crash the process (SIGSEGV) on a truncated model, so check first:
    # versions end with the hash of the model text, and every complete model has its trailer.
    named_hash = re.search(r"-([0-9a-f]{12})$", path.stem)
    if named_hash and hashlib.sha256(text.encode()).hexdigest()[:12] != named_hash.group(1):
        raise ValueError(f"model artifact {path} is corrupt: content does not match its hash")
    if "end of trees" not in text:
        raise ValueError(f"model artifact {path} is corrupt: truncated (no 'end of trees')")
    try:
        booster = lgb.Booster(model_str=text)
    except lgb.basic.LightGBMError as err:
        raise ValueError(f"model artifact {path} is corrupt: {err}") from err
    return booster, booster.feature_name()


def feature_matrix(frame: pd.DataFrame, features: list[str]) -> np.ndarray | pd.DataFrame:
    """``frame[features]`` as the array LightGBM makes of a DataFrame (the same values: the
    common type of the columns and float32), filled column by column in column-major order,
    which LightGBM reads without another copy. pandas' own conversion interleaves blocks of
    mixed dtypes row by row: 3.9 s of the 1M scoring stage's 20.8 s. Columns of any other than
    a plain numpy dtype (categorical, nullable) go through LightGBM's own conversion."""
    dtypes = [frame[name].dtype for name in features]
    if not all(isinstance(dtype, np.dtype) and dtype.kind in "biuf" for dtype in dtypes):
        return frame[features]
    matrix = np.empty(
        (len(frame), len(features)),
        dtype=np.result_type(*[dtype.type for dtype in dtypes], np.float32),
        order="F",
    )
    for position, name in enumerate(features):
        matrix[:, position] = frame[name].to_numpy()
    return matrix


def rank_candidates(
    frame: pd.DataFrame,
    booster: lgb.Booster,
    features: list[str],
    k: int,
    discovery_slots: int = 0,
    *,
    matrix: np.ndarray | None = None,
) -> pd.DataFrame:
    """Score candidates and keep the top ``k`` per user: score desc, then item_id (ties).
    ``matrix``: the rows' :func:`feature_matrix` when the caller made it (then ``frame`` needs
    only user_id, item_id, sources and, with discovery slots, ``NEVER_BOUGHT``).

    With ``discovery_slots``, a user's ``min(discovery_slots, k)`` best-scored candidates among
    the items they never bought (``NEVER_BOUGHT``) are kept even when the ranker scored them
    below its top ``k``; they take the places of the lowest-scored others, and the list stays
    in score order (so they sit at its end). A user with fewer such candidates keeps those."""
    missing = [f for f in features if f not in frame.columns] if matrix is None else []
    if discovery_slots and NEVER_BOUGHT not in frame.columns:
        missing.append(NEVER_BOUGHT)
    if missing:
        raise ValueError(f"candidate frame lacks model features: {', '.join(missing[:5])}")
    scored = frame[["user_id", "item_id", "sources"]].copy()
    # every core: each row is scored on its own, so the thread count does not change a score
    if matrix is None:
        matrix = feature_matrix(frame, features)
    scored["score"] = booster.predict(matrix, num_threads=0) if len(frame) else []
    order = ["user_id", "score", "item_id"]
    descending = [True, False, True]
    if discovery_slots:
        scored["never_bought"] = frame[NEVER_BOUGHT].fillna(0).to_numpy() <= 0
        scored = scored.sort_values(order, ascending=descending)
        nth_new = scored.groupby(["user_id", "never_bought"], sort=False).cumcount() + 1
        reserved = scored["never_bought"] & (nth_new <= min(discovery_slots, k))
        scored["kept_first"] = ~reserved  # False sorts first: the reserved ones are kept
        scored = scored.sort_values(
            ["user_id", "kept_first", "score", "item_id"], ascending=[True, True, False, True]
        )
        scored = scored[scored.groupby("user_id", sort=False).cumcount() < k]
        scored = scored.drop(columns=["never_bought", "kept_first"])
    scored = scored.sort_values(order, ascending=descending)
    scored["rank"] = scored.groupby("user_id", sort=False).cumcount() + 1
    return scored[scored["rank"] <= k].reset_index(drop=True)
