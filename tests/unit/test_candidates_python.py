import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from recpipe.candidates_python import OUTPUT_COLUMNS, als_candidates, item_knn_candidates

ITEMS_A = [f"A{j}" for j in range(8)]
ITEMS_B = [f"B{j}" for j in range(8)]
USERS_A = [f"ua{u:02d}" for u in range(20)]
USERS_B = [f"ub{u:02d}" for u in range(20)]
ALL_ITEMS = ITEMS_A + ITEMS_B
HELD_OUT = {"ua00": "A0", "ub00": "B0"}  # each probe user never saw one in-cluster item

# two clusters: few factors, some regularisation (checked stable over 30 data seeds)
ALS_KW = {"factors": 4, "iterations": 10, "regularization": 0.5}
SOURCES = {
    "als": lambda *a, **kw: als_candidates(*a, **ALS_KW, **kw),
    "knn": lambda *a, **kw: item_knn_candidates(*a, neighbours=10, **kw),
}


def two_clusters(seed: int = 0) -> pd.DataFrame:
    """Users in cluster A interact with A* items, cluster B with B* items (plus noise weights)."""
    rng = np.random.default_rng(seed)
    rows = []
    for users, items in ((USERS_A, ITEMS_A), (USERS_B, ITEMS_B)):
        for u in users:
            for it in items:
                if u in HELD_OUT:  # probe users: the whole cluster except the held-out item
                    if it == HELD_OUT[u]:
                        continue
                elif rng.random() < 0.3:
                    continue
                rows.append((u, it, float(rng.choice([1.0, 3.0, 5.0]))))
    return pd.DataFrame(rows, columns=["user_id", "item_id", "weight"])


INTERACTIONS = two_clusters()


@pytest.fixture(params=sorted(SOURCES))
def source(request):
    return SOURCES[request.param]


def check_shape(out: pd.DataFrame, depth: int) -> None:
    assert list(out.columns) == OUTPUT_COLUMNS
    assert out["score"].dtype == np.float64
    assert out["rank"].dtype == np.int64
    assert not out.duplicated(["user_id", "item_id"]).any()
    for _, group in out.groupby("user_id"):
        assert len(group) <= depth
        assert group["rank"].tolist() == list(range(1, len(group) + 1))
        # score descending, item_id ascending on ties
        ordered = group.sort_values(["score", "item_id"], ascending=[False, True])
        assert ordered["item_id"].tolist() == group["item_id"].tolist()


def test_in_cluster_items_first_and_held_out_item_found(source):
    out = source(INTERACTIONS, list(HELD_OUT), ALL_ITEMS, depth=16)
    check_shape(out, 16)
    for user, held_out in HELD_OUT.items():
        recs = out[out["user_id"] == user].sort_values("rank")["item_id"].tolist()
        cluster = held_out[0]
        top = recs[: len(ITEMS_A)]
        assert all(item.startswith(cluster) for item in top), (user, recs)
        assert held_out in top, (user, recs)


def test_held_out_item_beats_other_cluster_when_history_excluded(source):
    # only items the probe user never interacted with: held-out in-cluster item must come first
    seen = set(INTERACTIONS.loc[INTERACTIONS["user_id"] == "ua00", "item_id"])
    unseen = [i for i in ALL_ITEMS if i not in seen]
    out = source(INTERACTIONS, ["ua00"], unseen, depth=3)
    assert out.sort_values("rank")["item_id"].iloc[0] == "A0"


def test_unavailable_items_never_returned_and_depth_respected(source):
    available = ITEMS_A[::2] + ITEMS_B[::2] + ["never-seen-item"]
    out = source(INTERACTIONS, USERS_A + USERS_B, available, depth=3)
    check_shape(out, 3)
    assert set(out["item_id"]) <= set(available) - {"never-seen-item"}
    assert out.groupby("user_id").size().max() == 3


def test_deterministic_and_row_order_independent(source):
    users = USERS_A[:5] + USERS_B[:5]
    first = source(INTERACTIONS, users, ALL_ITEMS, depth=10)
    second = source(INTERACTIONS, users, ALL_ITEMS, depth=10)
    shuffled = source(INTERACTIONS.sample(frac=1, random_state=7), users[::-1], ALL_ITEMS[::-1])
    pd.testing.assert_frame_equal(first, second)
    pd.testing.assert_frame_equal(first, shuffled[shuffled["rank"] <= 10].reset_index(drop=True))


def test_users_without_interactions_get_no_rows(source):
    out = source(INTERACTIONS, ["ua01", "nobody", "ghost"], ALL_ITEMS, depth=5)
    assert set(out["user_id"]) == {"ua01"}
    assert len(out) == 5


def test_empty_inputs(source):
    empty = INTERACTIONS.iloc[:0]
    for out in (
        source(empty, ["ua00"], ALL_ITEMS),
        source(INTERACTIONS, [], ALL_ITEMS),
        source(INTERACTIONS, ["ua00"], []),
    ):
        assert out.empty
        assert list(out.columns) == OUTPUT_COLUMNS
        assert out["score"].dtype == np.float64 and out["rank"].dtype == np.int64
        assert out["user_id"].dtype == INTERACTIONS["user_id"].dtype


def test_invalid_arguments(source):
    with pytest.raises(ValueError, match="depth"):
        source(INTERACTIONS, ["ua00"], ALL_ITEMS, depth=0)
    bad = INTERACTIONS.assign(weight=INTERACTIONS["weight"].where(INTERACTIONS.index != 0, 0.0))
    with pytest.raises(ValueError, match="weight"):
        source(bad, ["ua00"], ALL_ITEMS)
    with pytest.raises(ValueError, match="missing columns"):
        source(INTERACTIONS.drop(columns="weight"), ["ua00"], ALL_ITEMS)


def test_already_interacted_items_are_not_filtered(source):
    out = source(INTERACTIONS, ["ua01"], ALL_ITEMS, depth=16)
    seen = set(INTERACTIONS.loc[INTERACTIONS["user_id"] == "ua01", "item_id"])
    assert seen & set(out["item_id"]) == seen


def test_duplicate_rows_are_summed():
    doubled = pd.concat([INTERACTIONS, INTERACTIONS.assign(weight=INTERACTIONS["weight"])])
    summed = INTERACTIONS.assign(weight=2 * INTERACTIONS["weight"])
    for fn in SOURCES.values():
        pd.testing.assert_frame_equal(
            fn(doubled, USERS_A[:3], ALL_ITEMS, depth=5),
            fn(summed, USERS_A[:3], ALL_ITEMS, depth=5),
        )


def test_item_knn_matches_brute_force():
    rng = np.random.default_rng(3)
    n_users, n_items, neighbours = 30, 12, 4
    dense = np.where(rng.random((n_users, n_items)) < 0.4, rng.uniform(1, 5, (n_users, n_items)), 0)
    users = [f"u{u:02d}" for u in range(n_users)]
    items = [f"i{i:02d}" for i in range(n_items)]
    u_idx, i_idx = np.nonzero(dense)
    frame = pd.DataFrame(
        {
            "user_id": [users[u] for u in u_idx],
            "item_id": [items[i] for i in i_idx],
            "weight": dense[u_idx, i_idx],
        }
    )
    # all items must occur for the index positions to line up with `items`
    assert frame["item_id"].nunique() == n_items and frame["user_id"].nunique() == n_users

    h = np.log1p(dense)
    unit = h / np.linalg.norm(h, axis=0)
    sim = unit.T @ unit
    np.fill_diagonal(sim, 0.0)
    pruned = np.zeros_like(sim)
    for i in range(n_items):
        top = np.argsort(-sim[i], kind="stable")[:neighbours]
        pruned[i, top] = sim[i, top]
    expected_scores = h @ pruned

    out = item_knn_candidates(frame, users, items, depth=5, neighbours=neighbours)
    check_shape(out, 5)
    for u, user in enumerate(users):
        got = out[out["user_id"] == user]
        order = np.lexsort((np.arange(n_items), -expected_scores[u]))[:5]
        order = [j for j in order if expected_scores[u, j] > 0]
        assert got["item_id"].tolist() == [items[j] for j in order]
        np.testing.assert_allclose(got["score"], expected_scores[u, order], rtol=1e-5)


def test_item_knn_recent_items_are_the_seeds():
    recent = pd.DataFrame({"user_id": ["ua00", "ub00"], "item_id": ["B1", "A1"]})
    out = item_knn_candidates(
        INTERACTIONS, ["ua00", "ub00", "ua01"], ALL_ITEMS, recent_items=recent
    )
    # scored from the seed only: ua00 now gets B* items, ub00 A* items, ua01 (no seed) nothing
    assert set(out["user_id"]) == {"ua00", "ub00"}
    assert out.loc[out["user_id"] == "ua00", "item_id"].str.startswith("B").all()
    assert out.loc[out["user_id"] == "ub00", "item_id"].str.startswith("A").all()
    # the seed itself is not boosted by self-similarity
    assert "B1" not in set(out.loc[out["user_id"] == "ua00", "item_id"])


def test_topk_breaks_ties_by_item_order_across_the_cut_off():
    from recpipe.candidates_python import _topk

    scores = np.array([[1.0, 2.0, 2.0, 2.0, 0.0], [5.0, 4.0, 3.0, 2.0, 1.0], [0.0, 0.0, 0.0, 1, 0]])
    cols, vals = _topk(scores, 2, floor=-np.inf)
    assert cols.tolist() == [[1, 2], [0, 1], [3, 0]]
    assert vals.tolist() == [[2.0, 2.0], [5.0, 4.0], [1.0, 0.0]]
    cols, _ = _topk(scores, 9, floor=-np.inf)  # depth beyond the number of items
    assert cols[0].tolist() == [1, 2, 3, 0, 4]


def test_item_knn_identical_items_keep_neighbours_limit():
    # V, X and Y have identical columns: their cosine 1 ties with self-similarity, so implicit's
    # top-(neighbours + 1) may leave self out and the row must be trimmed to `neighbours`.
    from recpipe.candidates_python import _item_similarity

    frame = pd.DataFrame(
        {
            "user_id": ["u1"] * 3 + ["u2"] * 3 + ["u3", "u3"],
            "item_id": ["X", "Y", "V", "X", "Y", "V", "Z", "W"],
            "weight": [1.0, 1.0, 1.0, 2.0, 2.0, 2.0, 1.0, 1.0],
        }
    )
    weights = sp.csr_matrix(  # items in sorted order V, W, X, Y, Z
        np.log1p([[1.0, 0, 1, 1, 0], [2, 0, 2, 2, 0], [0, 1, 0, 0, 1]])
    )
    sim = _item_similarity(weights, 1)
    assert np.diff(sim.indptr).max() == 1
    assert sim.diagonal().sum() == 0
    # ties broken by item order: V's neighbour is X, X's and Y's is V
    assert sim[0].indices.tolist() == [2] and sim[2].indices.tolist() == [0]
    assert sim[3].indices.tolist() == [0]

    out = item_knn_candidates(frame, ["u1", "u2", "u3"], ["V", "W", "X", "Y", "Z"], neighbours=1)
    check_shape(out, 50)
    assert set(out["item_id"]) <= {"V", "W", "X", "Z"}  # Y is nobody's single neighbour


@pytest.mark.parametrize("seed", range(5))
def test_topk_matches_a_full_stable_sort_on_tie_heavy_scores(seed):
    """The partition and its exact tie repair pick what a full stable sort picks (score desc,
    column asc), cells at or below the floor aside."""
    from recpipe.candidates_python import _topk

    rng = np.random.default_rng(seed)
    scores = rng.integers(0, 4, size=(300, 40)).astype(np.float64)
    scores[rng.random(scores.shape) < 0.1] = -np.inf
    for depth in (1, 3, 10, 39, 40, 60):
        for floor in (-np.inf, 0.0, 1.0):
            cols, vals = _topk(scores, depth, floor)
            expected = np.argsort(-scores, axis=1, kind="stable")[:, : min(depth, 40)]
            wanted = np.take_along_axis(scores, expected, axis=1) > floor
            assert (vals > floor).tolist() == wanted.tolist()
            assert cols[wanted].tolist() == expected[wanted].tolist()


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_threads_change_no_score(name, monkeypatch):
    """ALS fits and every source scores its blocks of users on several threads; one thread and
    four give the same rows, bit for bit (blocks of 3 users, so there are many)."""
    import recpipe.candidates_python as module

    rng = np.random.default_rng(3)
    interactions = pd.DataFrame(
        {
            "user_id": [f"u{i:03d}" for i in rng.integers(0, 300, 6000)],
            "item_id": [f"i{i:03d}" for i in rng.integers(0, 200, 6000)],
            "weight": rng.choice([1.0, 3.0, 5.0], 6000),
        }
    )
    users, items = sorted(set(interactions["user_id"])), sorted(set(interactions["item_id"]))
    monkeypatch.setattr(module, "_BLOCK_CELLS", 3 * len(items))
    runs = []
    for workers in (1, 4):
        monkeypatch.setattr(module, "_workers", lambda workers=workers: workers)
        runs.append(SOURCES[name](interactions, users, items, depth=20))
    pd.testing.assert_frame_equal(runs[0], runs[1])
