"""Offline ranking metrics for top-K recommendations.

All functions are pure: they read their arguments and return numbers, nothing else.

Conventions (shared by the per-user functions and by :func:`evaluate`):

* Relevance is binary: an item is relevant if it is in the user's held-out truth set.
* Positions are 1-based; position ``r`` has the log2 discount ``1 / log2(r + 1)``.
* ``recall@K = hits@K / |relevant|`` (standard recall: *not* capped by K, so a user with more
  relevant items than K cannot reach 1).
* ``ndcg@K = DCG@K / IDCG@K`` where IDCG puts ``min(K, |relevant|)`` hits at positions 1.. .
* ``map@K`` (average precision) ``= sum(precision@r for each hit position r <= K) /
  min(K, |relevant|)``.
* ``hit_rate@K = 1`` if at least one relevant item is in the top K, else ``0``.
* A user whose relevant set is empty has undefined metrics: the per-user functions return NaN
  and the aggregates skip the user (it cannot appear in ``truth`` anyway).
* A ranked list shorter than K is evaluated as it is: the missing positions are misses.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "average_precision_at_k",
    "candidate_recall",
    "evaluate",
    "hit_rate_at_k",
    "ndcg_at_k",
    "recall_at_k",
]

# the cut-off every run measures the ranker and its baselines at (NDCG@10, recall@10, ...)
EVAL_K = 10


# --------------------------------------------------------------------------------------------
# Per-user metrics
# --------------------------------------------------------------------------------------------


def _check_k(k: int) -> None:
    if isinstance(k, bool) or not isinstance(k, int | np.integer):
        raise TypeError(f"k must be an int, got {type(k).__name__}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")


def _hit_positions(ranked: Sequence[Any], relevant: Collection[Any], k: int) -> np.ndarray:
    """1-based positions (<= k) of the relevant items in ``ranked``."""
    _check_k(k)
    ranked = list(ranked)
    if len(set(ranked)) != len(ranked):
        raise ValueError("ranked list contains duplicate items")
    relevant = set(relevant)
    return np.array(
        [pos for pos, item in enumerate(ranked[:k], start=1) if item in relevant], dtype=np.int64
    )


def _ideal_dcg(n_hits: int) -> float:
    return float(np.sum(1.0 / np.log2(np.arange(2, n_hits + 2, dtype=np.float64))))


def recall_at_k(ranked: Sequence[Any], relevant: Collection[Any], k: int) -> float:
    """Recall@K = (relevant items in the top K of ``ranked``) / ``|relevant|``.

    Returns NaN when ``relevant`` is empty; raises ValueError for ``k < 1`` or a ranked list with
    duplicate items.
    """
    hits = _hit_positions(ranked, relevant, k)
    n_rel = len(set(relevant))
    return float("nan") if n_rel == 0 else len(hits) / n_rel


def ndcg_at_k(ranked: Sequence[Any], relevant: Collection[Any], k: int) -> float:
    """NDCG@K with binary relevance, log2 discount and ideal DCG over ``min(k, |relevant|)``.

    Returns NaN when ``relevant`` is empty; raises ValueError for ``k < 1`` or duplicates.
    """
    hits = _hit_positions(ranked, relevant, k)
    n_rel = len(set(relevant))
    if n_rel == 0:
        return float("nan")
    dcg = float(np.sum(1.0 / np.log2(hits + 1.0)))
    return dcg / _ideal_dcg(min(k, n_rel))


def average_precision_at_k(ranked: Sequence[Any], relevant: Collection[Any], k: int) -> float:
    """AP@K = sum of precision@r over hit positions r <= K, divided by ``min(k, |relevant|)``.

    The mean of this over users is MAP@K. Returns NaN when ``relevant`` is empty; raises
    ValueError for ``k < 1`` or duplicates.
    """
    hits = _hit_positions(ranked, relevant, k)
    n_rel = len(set(relevant))
    if n_rel == 0:
        return float("nan")
    precisions = np.arange(1, len(hits) + 1) / hits
    return float(np.sum(precisions)) / min(k, n_rel)


def hit_rate_at_k(ranked: Sequence[Any], relevant: Collection[Any], k: int) -> float:
    """1.0 if any relevant item is in the top K of ``ranked``, else 0.0 (NaN if no relevant)."""
    hits = _hit_positions(ranked, relevant, k)
    if len(set(relevant)) == 0:
        return float("nan")
    return 1.0 if len(hits) else 0.0


# --------------------------------------------------------------------------------------------
# Aggregates over users (vectorised: integer codes + numpy, no Python loop over rows or users)
# --------------------------------------------------------------------------------------------


def _require(df: pd.DataFrame, columns: Sequence[str], name: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{name} is missing columns {missing}; has {list(df.columns)}")


def _factorize(values: pd.Series) -> tuple[np.ndarray, pd.Index]:
    codes, uniques = pd.factorize(values)
    return codes, pd.Index(uniques)


def _lookup(codes: np.ndarray, uniques: pd.Index, index: pd.Index) -> np.ndarray:
    """Position in ``index`` of each factorized value (-1 when absent or missing).

    Looking up only the distinct values is several times faster than ``index.get_indexer`` on a
    column of millions of strings.
    """
    return np.append(index.get_indexer(uniques), -1)[codes]  # factorize codes NaN as -1


def _isin(values: np.ndarray, test: np.ndarray) -> np.ndarray:
    """Hash-based ``np.isin`` for int64 keys (np.isin sorts, which is slower here)."""
    return pd.Series(values, copy=False).isin(test).to_numpy()


def _has_duplicates(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether any (a, b) pair of non-negative int codes occurs twice."""
    if len(a) < 2:
        return False
    key = np.sort(a.astype(np.int64) * (int(b.max()) + 1) + b)
    return bool((key[1:] == key[:-1]).any())


class _Pairs:
    """(user, item) pairs encoded as int64 keys over a shared item vocabulary."""

    def __init__(self, truth: pd.DataFrame):
        _require(truth, ["user_id", "item_id"], "truth")
        if truth["user_id"].isna().any() or truth["item_id"].isna().any():
            raise ValueError("truth.user_id / item_id must not be null")
        t_user, self.users = _factorize(truth["user_id"])
        t_item, self.items = _factorize(truth["item_id"])
        self.n_items = len(self.items)
        key = t_user.astype(np.int64) * self.n_items + t_item
        unique = ~pd.Series(key, copy=False).duplicated().to_numpy()  # truth is a set
        self.t_user, self.t_item, self.t_key = (
            t_user[unique].astype(np.int64),
            t_item[unique],
            key[unique],
        )
        self.n_rel = np.bincount(self.t_user, minlength=len(self.users))

    def encode(
        self, frame: pd.DataFrame, factorized: tuple[np.ndarray, pd.Index, np.ndarray, pd.Index]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Codes of a (user_id, item_id) frame: returns (row mask kept, user code, key).

        ``factorized`` is (user codes, user uniques, item codes, item uniques) of ``frame``.
        Rows whose user or item does not occur in truth can never be a hit and are dropped.
        """
        u = _lookup(factorized[0], factorized[1], self.users)
        i = _lookup(factorized[2], factorized[3], self.items)
        keep = (u >= 0) & (i >= 0)
        u = u[keep].astype(np.int64)
        key = u * self.n_items + i[keep].astype(np.int64)
        return keep, u, key

    def encode_frame(self, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.encode(frame, (*_factorize(frame["user_id"]), *_factorize(frame["item_id"])))

    def subset(self, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Truth restricted to ``mask``: (sorted keys, relevant count per user)."""
        return np.sort(self.t_key[mask]), np.bincount(self.t_user[mask], minlength=len(self.users))


def _safe_mean(values: np.ndarray) -> float:
    return float(values.mean()) if len(values) else float("nan")


def _recall_mean(hit_user: np.ndarray, n_rel: np.ndarray) -> float:
    """Mean recall over users with ``n_rel > 0`` given the user code of every hit."""
    hits = np.bincount(hit_user, minlength=len(n_rel))
    has = n_rel > 0
    return _safe_mean(hits[has] / n_rel[has])


def evaluate(
    recommendations: pd.DataFrame,
    truth: pd.DataFrame,
    k: int,
    *,
    catalog_size: int | None = None,
    repeat_items: pd.DataFrame | None = None,
) -> dict[str, float]:
    """Mean top-K metrics of ``recommendations`` against held-out ``truth``.

    recommendations: columns user_id, item_id, rank (1 = best). Rows with rank > k are ignored.
        A (user_id, item_id) pair or a (user_id, rank) pair may occur only once among rank <= k
        (ValueError otherwise).
    truth: columns user_id, item_id -- the relevant items of each user in the held-out window
        (duplicate rows are collapsed). Only users in ``truth`` are evaluated; a user in truth with
        no recommendation scores 0 on every metric. Recommendations for users absent from truth
        only matter for coverage.
    k: cut-off, >= 1.
    catalog_size: number of recommendable items; when given, ``coverage@K`` = distinct items
        recommended at rank <= k (over *all* users in ``recommendations``) / catalog_size.
    repeat_items: (user_id, item_id) pairs the user interacted with *before* the window. When
        given, ``recall_repeat@K`` / ``recall_new@K`` are recall with truth restricted to repeat
        / non-repeat pairs, each averaged over users with at least one such relevant item (NaN
        when no user has one).

    Returns ``{"ndcg@K", "recall@K", "map@K", "hit_rate@K", "users"[, "coverage@K"]
    [, "recall_repeat@K", "recall_new@K"]}`` with K the actual k; ``users`` is the number of
    users evaluated (int). Metrics are NaN when truth is empty.
    """
    _check_k(k)
    _require(recommendations, ["user_id", "item_id", "rank"], "recommendations")
    pairs = _Pairs(truth)

    top = recommendations.loc[
        recommendations["rank"].to_numpy() <= k, ["user_id", "item_id", "rank"]
    ]
    if len(top) and top["rank"].min() < 1:
        raise ValueError("recommendations.rank must be >= 1")
    top_user, top_users = _factorize(top["user_id"])
    top_item, top_items = _factorize(top["item_id"])
    if (top_user < 0).any() or (top_item < 0).any():
        raise ValueError("recommendations.user_id / item_id must not be null")
    if _has_duplicates(top_user, top_item):
        raise ValueError("recommendations hold a duplicate (user_id, item_id) within rank <= k")
    if _has_duplicates(top_user, top["rank"].to_numpy().astype(np.int64)):
        raise ValueError("recommendations hold a duplicate (user_id, rank) within rank <= k")

    keep, rec_user, rec_key = pairs.encode(top, (top_user, top_users, top_item, top_items))
    rec_rank = top["rank"].to_numpy()[keep].astype(np.float64)
    is_hit = _isin(rec_key, pairs.t_key)
    hit_user, hit_rank = rec_user[is_hit], rec_rank[is_hit]

    n_users = len(pairs.users)
    n_rel = pairs.n_rel
    n_hits = np.bincount(hit_user, minlength=n_users)

    # NDCG: DCG per user / ideal DCG over min(k, |relevant|) positions.
    dcg = np.bincount(hit_user, weights=1.0 / np.log2(hit_rank + 1.0), minlength=n_users)
    ideal_cum = np.concatenate([[0.0], np.cumsum(1.0 / np.log2(np.arange(2, k + 2.0)))])
    idcg = ideal_cum[np.minimum(n_rel, k)]

    # AP: precision at each hit = (hits so far for that user) / rank.
    order = np.lexsort((hit_rank, hit_user))
    hu, hr = hit_user[order], hit_rank[order]
    first = np.ones(len(hu), dtype=bool)
    first[1:] = hu[1:] != hu[:-1]
    group_start = np.maximum.accumulate(np.where(first, np.arange(len(hu)), 0))
    hits_so_far = np.arange(len(hu)) - group_start + 1
    ap_sum = np.bincount(hu, weights=hits_so_far / hr, minlength=n_users)

    out: dict[str, float] = {
        # every truth user has n_rel >= 1, so no division by zero below
        f"ndcg@{k}": _safe_mean(dcg / idcg),
        f"recall@{k}": _safe_mean(n_hits / n_rel),
        f"map@{k}": _safe_mean(ap_sum / np.minimum(n_rel, k)),
        f"hit_rate@{k}": _safe_mean((n_hits > 0).astype(np.float64)),
        "users": n_users,
    }

    if catalog_size is not None:
        if catalog_size <= 0:
            raise ValueError(f"catalog_size must be > 0, got {catalog_size}")
        out[f"coverage@{k}"] = len(top_items) / catalog_size

    if repeat_items is not None:
        _require(repeat_items, ["user_id", "item_id"], "repeat_items")
        _, _, repeat_key = pairs.encode_frame(repeat_items)
        is_repeat = _isin(pairs.t_key, repeat_key)
        hit_key = rec_key[is_hit]
        for name, mask in (("repeat", is_repeat), ("new", ~is_repeat)):
            sub_key, sub_rel = pairs.subset(mask)
            sub_hit = _isin(hit_key, sub_key)
            out[f"recall_{name}@{k}"] = _recall_mean(hit_user[sub_hit], sub_rel)

    return out


def candidate_recall(candidates: pd.DataFrame, truth: pd.DataFrame) -> float:
    """Mean per-user recall of a candidate set, at any depth.

    candidates: columns user_id, item_id (duplicates allowed; e.g. the union of several sources).
    truth: columns user_id, item_id. For each user in truth, recall = truth pairs present in
    candidates / truth pairs; the result is the mean over truth users (NaN if truth is empty).
    """
    _require(candidates, ["user_id", "item_id"], "candidates")
    pairs = _Pairs(truth)
    _, _, cand_key = pairs.encode_frame(candidates)
    covered = _isin(pairs.t_key, cand_key)
    return _recall_mean(pairs.t_user[covered], pairs.n_rel)
