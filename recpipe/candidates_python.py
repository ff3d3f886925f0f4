"""Candidate sources that a Python library computes better than SQL.

Both sources take the same inputs and return the same frame:

inputs
    interactions: one row per (user_id, item_id) with a positive float ``weight`` -- the caller's
        aggregation of the events *before* the as-of date (e.g. view=1, cart=3, purchase=5).
        Repeated (user_id, item_id) rows are summed. A weight that is not finite and > 0 raises
        ValueError.
    users: the users to produce candidates for (duplicates ignored). Users absent from the
        interactions get no rows: the cold-start path lives elsewhere.
    available_items: the items that may be returned (in stock, listed, ...). Items outside it
        are never returned; items in it that never occur in ``interactions`` cannot be scored by
        these collaborative sources and are not returned either.

output
    DataFrame with columns ``user_id`` and ``item_id`` (same dtypes as in ``interactions``),
    ``score`` (float64, higher is better; unitless and only comparable within one source and
    one run) and ``rank`` (int64, 1..n per user, contiguous, ordered by score descending then
    item_id ascending). At most ``depth`` rows per user, no duplicate (user_id, item_id), rows
    ordered by user_id then rank. Items the user already interacted with are *not* filtered:
    repurchase is a strong signal in e-commerce.

Determinism: identical inputs (in any row order) give identical outputs. Users and items are
indexed in sorted order, ties are broken by item_id, and BLAS runs on one thread (threadpoolctl)
so floating-point reductions are reproducible. Parallel work never splits a reduction: ALS
solves each user (item) on its own thread, and blocks of users are scored on their own threads
and joined in order.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

__all__ = ["als_candidates", "item_knn_candidates", "tifuknn_candidates"]

OUTPUT_COLUMNS = ["user_id", "item_id", "score", "rank"]

# Dense score blocks are scored this many cells at a time (64 MiB per float64 block; a few
# temporaries of that size per thread of _workers()).
_BLOCK_CELLS = 1 << 23


# --------------------------------------------------------------------------------------------
# Shared plumbing
# --------------------------------------------------------------------------------------------


class _Matrix:
    """Sorted user/item vocabularies and the summed user x item weight matrix (CSR, float64)."""

    def __init__(self, interactions: pd.DataFrame):
        missing = {"user_id", "item_id", "weight"} - set(interactions.columns)
        if missing:
            raise ValueError(f"interactions is missing columns {sorted(missing)}")
        weight = interactions["weight"].to_numpy(dtype=np.float64)
        if not (np.isfinite(weight) & (weight > 0)).all():
            raise ValueError("interactions.weight must be finite and > 0")
        if interactions["user_id"].isna().any() or interactions["item_id"].isna().any():
            raise ValueError("interactions.user_id / item_id must not be null")
        self.users = pd.Index(pd.unique(interactions["user_id"])).sort_values()
        self.items = pd.Index(pd.unique(interactions["item_id"])).sort_values()
        rows = self.users.get_indexer(interactions["user_id"])
        cols = self.items.get_indexer(interactions["item_id"])
        matrix = sp.csr_matrix(
            (weight, (rows, cols)), shape=(len(self.users), len(self.items)), dtype=np.float64
        )
        matrix.sum_duplicates()
        matrix.sort_indices()
        self.weights = matrix

    def user_rows(self, users: Sequence[str]) -> np.ndarray:
        """Sorted row positions of the requested users that have interactions."""
        pos = self.users.get_indexer(pd.unique(pd.Series(list(users), dtype=self.users.dtype)))
        return np.unique(pos[pos >= 0])

    def item_cols(self, available_items: Sequence[str]) -> np.ndarray:
        """Sorted column positions (= item_id order) of the available items that were seen."""
        avail = pd.Series(list(available_items), dtype=self.items.dtype)
        pos = self.items.get_indexer(pd.unique(avail))
        return np.unique(pos[pos >= 0])


def _empty(interactions: pd.DataFrame) -> pd.DataFrame:
    def dtype(col: str):
        return interactions[col].dtype if col in interactions.columns else "str"

    return pd.DataFrame(
        {
            "user_id": pd.Series([], dtype=dtype("user_id")),
            "item_id": pd.Series([], dtype=dtype("item_id")),
            "score": pd.Series([], dtype=np.float64),
            "rank": pd.Series([], dtype=np.int64),
        }
    )


def _check_depth(depth: int) -> None:
    if depth < 1:
        raise ValueError(f"depth must be >= 1, got {depth}")


def _topk(scores: np.ndarray, depth: int, floor: float) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the columns of the ``depth`` best scores: score descending, then column ascending.

    Returns (columns, scores), both of shape (rows, min(depth, n_cols)). Cells scored <= ``floor``
    are not wanted by the caller, so ties among them at the cut-off need no exact order.
    Uses argpartition; rows whose cut-off score is tied across the boundary get the tied cells
    of the lowest columns (:func:`_lowest_columns_at_cutoff`), so the tie-break stays exact.
    """
    n_rows, n_cols = scores.shape
    d = min(depth, n_cols)
    if np.isfinite(floor):
        # introselect is ~10x slower on rows of equal values (most items of a user score 0 in
        # the sparse sources); cells at or below the floor are never kept, so make them distinct
        scores = np.where(scores > floor, scores, floor - np.arange(1.0, n_cols + 1))
    if d == n_cols:
        cols = np.argsort(-scores, axis=1, kind="stable")
        return cols, np.take_along_axis(scores, cols, axis=1)
    cols = np.argpartition(scores, n_cols - d, axis=1)[:, n_cols - d :]
    vals = np.take_along_axis(scores, cols, axis=1)
    cutoff = vals.min(axis=1)
    tied = (cutoff > floor) & ((scores >= cutoff[:, None]).sum(axis=1) > d)
    if tied.any():
        tied_scores = scores[tied]
        cols[tied] = _lowest_columns_at_cutoff(tied_scores, cutoff[tied], d)
        vals[tied] = np.take_along_axis(tied_scores, cols[tied], axis=1)
    order = np.lexsort((cols, -vals), axis=1)
    return np.take_along_axis(cols, order, axis=1), np.take_along_axis(vals, order, axis=1)


def _lowest_columns_at_cutoff(scores: np.ndarray, cutoff: np.ndarray, d: int) -> np.ndarray:
    """Per row, the ``d`` columns scored above the row's ``cutoff`` (its d-th best score) and,
    to make up d, the lowest columns scored exactly ``cutoff``; ascending column order."""
    at = scores == cutoff[:, None]
    above = scores > cutoff[:, None]
    wanted = d - above.sum(axis=1)
    keep = above | (at & (np.cumsum(at, axis=1, dtype=np.int32) <= wanted[:, None]))
    return np.nonzero(keep)[1].reshape(len(scores), d)


def _workers() -> int:
    """Threads that score blocks at once: the cores this process may use, at most 4 (each holds
    a dense block of a few hundred MB). NumPy's partitions and sorts, SciPy's sparse products and
    BLAS release the GIL; blocks are independent and joined in order, so results do not depend
    on it."""
    return max(1, min(4, len(os.sched_getaffinity(0))))


def _rank_blocks(
    matrix: _Matrix,
    rows: np.ndarray,
    cols: np.ndarray,
    depth: int,
    score_block,
    floor: float = -np.inf,
    width: int = 0,
) -> pd.DataFrame:
    """Score users ``rows`` against items ``cols`` block by block and keep the top ``depth``.

    ``score_block(block_rows) -> ndarray (len(block_rows), len(cols))``, called from several
    threads at once (:func:`_workers`): it must only read shared state. Cells scored <= floor
    are dropped. ``width``: the widest dense matrix ``score_block`` makes per user, when wider
    than the items (TIFU-kNN's similarities to the neighbour pool); it sizes the blocks.
    """
    block = max(1, _BLOCK_CELLS // max(1, len(cols), width))

    def top_of(start: int) -> tuple[np.ndarray, ...]:
        block_rows = rows[start : start + block]
        top_cols, top_scores = _topk(score_block(block_rows), depth, floor)
        keep = top_scores > floor
        # keep is a prefix of each row (scores are sorted), so ranks stay contiguous
        ranks = np.broadcast_to(np.arange(1, top_cols.shape[1] + 1), top_cols.shape)
        return (
            np.broadcast_to(block_rows[:, None], top_cols.shape)[keep],
            cols[top_cols[keep]],
            top_scores[keep].astype(np.float64),
            ranks[keep],
        )

    with ThreadPoolExecutor(_workers()) as pool:
        parts = list(pool.map(top_of, range(0, len(rows), block)))
    if not parts:
        return pd.DataFrame(columns=OUTPUT_COLUMNS)
    user_pos, item_pos, score_out, rank_out = zip(*parts, strict=True)
    return pd.DataFrame(
        {
            "user_id": matrix.users.take(np.concatenate(user_pos)),
            "item_id": matrix.items.take(np.concatenate(item_pos)),
            "score": np.concatenate(score_out),
            "rank": np.concatenate(rank_out).astype(np.int64),
        }
    )


def _finish(result: pd.DataFrame, interactions: pd.DataFrame) -> pd.DataFrame:
    if result.empty:
        return _empty(interactions)
    return result.reset_index(drop=True)


# --------------------------------------------------------------------------------------------
# ALS
# --------------------------------------------------------------------------------------------


def als_candidates(
    interactions: pd.DataFrame,
    users: Sequence[str],
    available_items: Sequence[str],
    *,
    depth: int = 50,
    factors: int = 64,
    iterations: int = 15,
    regularization: float = 0.05,
    alpha: float = 10.0,
    seed: int = 42,
) -> pd.DataFrame:
    """Top-``depth`` items per user from implicit-feedback matrix factorisation (ALS).

    Fits ``implicit``'s CPU AlternatingLeastSquares (Hu, Koren & Volinsky 2008) on the user x
    item matrix of confidences ``c_ui = 1 + alpha * log1p(w_ui)`` where ``w_ui`` is the summed
    weight of the pair (the log damps heavy users/items; unobserved pairs have confidence 1 and
    preference 0 -- implicit treats the stored value as the full confidence ``c_ui``).
    ``score`` is the dot product of the user and item factors (predicted preference, roughly in
    [0, 1] but unbounded).

    Parameters: see the module docstring for interactions/users/available_items and the output.
    depth: maximum items per user (>= 1). factors, iterations, regularization: ALS
    hyper-parameters (regularization is implicit's lambda, not scaled by counts). alpha:
    confidence scale above. seed: random initialisation of the factors.
    """
    _check_depth(depth)
    if interactions.empty:
        return _empty(interactions)
    from implicit.cpu.als import AlternatingLeastSquares

    matrix = _Matrix(interactions)
    confidence = matrix.weights.copy()
    confidence.data = 1.0 + alpha * np.log1p(confidence.data)
    confidence = confidence.astype(np.float32)

    rows = matrix.user_rows(users)
    cols = matrix.item_cols(available_items)
    if len(rows) == 0 or len(cols) == 0:
        return _empty(interactions)

    with threadpool_limits(limits=1):
        model = AlternatingLeastSquares(
            factors=factors,
            regularization=regularization,
            alpha=1.0,  # confidence is built above
            dtype=np.float32,
            iterations=iterations,
            calculate_training_loss=False,
            # each user's (item's) least-squares solve is independent of the others: as many
            # threads as _workers() fit bit-identical factors to one (test_candidates_python)
            num_threads=_workers(),
            random_state=seed,
        )
        model.fit(confidence, show_progress=False)
        # Scored in float64: a float32 product's last bits depend on how many users are in the
        # block (BLAS kernels), and the same user must score alike in any block or user shard.
        item_factors = np.ascontiguousarray(model.item_factors[cols], dtype=np.float64)
        user_factors = model.user_factors.astype(np.float64)

        def score_block(block_rows: np.ndarray) -> np.ndarray:
            return user_factors[block_rows] @ item_factors.T

        result = _rank_blocks(matrix, rows, cols, depth, score_block)
    return _finish(result, interactions)


# --------------------------------------------------------------------------------------------
# Item kNN
# --------------------------------------------------------------------------------------------


def _item_similarity(weights: sp.csr_matrix, neighbours: int) -> sp.csr_matrix:
    """Item x item cosine similarity, top ``neighbours`` per item row, self-similarity removed."""
    from implicit.nearest_neighbours import ItemItemRecommender

    # Cosine = dot product of L2-normalised item columns; this is what implicit's
    # CosineRecommender does, but it hands a COO matrix to the kNN and warns about it.
    norms = np.sqrt(np.asarray(weights.multiply(weights).sum(axis=0)).ravel())
    normalised = sp.csr_matrix(weights @ sp.diags(1.0 / norms))
    # +1 because every item is its own nearest neighbour (cosine 1), which we then drop.
    model = ItemItemRecommender(K=neighbours + 1, num_threads=1)
    model.fit(normalised, show_progress=False)
    sim = sp.csr_matrix(model.similarity, dtype=np.float64)
    sim.setdiag(0.0)
    sim.eliminate_zeros()
    sim.sort_indices()
    # Rows can keep neighbours + 1 entries when another item ties with self at cosine 1: trim
    # them to the best ``neighbours`` (similarity desc, item asc).
    counts = np.diff(sim.indptr)
    if (counts > neighbours).any():
        sim = sim.tolil()
        for r in np.flatnonzero(counts > neighbours):
            idx, val = np.array(sim.rows[r]), np.array(sim.data[r])
            keep = np.sort(idx[np.lexsort((idx, -val))[:neighbours]])
            sim.rows[r] = list(keep)
            sim.data[r] = [val[idx == c][0] for c in keep]
        sim = sim.tocsr()
    return sim


def item_knn_candidates(
    interactions: pd.DataFrame,
    users: Sequence[str],
    available_items: Sequence[str],
    *,
    depth: int = 50,
    neighbours: int = 50,
    recent_items: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Top-``depth`` items per user by item-item cosine similarity to the user's history.

    Similarity: cosine between item columns of the user x item matrix of ``log1p(w_ui)``
    (implicit's CosineRecommender), keeping the ``neighbours`` most similar items per item and
    dropping self-similarity. Score of item j for user u: ``sum_i h_ui * sim(i, j)`` over the
    user's seed items i, with ``h_ui = log1p(w_ui)``. An item the user already has is still
    eligible, but only through its similarity to the user's *other* items (no automatic
    self-boost; the repeat-purchase source covers that). Items with score <= 0 are not returned,
    so a user may get fewer than ``depth`` rows.

    recent_items: optional (user_id, item_id[, weight]) seeds, e.g. each user's last N items;
        when given, the similarity is still learnt on all ``interactions`` but users are scored
        from these seeds only (weight defaults to 1; seed items unseen in ``interactions`` are
        ignored), and requested users without seeds get no rows.
    Other parameters and the output: see the module docstring. neighbours: >= 1.
    """
    _check_depth(depth)
    if neighbours < 1:
        raise ValueError(f"neighbours must be >= 1, got {neighbours}")
    if interactions.empty:
        return _empty(interactions)

    matrix = _Matrix(interactions)
    history = matrix.weights.copy()
    history.data = np.log1p(history.data)

    if recent_items is not None:
        missing = {"user_id", "item_id"} - set(recent_items.columns)
        if missing:
            raise ValueError(f"recent_items is missing columns {sorted(missing)}")
        seed_rows = matrix.users.get_indexer(recent_items["user_id"])
        seed_cols = matrix.items.get_indexer(recent_items["item_id"])
        seed_w = (
            np.log1p(recent_items["weight"].to_numpy(dtype=np.float64))
            if "weight" in recent_items.columns
            else np.full(len(recent_items), np.log1p(1.0))
        )
        ok = (seed_rows >= 0) & (seed_cols >= 0) & (seed_w > 0)
        seeds = sp.csr_matrix(
            (seed_w[ok], (seed_rows[ok], seed_cols[ok])), shape=history.shape, dtype=np.float64
        )
        seeds.sum_duplicates()
    else:
        seeds = history

    rows = matrix.user_rows(users)
    rows = rows[np.diff(seeds.indptr)[rows] > 0]
    cols = matrix.item_cols(available_items)
    if len(rows) == 0 or len(cols) == 0:
        return _empty(interactions)

    with threadpool_limits(limits=1):
        sim = _item_similarity(history, neighbours)[:, cols].tocsc()

        def score_block(block_rows: np.ndarray) -> np.ndarray:
            return (seeds[block_rows] @ sim).toarray()

        result = _rank_blocks(matrix, rows, cols, depth, score_block, floor=0.0)
    return _finish(result, interactions)


# --------------------------------------------------------------------------------------------
# TIFU-kNN: time-decayed personal item frequency, blended with the nearest users' (next basket)
# --------------------------------------------------------------------------------------------

BASKET_COLUMNS = ("user_id", "item_id", "basket_id", "basket_ts")


def _decayed_frequency(baskets: pd.DataFrame, decay: float) -> pd.DataFrame:
    """Per (user, item): sum over the user's baskets holding the item of ``decay ** age`` divided
    by the sum over all the user's baskets, age 0 = the latest basket (ties: basket_id)."""
    missing = set(BASKET_COLUMNS) - set(baskets.columns)
    if missing:
        raise ValueError(f"baskets is missing columns {sorted(missing)}")
    if baskets[["user_id", "item_id", "basket_id"]].isna().any().any():
        raise ValueError("baskets.user_id / item_id / basket_id must not be null")
    if not 0 < decay <= 1:
        raise ValueError(f"decay must be in (0, 1], got {decay}")
    # sorted first: the sums below add floats in row order, and a warehouse returns rows in any
    # order, so an unsorted input could change a score's last bits and flip a tie between runs
    distinct = (
        baskets[list(BASKET_COLUMNS)]
        .sort_values(list(BASKET_COLUMNS), kind="stable")
        .drop_duplicates(["user_id", "item_id", "basket_id"])
    )
    order = (
        distinct.groupby(["user_id", "basket_id"], sort=False)["basket_ts"]
        .min()
        .reset_index()
        .sort_values(["user_id", "basket_ts", "basket_id"], ascending=[True, False, False])
    )
    order["age"] = order.groupby("user_id", sort=False).cumcount()
    order["decayed"] = np.power(decay, order["age"].to_numpy(dtype=np.float64))
    total = order.groupby("user_id")["decayed"].sum().rename("total")
    rows = distinct.merge(order[["user_id", "basket_id", "decayed"]], on=["user_id", "basket_id"])
    frequency = rows.groupby(["user_id", "item_id"], as_index=False)["decayed"].sum()
    frequency = frequency.merge(total, left_on="user_id", right_index=True)
    return pd.DataFrame(
        {
            "user_id": frequency["user_id"],
            "item_id": frequency["item_id"],
            "weight": frequency["decayed"] / frequency["total"],
        }
    )


def _neighbour_pool(baskets: pd.DataFrame, users: pd.Index, size: int | None) -> np.ndarray:
    """Sorted positions in ``users`` of the ``size`` users with the most distinct baskets (ties:
    user_id); every user when ``size`` is None or not smaller than the users."""
    if size is None or size >= len(users):
        return np.arange(len(users))
    counts = baskets.drop_duplicates(["user_id", "basket_id"]).groupby("user_id").size()
    per_user = counts.reindex(users, fill_value=0).to_numpy()
    # users are in user_id order, so the stable sort breaks count ties by user_id
    return np.sort(np.argsort(-per_user, kind="stable")[:size])


def tifuknn_candidates(
    baskets: pd.DataFrame,
    users: Sequence[str],
    available_items: Sequence[str],
    *,
    depth: int = 50,
    decay: float = 0.8,
    alpha: float = 0.8,
    neighbours: int = 300,
    neighbour_pool: int | None = 10_000,
) -> pd.DataFrame:
    """Top-``depth`` items per user by TIFU-kNN (Hu et al., SIGIR 2020), the next-basket method.

    baskets: one row per (user_id, item_id, basket_id) bought before the cutoff, with the
        basket's ``basket_ts`` (its age order; duplicates ignored).
    Personal vector ``p_u``: for each item, ``sum decay ** age`` over the user's baskets that
    hold it, divided by ``sum decay ** age`` over all the user's baskets (age 0 = latest
    basket), so in [0, 1]. Neighbour vector ``n_u``: the mean ``p_v`` of the ``neighbours``
    users v most cosine-similar to ``p_u`` (the user excluded; ties by user_id). Score:
    ``alpha * p_u + (1 - alpha) * n_u``; ``alpha = 1`` is the personal part alone (no kNN).
    Items scored 0 are not returned. Other parameters and the output: see the module docstring.

    neighbour_pool: neighbours are searched among this many users only, those with the most
    baskets (ties by user_id), so the search grows with users x pool instead of users squared;
    None searches every user. A shop with fewer users is unaffected.
    """
    _check_depth(depth)
    if not 0 <= alpha <= 1:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    if neighbours < 1:
        raise ValueError(f"neighbours must be >= 1, got {neighbours}")
    if neighbour_pool is not None and neighbour_pool < 2:
        raise ValueError(f"neighbour_pool must be >= 2 or None, got {neighbour_pool}")
    if baskets.empty:
        return _empty(baskets)
    frequency = _decayed_frequency(baskets, decay)
    matrix = _Matrix(frequency)
    personal = matrix.weights
    rows = matrix.user_rows(users)
    cols = matrix.item_cols(available_items)
    if len(rows) == 0 or len(cols) == 0:
        return _empty(baskets)
    n_users = personal.shape[0]
    pool = _neighbour_pool(baskets, matrix.users, neighbour_pool)
    k = min(neighbours, len(pool) - 1)
    personal_cols = personal[:, cols].tocsr()
    pool_cols = personal_cols[pool]
    norms = np.sqrt(np.asarray(personal.multiply(personal).sum(axis=1)).ravel())
    unit = sp.csr_matrix(sp.diags(1.0 / np.where(norms > 0, norms, 1.0)) @ personal)
    pool_unit_t = unit[pool].T.tocsr()
    in_pool = np.full(n_users, -1)
    in_pool[pool] = np.arange(len(pool))

    with threadpool_limits(limits=1):

        def score_block(block_rows: np.ndarray) -> np.ndarray:
            scores = alpha * personal_cols[block_rows].toarray()
            if alpha == 1 or k < 1:
                return scores
            similarity = (unit[block_rows] @ pool_unit_t).toarray()
            # cosines are >= 0; zeros (no shared item) are told apart by pool position, the
            # tie-break, so the partition does not meet long runs of equal values (see _topk)
            similarity = np.where(similarity > 0, similarity, -1.0 - np.arange(len(pool)))
            own = in_pool[block_rows]
            mine = own >= 0
            similarity[np.flatnonzero(mine), own[mine]] = -np.inf  # not one's own
            # best k per row: similarity desc, then user position asc (exact, deterministic)
            nearest, _ = _topk(similarity, k, -np.inf)
            pick = sp.csr_matrix(
                (
                    np.full(nearest.size, 1.0 / k),
                    (np.repeat(np.arange(len(block_rows)), k), nearest.ravel()),
                ),
                shape=(len(block_rows), len(pool)),
            )
            return scores + (1 - alpha) * (pick @ pool_cols).toarray()

        result = _rank_blocks(matrix, rows, cols, depth, score_block, floor=0.0, width=len(pool))
    return _finish(result, baskets)
