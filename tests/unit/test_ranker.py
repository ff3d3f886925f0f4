"""The ranker learns from its features, is deterministic, and ranks with stable tie-breaks."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from recpipe import ranker


def labelled_candidates(seed: int = 0, users: int = 120, per_user: int = 30) -> pd.DataFrame:
    """Candidates whose label depends on one informative feature plus noise."""
    rng = np.random.default_rng(seed)
    rows = users * per_user
    frame = pd.DataFrame(
        {
            "user_id": np.repeat([f"u{i:04d}" for i in range(users)], per_user),
            "item_id": np.tile([f"i{j:03d}" for j in range(per_user)], users),
            "signal": rng.normal(size=rows),
            "noise": rng.normal(size=rows),
            "sources": "popularity",
        }
    )
    frame["label"] = np.where(frame["signal"] > 1.2, 3, np.where(frame["signal"] > 0.8, 1, 0))
    return frame


def test_training_is_deterministic_and_uses_the_informative_feature():
    params = ranker.RankerParams(n_estimators=60, early_stopping_rounds=20, num_threads=1)
    first = ranker.train(labelled_candidates(), params)
    second = ranker.train(labelled_candidates(), params)
    assert first.model_text == second.model_text
    assert first.features == ["signal", "noise"]
    assert first.importance["signal"] > 0.8
    assert first.early_stopping_ndcg > 0.9


def test_scores_do_not_depend_on_the_thread_count():
    """rank_candidates predicts on every core: each row is scored alone, so 1 or 2 threads
    give the same scores to the last bit."""
    trained = ranker.train(labelled_candidates(), ranker.RankerParams(n_estimators=30))
    frame = labelled_candidates(seed=5, users=400)[trained.features]
    one = trained.booster.predict(frame, num_threads=1)
    np.testing.assert_array_equal(one, trained.booster.predict(frame, num_threads=2))


def test_the_feature_matrix_scores_exactly_as_the_dataframe_does():
    """rank_candidates hands LightGBM a column-major array built column by column: the same
    values as LightGBM's own DataFrame conversion (ints, bools, float32 and NaN among float64),
    so the same scores to the last bit; other dtypes go through LightGBM's conversion."""
    frame = labelled_candidates()
    rng = np.random.default_rng(1)
    frame["count"] = rng.integers(0, 50, len(frame))
    frame["flag"] = frame["count"] > 25
    frame["ratio"] = rng.normal(size=len(frame)).astype(np.float32)
    frame.loc[frame.index[::7], "noise"] = np.nan
    trained = ranker.train(frame, ranker.RankerParams(n_estimators=40, num_threads=1))
    assert set(trained.features) == {"signal", "noise", "count", "flag", "ratio"}

    matrix = ranker.feature_matrix(frame, trained.features)
    assert matrix.flags["F_CONTIGUOUS"] and matrix.dtype == np.float64
    np.testing.assert_array_equal(matrix, frame[trained.features].to_numpy(dtype=np.float64))
    assert np.array_equal(
        trained.booster.predict(matrix), trained.booster.predict(frame[trained.features])
    )
    nullable = frame.astype({"count": "Int64"})
    assert isinstance(ranker.feature_matrix(nullable, trained.features), pd.DataFrame)


def test_negative_sampling_keeps_positives_and_caps_negatives():
    frame = labelled_candidates()
    sampled = ranker.sample_training_rows(frame, ranker.RankerParams(max_negatives_per_user=5))
    positives = frame[frame["label"] > 0]
    assert len(sampled[sampled["label"] > 0]) == len(positives)
    assert sampled[sampled["label"] == 0].groupby("user_id").size().max() <= 5
    assert set(sampled["user_id"]) == set(positives["user_id"])
    again = ranker.sample_training_rows(
        frame.sample(frac=1, random_state=3), ranker.RankerParams(max_negatives_per_user=5)
    )
    pd.testing.assert_frame_equal(sampled, again)  # independent of row order
    # a sample is its own sample (train() samples what training_rows drew in the warehouse)
    params = ranker.RankerParams(max_negatives_per_user=5)
    pd.testing.assert_frame_equal(ranker.sample_training_rows(sampled, params), sampled)
    shuffled = sampled.sample(frac=1, random_state=4)  # every row kept, out of order
    pd.testing.assert_frame_equal(ranker.sample_training_rows(shuffled, params), sampled)


def test_stacked_cutoffs_make_one_query_per_cutoff_and_user():
    """The same users at two cutoffs: two ranking queries each, sampled per query."""
    early, late = labelled_candidates(seed=1), labelled_candidates(seed=2)
    late.loc[late["user_id"] == "u0000", "label"] = 0  # u0000 has a positive only early
    stacked = pd.concat(
        [frame.assign(query_id=f"{day}|" + frame["user_id"]) for day, frame in
         (("2026-09-01", early), ("2026-09-08", late))]
    ).sort_values(["query_id", "item_id"])  # fmt: skip
    params = ranker.RankerParams(max_negatives_per_user=5, n_estimators=30, num_threads=1)
    sampled = ranker.sample_training_rows(stacked, params)
    per_query = sampled.groupby("query_id").size()
    assert "2026-09-01|u0000" in per_query.index and "2026-09-08|u0000" not in per_query.index
    assert sampled[sampled["label"] == 0].groupby("query_id").size().max() <= 5
    trained = ranker.train(stacked, params)
    assert "query_id" not in trained.features
    assert trained.train_queries == per_query.size > trained.train_users
    assert (
        trained.model_text
        == ranker.train(stacked.sample(frac=1, random_state=4), params).model_text
    )


def test_no_positive_label_is_a_clear_error():
    frame = labelled_candidates()
    frame["label"] = 0
    with pytest.raises(ValueError, match="no training user has a positive"):
        ranker.train(frame, ranker.RankerParams())


def test_rank_candidates_breaks_ties_by_item_id_and_keeps_k():
    class Constant:
        def predict(self, frame, num_threads=1):
            return np.zeros(len(frame))

    frame = pd.DataFrame(
        {
            "user_id": ["u1"] * 4 + ["u2"],
            "item_id": ["b", "a", "d", "c", "z"],
            "sources": "x",
            "f": 1.0,
        }
    )
    top = ranker.rank_candidates(frame, Constant(), ["f"], k=3)
    assert top[top.user_id == "u1"]["item_id"].tolist() == ["a", "b", "c"]
    assert top["rank"].tolist() == [1, 2, 3, 1]


class ScoreIsFeature:
    def predict(self, matrix, num_threads=1):
        return np.asarray(matrix)[:, 0]


def test_discovery_slots_keep_the_best_never_bought_items_at_the_end_of_the_list():
    bought = ranker.NEVER_BOUGHT
    frame = pd.DataFrame(
        {
            "user_id": ["u1"] * 6 + ["u2"] * 3 + ["u3"] * 3,
            "item_id": ["r1", "r2", "r3", "r4", "n1", "n2", "r5", "r6", "n3", "n4", "r7", "n5"],
            "sources": "x",
            "f": [0.9, 0.8, 0.7, 0.6, 0.2, 0.3, 0.9, 0.8, 0.1, 0.9, 0.5, 0.4],
            bought: [2, 1, 3, 1, 0, None, 1, 1, 0, 0, 1, 0],
        }
    )
    plain = ranker.rank_candidates(frame, ScoreIsFeature(), ["f"], k=3)
    top = ranker.rank_candidates(frame, ScoreIsFeature(), ["f"], k=3, discovery_slots=2)

    def items(ranked, user):
        return ranked[ranked.user_id == user]["item_id"].tolist()

    assert items(plain, "u1") == ["r1", "r2", "r3"]
    # the two best never-bought items (a missing count is none bought) replace the lowest-scored
    # bought ones and stay in score order
    assert items(top, "u1") == ["r1", "n2", "n1"]
    assert items(top, "u2") == ["r5", "r6", "n3"]  # only one never-bought candidate: one slot
    assert items(top, "u3") == items(plain, "u3") == ["n4", "r7", "n5"]  # already there
    assert (top.groupby("user_id")["score"].diff().dropna() <= 0).all()
    assert top["rank"].tolist() == [1, 2, 3] * 3
    # no more slots than the list has
    assert items(ranker.rank_candidates(frame, ScoreIsFeature(), ["f"], 1, 5), "u1") == ["n2"]
    with pytest.raises(ValueError, match=bought):
        ranker.rank_candidates(frame.drop(columns=bought), ScoreIsFeature(), ["f"], 3, 2)


def test_saved_model_round_trips_and_corrupt_artifacts_fail_clearly(tmp_path):
    trained = ranker.train(labelled_candidates(), ranker.RankerParams(n_estimators=20))
    path = ranker.save(trained, tmp_path, "lgbm-test")
    booster, features = ranker.load(path)
    assert features == trained.features
    path.write_text("garbage")
    with pytest.raises(ValueError, match="corrupt"):
        ranker.load(path)
    with pytest.raises(FileNotFoundError, match="missing"):
        ranker.load(tmp_path / "none.txt")


@pytest.mark.parametrize("count", [1, 2, 3, 4, 7, 12])
def test_user_shards_split_the_sorted_users_into_contiguous_near_equal_slices(count):
    users = [f"u{i:02d}" for i in range(10)]
    slices = [ranker.shard_slice(users, (index, count)) for index in range(count)]
    assert [u for part in slices for u in part] == users  # each user once, in order
    assert max(map(len, slices)) - min(map(len, slices)) <= 1  # 12 shards: two are empty
    with pytest.raises(ValueError, match=f"shard {count} of {count}"):
        ranker.shard_slice(users, (count, count))


def test_the_arrow_feature_matrix_is_the_pandas_one():
    """Scoring builds LightGBM's array from Arrow directly: nulls, ints, chunks and rounding
    come out as the pandas path makes them; a type it does not take falls back."""
    table = pa.Table.from_batches(
        [
            pa.record_batch(
                {
                    "user_id": ["u1", "u1"],
                    "x": pa.array([0.1234567891234, None], pa.float64()),
                    "n": pa.array([1, None], pa.int64()),
                    "m": pa.array([7, 8], pa.int32()),
                }
            ),
            pa.record_batch(
                {
                    "user_id": ["u2"],
                    "x": pa.array([2.0000000004], pa.float64()),
                    "n": pa.array([2**40], pa.int64()),
                    "m": pa.array([9], pa.int32()),
                }
            ),
        ]
    )
    features = ["x", "n", "m"]
    direct = ranker.table_feature_matrix(table, features)
    via_pandas = ranker.feature_matrix(ranker._to_frame(table), features)
    assert direct.dtype == via_pandas.dtype == np.float64 and direct.flags["F_CONTIGUOUS"]
    np.testing.assert_array_equal(direct, via_pandas)
    assert direct[0, 0] == 0.123456789 and np.isnan(direct[1, 1])
    as_decimal = table.set_column(1, "x", pa.array([1, 2, 3], pa.decimal128(10, 2)))
    assert ranker.table_feature_matrix(as_decimal, features) is None
    with pytest.raises(ValueError, match="lacks model features: y"):
        ranker.table_feature_matrix(table, ["x", "y"])
