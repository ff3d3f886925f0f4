"""Ranking in chunks of users changes nothing: the training rows and the ranked top K are the
same for any chunk size, so memory grows with the chunk, not with the shop."""

from __future__ import annotations

import hashlib
import math
from dataclasses import replace

import pandas as pd
import pytest

from recpipe import pipeline, ranker, validation
from recpipe.evaluation import EVAL_K, evaluate
from recpipe.warehouse import session

from .conftest import ODD_USERS, dbt_build, make_run

pytestmark = pytest.mark.slow


def test_chunks_of_users_change_neither_training_rows_nor_rankings(shop, prepared_shop):
    run = make_run(prepared_shop.as_of, "chunks")
    cutoffs = pipeline.run_cutoffs(run, shop)
    params = ranker.RankerParams(n_estimators=20)
    with session(shop) as wh:
        whole_train = ranker.candidate_frame(wh, cutoffs["train"], with_labels=True)
        expected_rows = ranker.sample_training_rows(whole_train, params)
        trained = ranker.train(expected_rows, params)
        serve = ranker.candidate_frame(wh, run.as_of_date, with_labels=False)
        expected_top = ranker.rank_candidates(serve, trained.booster, trained.features, 10)

        users = serve["user_id"].unique()
        assert set(ODD_USERS) <= set(users)  # unicode and quote-laden ids fall in some range
        chunks = list(
            ranker.candidate_tables(wh, run.as_of_date, with_labels=False, users_per_chunk=7)
        )
        assert len(chunks) == math.ceil(len(users) / 7)
        seen = [set(chunk["user_id"].to_pylist()) for chunk in chunks]
        assert sum(map(len, seen)) == len(users) and set().union(*seen) == set(users)

        for users_per_chunk in (7, 100, 10**6):
            rows = ranker.training_rows(
                wh, cutoffs["train"], params, users_per_chunk=users_per_chunk
            )
            pd.testing.assert_frame_equal(rows, expected_rows, check_dtype=False)
            top = ranker.rank_in_chunks(
                wh,
                run.as_of_date,
                trained.booster,
                trained.features,
                10,
                users_per_chunk=users_per_chunk,
            )
            pd.testing.assert_frame_equal(top, expected_top)


def test_evaluation_scores_only_the_window_users_and_measures_the_same(shop, prepared_shop):
    """The validation metrics rank only users with truth in the window (the only users with
    candidates at the valid cutoff); ranking everyone there gives the same figures."""
    run = make_run(prepared_shop.as_of, "eval-users")
    valid = pipeline.run_cutoffs(run, shop)["valid"]
    with session(shop) as wh:
        frame = ranker.candidate_frame(wh, valid, with_labels=True)
        trained = ranker.train(frame, ranker.RankerParams(n_estimators=20))
        metrics, _ = validation.evaluate_on_window(
            wh, trained.booster, trained.features, valid, shop, with_baselines=False
        )
        everyone = ranker.rank_in_chunks(
            wh, valid, trained.booster, trained.features, EVAL_K, users_per_chunk=10**6
        )
        truth = validation.window_truth(wh, valid)
    assert set(everyone["user_id"]) <= set(truth["user_id"])  # int_active_users at valid
    truth = truth[truth["user_id"].isin(everyone["user_id"])]
    expected = evaluate(everyone[everyone["user_id"].isin(truth["user_id"])], truth, EVAL_K)
    assert metrics["users"] == expected["users"] > 0
    for name in ("ndcg", "recall", "map", "hit_rate"):
        assert metrics[f"{name}@{EVAL_K}"] == pytest.approx(expected[f"{name}@{EVAL_K}"])


def test_a_cap_on_labelled_users_reads_the_same_sample_in_every_chunking(shop, prepared_shop):
    """At most RECPIPE_MAX_LABELLED_USERS users of a cutoff are trained on and validated on:
    the first by the MD5 of their id, whatever the chunks; baselines are measured on them too."""
    run = make_run(prepared_shop.as_of, "sample")
    cutoffs = pipeline.run_cutoffs(run, shop)
    params = ranker.RankerParams(n_estimators=20)
    with session(shop) as wh:
        everyone = ranker.training_rows(wh, cutoffs["train"], params, users_per_chunk=10**6)
        labelled = wh.query_df(ranker.labelled_users(wh), {"cutoff": cutoffs["train"]})[
            "user_id"
        ].unique()
        by_md5 = sorted(labelled, key=lambda u: (hashlib.md5(u.encode()).hexdigest(), u))
        expected = set(by_md5[:9]) & set(everyone["user_id"])  # sampling keeps users with a buy
        assert 0 < len(expected) < everyone["user_id"].nunique()
        for users_per_chunk in (2, 10**6):
            rows = ranker.training_rows(
                wh, cutoffs["train"], params, users_per_chunk=users_per_chunk, max_users=9
            )
            assert set(rows["user_id"]) == expected
            pd.testing.assert_frame_equal(
                rows, everyone[everyone["user_id"].isin(expected)].reset_index(drop=True)
            )

        trained = ranker.train(everyone, params)
        capped = replace(shop, max_labelled_users=6)
        metrics, baselines = validation.evaluate_on_window(
            wh, trained.booster, trained.features, cutoffs["valid"], capped
        )
        assert 0 < metrics["users"] <= 6
        assert {b["users"] for b in baselines.values()} == {metrics["users"]}


def _users_at(wh, sql: str, cutoff) -> set[str]:
    return set(wh.query_df(sql, {"cutoff": cutoff})["user_id"])


def _assert_candidates_only_for_the_read_users(settings, cutoffs) -> None:
    """int_active_users (the users every candidate source serves) at each cutoff: every active
    user at D; at a labelled cutoff only the active users of the sample that training (train)
    or validation (valid) reads."""
    limit = settings.max_labelled_users
    with session(settings) as wh:
        active_sql = (
            f"select distinct user_id from {wh.table('staging', 'stg_shop__events')} "
            "where event_ts < @cutoff "
            f"and event_ts >= @cutoff - interval {settings.active_days} day"
        )
        read = {
            "train": ranker.sample_of_users(ranker.labelled_users(wh), limit),
            "valid": validation.validation_users_sql(wh, limit),
        }
        served_sql = (
            f"select user_id from {wh.table('intermediate', 'int_active_users')} "
            "where as_of_date = @cutoff"
        )
        for role, cutoff in cutoffs.items():
            active = _users_at(wh, active_sql, cutoff)
            served = _users_at(wh, served_sql, cutoff)
            expected = active & _users_at(wh, read[role], cutoff) if role in read else active
            assert served == expected, role
            assert 0 < len(served) <= (limit if role in read else len(active)), role


def test_labelled_cutoffs_get_candidates_only_for_the_users_training_and_validation_read(
    shop, prepared_shop
):
    """dbt draws the same sample as recpipe.ranker.sample_of_users: with the default cap (more
    than the shop's users) and with a cap of 5 (the var dbt gets from the settings), with which
    every model downstream of int_active_users and its tests still build."""
    run = make_run(prepared_shop.as_of, "served-users")
    cutoffs = pipeline.run_cutoffs(run, shop)
    assert set(cutoffs) == {"serve", "valid", "train"}
    _assert_candidates_only_for_the_read_users(shop, cutoffs)

    capped = replace(shop, max_labelled_users=5)
    dbt_build(capped, prepared_shop.as_of, "--select", "int_active_users+")
    _assert_candidates_only_for_the_read_users(capped, cutoffs)
