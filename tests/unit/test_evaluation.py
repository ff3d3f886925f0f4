import math

import numpy as np
import pandas as pd
import pytest

from recpipe.evaluation import (
    average_precision_at_k,
    candidate_recall,
    evaluate,
    hit_rate_at_k,
    ndcg_at_k,
    recall_at_k,
)

PER_USER = [recall_at_k, ndcg_at_k, average_precision_at_k, hit_rate_at_k]


def recs_frame(lists: dict[str, list[str]]) -> pd.DataFrame:
    rows = [(u, item, r) for u, items in lists.items() for r, item in enumerate(items, start=1)]
    return pd.DataFrame(rows, columns=["user_id", "item_id", "rank"])


def pairs_frame(sets: dict[str, list[str]]) -> pd.DataFrame:
    rows = [(u, item) for u, items in sets.items() for item in items]
    return pd.DataFrame(rows, columns=["user_id", "item_id"])


# ---------------------------------------------------------------------------- per-user metrics


@pytest.mark.parametrize("metric", PER_USER)
def test_perfect_ranking_scores_one(metric):
    assert metric(["a", "b", "c"], {"a", "b", "c"}, 3) == pytest.approx(1.0)
    assert metric(["a", "b", "x", "y"], {"a", "b"}, 4) == pytest.approx(1.0)


@pytest.mark.parametrize("metric", PER_USER)
def test_no_hits_scores_zero(metric):
    assert metric(["x", "y", "z"], {"a", "b"}, 3) == 0.0
    assert metric([], {"a"}, 5) == 0.0


@pytest.mark.parametrize("metric", PER_USER)
def test_only_top_k_counts(metric):
    assert metric(["x", "y", "a"], {"a"}, 2) == 0.0
    assert metric(["x", "y", "a"], {"a"}, 3) > 0.0


@pytest.mark.parametrize("metric", PER_USER)
def test_k_below_one_raises(metric):
    with pytest.raises(ValueError, match="k must be >= 1"):
        metric(["a"], {"a"}, 0)


@pytest.mark.parametrize("metric", PER_USER)
def test_duplicates_in_ranked_list_raise(metric):
    with pytest.raises(ValueError, match="duplicate"):
        metric(["a", "a", "b"], {"a", "b"}, 3)


@pytest.mark.parametrize("metric", PER_USER)
def test_empty_relevant_is_undefined(metric):
    assert math.isnan(metric(["a", "b"], set(), 2))


def test_hand_computed_ndcg_hits_at_ranks_1_and_3():
    ranked, relevant = ["a", "x", "b", "y"], {"a", "b"}
    expected = (1 + 1 / math.log2(4)) / (1 + 1 / math.log2(3))
    assert ndcg_at_k(ranked, relevant, 3) == pytest.approx(expected)
    assert ndcg_at_k(ranked, relevant, 10) == pytest.approx(expected)
    # only the first hit inside k=2, ideal DCG still over min(2, 2) positions
    assert ndcg_at_k(ranked, relevant, 2) == pytest.approx(1 / (1 + 1 / math.log2(3)))


def test_hand_computed_map_recall_hit_rate():
    ranked, relevant = ["a", "x", "b", "y"], {"a", "b", "c"}
    # precision@1 = 1, precision@3 = 2/3, normalised by min(k=4, |rel|=3) = 3
    assert average_precision_at_k(ranked, relevant, 4) == pytest.approx((1 + 2 / 3) / 3)
    # normalised by min(k=2, 3) = 2: only the hit at rank 1 counts
    assert average_precision_at_k(ranked, relevant, 2) == pytest.approx(1 / 2)
    assert recall_at_k(ranked, relevant, 4) == pytest.approx(2 / 3)
    assert hit_rate_at_k(ranked, relevant, 4) == 1.0


def test_recall_is_not_capped_by_k():
    # 4 relevant items, k = 2, both top slots hit: recall 2/4 while ndcg and map are perfect
    ranked, relevant = ["a", "b"], {"a", "b", "c", "d"}
    assert recall_at_k(ranked, relevant, 2) == pytest.approx(0.5)
    assert ndcg_at_k(ranked, relevant, 2) == pytest.approx(1.0)
    assert average_precision_at_k(ranked, relevant, 2) == pytest.approx(1.0)


def test_k_larger_than_list():
    ranked, relevant = ["a"], {"a", "b"}
    assert recall_at_k(ranked, relevant, 10) == pytest.approx(0.5)
    assert ndcg_at_k(ranked, relevant, 10) == pytest.approx(1 / (1 + 1 / math.log2(3)))
    assert average_precision_at_k(ranked, relevant, 10) == pytest.approx(1 / 2)
    assert hit_rate_at_k(ranked, relevant, 10) == 1.0


# ---------------------------------------------------------------------------- evaluate()

RECS = recs_frame(
    {
        "u1": ["a", "x", "b", "y"],  # hits at 1 and 3 of {a, b}
        "u2": ["x", "c", "y", "z"],  # hit at 2 of {c, d, e}
        "u3": ["x", "y", "z", "w"],  # no hit of {a}
        "u9": ["q", "r", "s", "t"],  # not in truth: only counts for coverage
    }
)
TRUTH = pairs_frame({"u1": ["a", "b"], "u2": ["c", "d", "e"], "u3": ["a"], "u4": ["a"]})
# u4 has truth but no recommendations: all-miss


def test_evaluate_hand_computed():
    out = evaluate(RECS, TRUTH, 3)
    ndcg = [
        (1 + 1 / math.log2(4)) / (1 + 1 / math.log2(3)),
        (1 / math.log2(3)) / (1 + 1 / math.log2(3) + 1 / math.log2(4)),
        0.0,
        0.0,
    ]
    recall = [1.0, 1 / 3, 0.0, 0.0]
    ap = [(1 + 2 / 3) / 2, (1 / 2) / 3, 0.0, 0.0]
    hit = [1.0, 1.0, 0.0, 0.0]
    assert set(out) == {"ndcg@3", "recall@3", "map@3", "hit_rate@3", "users"}
    assert out["users"] == 4
    assert out["ndcg@3"] == pytest.approx(np.mean(ndcg))
    assert out["recall@3"] == pytest.approx(np.mean(recall))
    assert out["map@3"] == pytest.approx(np.mean(ap))
    assert out["hit_rate@3"] == pytest.approx(np.mean(hit))


def test_evaluate_matches_per_user_functions_on_random_data():
    rng = np.random.default_rng(0)
    items = [f"i{j}" for j in range(30)]
    lists = {f"u{u}": list(rng.choice(items, 12, replace=False)) for u in range(40)}
    sets = {f"u{u}": list(rng.choice(items, rng.integers(1, 8), replace=False)) for u in range(50)}
    recs = recs_frame(lists).sample(frac=1, random_state=1)  # row order must not matter
    out = evaluate(recs, pairs_frame(sets), 10)
    for key, fn in [
        ("ndcg@10", ndcg_at_k),
        ("recall@10", recall_at_k),
        ("map@10", average_precision_at_k),
        ("hit_rate@10", hit_rate_at_k),
    ]:
        expected = np.mean([fn(lists.get(u, []), set(rel), 10) for u, rel in sets.items()])
        assert out[key] == pytest.approx(expected), key
    assert out["users"] == 50


def test_evaluate_uses_only_rank_up_to_k_and_ignores_duplicate_truth():
    recs = recs_frame({"u1": ["x", "a"]})
    truth = pairs_frame({"u1": ["a", "a"]})
    assert evaluate(recs, truth, 1)["recall@1"] == 0.0
    assert evaluate(recs, truth, 2)["recall@2"] == 1.0


def test_evaluate_rejects_duplicates_and_bad_k():
    dup_item = pd.DataFrame({"user_id": ["u1", "u1"], "item_id": ["a", "a"], "rank": [1, 2]})
    with pytest.raises(ValueError, match="duplicate"):
        evaluate(dup_item, TRUTH, 2)
    dup_rank = pd.DataFrame({"user_id": ["u1", "u1"], "item_id": ["a", "b"], "rank": [1, 1]})
    with pytest.raises(ValueError, match="duplicate"):
        evaluate(dup_rank, TRUTH, 2)
    # a duplicate beyond k is not used, so it is not an error
    assert evaluate(dup_item, TRUTH, 1)["users"] == 4
    with pytest.raises(ValueError, match="k must be >= 1"):
        evaluate(RECS, TRUTH, 0)
    with pytest.raises(ValueError, match="missing columns"):
        evaluate(RECS.drop(columns="rank"), TRUTH, 3)
    with pytest.raises(ValueError, match="null"):
        evaluate(RECS.assign(item_id=RECS["item_id"].where(RECS.index != 0)), TRUTH, 3)


def test_evaluate_empty_truth_is_nan():
    out = evaluate(RECS, TRUTH.iloc[:0], 3)
    assert out["users"] == 0
    assert math.isnan(out["ndcg@3"]) and math.isnan(out["recall@3"])


def test_coverage_counts_all_users_up_to_k():
    out = evaluate(RECS, TRUTH, 2, catalog_size=20)
    # rank <= 2 over all users (u9 included): a, x, c, y, q, r
    assert out["coverage@2"] == pytest.approx(6 / 20)
    assert "coverage@2" not in evaluate(RECS, TRUTH, 2)
    with pytest.raises(ValueError, match="catalog_size"):
        evaluate(RECS, TRUTH, 2, catalog_size=0)


def test_repeat_new_split():
    # u1 bought a before the window (repeat), b is new; u2: c, d, e all new; u3: a repeat
    repeat = pairs_frame({"u1": ["a", "z"], "u3": ["a"], "u9": ["c"]})
    out = evaluate(RECS, TRUTH, 3, repeat_items=repeat)
    # repeat truth: u1 {a} hit -> 1; u3 {a} miss -> 0
    assert out["recall_repeat@3"] == pytest.approx((1.0 + 0.0) / 2)
    # new truth: u1 {b} hit -> 1; u2 {c, d, e} 1 hit -> 1/3; u4 {a} -> 0
    assert out["recall_new@3"] == pytest.approx((1.0 + 1 / 3 + 0.0) / 3)


def test_repeat_split_without_repeat_users_is_nan():
    out = evaluate(RECS, TRUTH, 3, repeat_items=pairs_frame({"u9": ["q"]}))
    assert math.isnan(out["recall_repeat@3"])
    assert out["recall_new@3"] == pytest.approx(out["recall@3"])


def test_candidate_recall_any_depth():
    candidates = pd.concat(
        [
            pairs_frame({"u1": ["a", "x"], "u2": ["c", "d"], "u9": ["a"]}),
            pairs_frame({"u1": ["a"]}),  # duplicates from another source are fine
        ]
    )
    # u1 1/2, u2 2/3, u3 0/1, u4 0/1
    assert candidate_recall(candidates, TRUTH) == pytest.approx((1 / 2 + 2 / 3 + 0 + 0) / 4)
    assert math.isnan(candidate_recall(candidates, TRUTH.iloc[:0]))
