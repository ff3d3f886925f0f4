"""The candidate, training and evaluation stages on a real dbt build of a purchases-only log.

Grocery-style logs hold only purchases: every candidate source must still produce rows (or be
empty without breaking anything), every active user must get >= k candidates, recall must be
stored per source and for the union, the baselines must sit beside the ranker in the registry,
and champion/challenger must keep the better model serving, point in time.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from datetime import timedelta

import pandas as pd
import pytest

from recpipe import pipeline, sources
from recpipe.dbt_cli import run_dbt
from recpipe.ingest import ingest_events, ingest_items
from recpipe.settings import load_settings
from recpipe.warehouse import session
from tests.partitions import python_candidates

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def purchases_only(tmp_path_factory, tiny_shop):
    """The tiny shop with its views and carts dropped, built by dbt for its last date."""
    home = tmp_path_factory.mktemp("purchases_only")
    events = pd.read_csv(tiny_shop.files["events"])
    events = events[events["event_type"] == "purchase"]
    events_file = home / "events.csv"
    events.to_csv(events_file, index=False)
    as_of = tiny_shop.end_date + timedelta(days=1)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RECPIPE_HOME", str(home))
        settings = load_settings()
        with session(settings) as wh:
            ingest_items(wh, tiny_shop.files["items"])
            ingest_events(wh, events_file)
        run_dbt("build", settings, as_of=as_of, work_dir=home / "dbt")
        yield settings, as_of


def registry(settings) -> pd.DataFrame:
    with session(settings) as wh:
        return wh.query_df("select * from recpipe.model_registry order by trained_at")


def test_purchases_only_log_runs_every_model_stage(purchases_only):
    settings, as_of = purchases_only
    run = pipeline.Run(as_of=as_of.isoformat(), run_id="purchases-only", k=20, retrain="always")
    pipeline.start_run(run, settings)
    staged = pipeline.generate_python_candidates(run, settings)
    assert pipeline.merge_python_candidates(run, settings) == staged > 0
    pipeline.check_candidates(run, settings)  # coverage gate: every active user has >= k

    with session(settings) as wh:
        recall = wh.query_df(
            "select * from recpipe.candidate_recall where run_id = @r", {"r": run.run_id}
        )
        per_source = {
            source: wh.query_df(
                f"select count(*) as n from candidates.cand_{source} where as_of_date = @d",
                {"d": as_of},
            )["n"].iloc[0]
            for source in sources.NAMES
        }
    assert len(sources.NAMES) >= 6
    assert set(recall["source"]) == {*sources.NAMES, "union"}
    assert (recall["depth"] == settings.candidate_depth).all()
    union = recall.set_index("source")["recall"]
    assert union["union"] >= union.drop("union").max()  # the union covers every source
    assert 0 < union["union"] <= 1
    # Views and carts are absent, yet "recently viewed" falls back to purchases, not to nothing.
    assert all(n > 0 for n in per_source.values()), per_source

    version = pipeline.train_or_load_ranker(run, settings)
    pipeline.check_model(run, version, settings)
    row = registry(settings).set_index("model_version").loc[version]
    assert row["status"] == "champion"
    baselines = json.loads(row["baseline_metrics"])
    assert set(baselines) == {
        "popularity",
        "personal_top_frequency",
        "implicit_als",
        "item_knn",
        "tifuknn",
    }
    metrics = json.loads(row["validation_metrics"])
    for key in ("ndcg@10", "recall@10", "map@10", "hit_rate@10", "coverage@10"):
        assert 0 <= metrics[key] <= 1
        assert all(key in b for b in baselines.values())
    assert "recall_repeat@10" in metrics and "recall_new@10" in metrics


def test_a_worse_challenger_is_rejected_and_the_champion_keeps_serving(
    purchases_only, tmp_path, monkeypatch
):
    settings, as_of = purchases_only
    run = pipeline.Run(as_of=as_of.isoformat(), run_id="challenger", k=20, retrain="always")
    served = pipeline.train_or_load_ranker(run, settings)
    pipeline.check_model(run, served, settings)
    # An older champion (a copy of today's model, registered for D-1) and a future one (D+1)
    # that a run for D must never look at.
    with session(settings) as wh:
        for name, day in (("lgbm-older", as_of - timedelta(days=1)), ("lgbm-future", None)):
            shutil.copy(settings.models_dir / f"{served}.txt", settings.models_dir / f"{name}.txt")
            wh.execute(
                "insert into recpipe.model_registry (model_version, trained_at, as_of_date, "
                "validation_metrics, baseline_metrics, status) values (@v, "
                "@t, @d, '{}', '{}', 'champion')",
                {
                    "v": name,
                    "t": pd.Timestamp("2000-01-01"),
                    "d": day or as_of + timedelta(days=1),
                },
            )
        wh.execute(
            "update recpipe.model_registry set status = 'retired' where model_version = @v",
            {"v": served},
        )
    # With a floor no model can reach (ratio >= 1.5), the new model loses to the D-1 champion.
    strict = tmp_path / "gates.yml"
    config = (pipeline.__file__.rsplit("/", 1)[0]) + "/config/gates.yml"
    text = (
        open(config)
        .read()
        .replace(
            "challenger_ndcg_vs_champion: {min: {warn: 1.0, fail: 0.98}}",
            "challenger_ndcg_vs_champion: {min: {fail: 1.5}}",
        )
    )
    assert "fail: 1.5" in text
    strict.write_text(text)
    monkeypatch.setenv("RECPIPE_GATES_FILE", str(strict))
    assert pipeline.train_or_load_ranker(run, settings) == "lgbm-older"
    row = registry(settings).set_index("model_version").loc[served]
    assert row["status"] == "rejected"
    decision = json.loads(row["validation_metrics"])["champion_decision"]
    assert decision["champion"] == "lgbm-older"  # never the D+1 model
    assert "keeps serving" in decision["reason"]
    # With the shipped tolerance an equally good model replaces the champion.
    monkeypatch.delenv("RECPIPE_GATES_FILE")
    assert pipeline.train_or_load_ranker(run, settings) == served
    assert registry(settings).set_index("model_version").loc[served]["status"] == "challenger"


def test_user_shards_change_no_candidate_nor_published_row_and_a_missing_shard_stops_the_run(
    purchases_only,
):
    settings, as_of = purchases_only
    run = pipeline.Run(as_of=as_of.isoformat(), run_id="shards", k=20, retrain="always")
    pipeline.start_run(run, settings)

    # The Python sources in 1 and in 4 user shards write the same candidates.
    candidates = {}
    for shards in (1, 4):
        sharded = dataclasses.replace(settings, user_shards=shards)
        staged = [pipeline.generate_python_candidates(run, sharded, shard=i) for i in range(shards)]
        assert pipeline.merge_python_candidates(run, sharded) == sum(staged) > 0
        candidates[shards] = python_candidates(settings)
    for one, four in zip(candidates[1], candidates[4], strict=True):
        pd.testing.assert_frame_equal(one, four)
    # A candidate shard that did not finish: the merge names it and changes no candidate.
    sharded = dataclasses.replace(settings, user_shards=4)
    for index in range(3):
        pipeline.generate_python_candidates(run, sharded, shard=index)
    with pytest.raises(RuntimeError, match="1 of 4 user shards .*python_candidates.*shard_3_of_4"):
        pipeline.merge_python_candidates(run, sharded)
    for before, after in zip(candidates[1], python_candidates(settings), strict=True):
        pd.testing.assert_frame_equal(before, after)

    version = pipeline.train_or_load_ranker(run, settings)

    def published() -> pd.DataFrame:
        with session(settings) as wh:
            return wh.query_df(
                "select * from recpipe.recommendations where run_date = @d order by user_id, rank",
                {"d": as_of},
            )

    rows = {}
    for shards in (1, 4):
        sharded = dataclasses.replace(settings, user_shards=shards)
        staged = [pipeline.score_candidates(run, version, sharded, shard=i) for i in range(shards)]
        assert all(n > 0 for n in staged) and len(set(staged)) <= 2  # near-equal slices
        pipeline.check_output(run, sharded)
        assert pipeline.publish_recommendations(run, sharded) == sum(staged)
        rows[shards] = published()
        with session(settings) as wh:  # every shard's staging table is gone
            assert not any(
                wh.table_exists(*pipeline.stage_table(run, (i, shards))) for i in range(shards)
            )
    pd.testing.assert_frame_equal(rows[1], rows[4])

    # Discovery slots (RECPIPE_DISCOVERY_SLOTS): the tiny shop's lists hold 11-19 never-bought
    # items of 20 already, so all 20 slots: each list gains such items where the ranker had
    # bought ones, still passes the output gate and stays in score order; a list of 20
    # never-bought items is unchanged.
    slots = dataclasses.replace(settings, discovery_slots=run.k)
    pipeline.score_candidates(run, version, slots)
    pipeline.check_output(run, slots)
    pipeline.publish_recommendations(run, slots)
    with session(settings) as wh:
        features = wh.table("features", "fct_user_item_features")
        never_bought = wh.query_df(
            f"select user_id, item_id, coalesce(ui_purchased_quantity_history, 0) = 0 as new "
            f"from {features} where as_of_date = @d",
            {"d": as_of},
        )
    new_per_user = {}
    for name, frame in (("plain", rows[1]), ("slots", published())):
        flagged = frame.merge(never_bought, on=["user_id", "item_id"], how="left")
        flagged["new"] = flagged["new"].fillna(True).astype(bool)  # no history with the item
        new_per_user[name] = flagged.groupby("user_id")["new"].sum()
    assert (new_per_user["slots"] >= new_per_user["plain"]).all()
    assert (new_per_user["slots"] > new_per_user["plain"]).any()
    kept = new_per_user["plain"][new_per_user["plain"] == run.k].index
    with_slots = published()
    assert len(kept) > 0
    pd.testing.assert_frame_equal(
        with_slots[with_slots.user_id.isin(kept)].reset_index(drop=True),
        rows[1][rows[1].user_id.isin(kept)].reset_index(drop=True),
    )
    assert (with_slots.groupby("user_id")["score"].diff().dropna() <= 0).all()
    pipeline.score_candidates(run, version, settings)  # back to the ranker's own lists
    pipeline.check_output(run, settings)
    pipeline.publish_recommendations(run, settings)
    pd.testing.assert_frame_equal(published(), rows[1])

    # More shards than users: shard 0 of (users + 1) is empty, and its staging table still has
    # the columns' types of the others (it unions with them at the gate and the publish).
    users = rows[1]["user_id"].nunique()
    pipeline.score_candidates(run, version, settings)
    sparse = dataclasses.replace(settings, user_shards=users + 1)
    assert pipeline.score_candidates(run, version, sparse, shard=0) == 0
    with session(settings) as wh:
        types = [
            wh.query_df(f"describe {wh.table(*pipeline.stage_table(run, shard))}")
            for shard in ((0, 1), (0, users + 1))
        ]
    pd.testing.assert_frame_equal(types[0], types[1])

    # Three of four shards scored: the gate and the publish name the missing one; D's rows stay.
    sharded = dataclasses.replace(settings, user_shards=4)
    for index in range(3):
        pipeline.score_candidates(run, version, sharded, shard=index)
    for stage in (pipeline.check_output, pipeline.publish_recommendations):
        with pytest.raises(RuntimeError, match="1 of 4 user shards .*shard_3_of_4"):
            stage(run, sharded)
    pd.testing.assert_frame_equal(published(), rows[1])
