"""Every gate can turn red on bad data, stops its run, and leaves what was published untouched.

Each test works on a private copy of the prepared warehouse (dbt tables built for D, D-1 and D
published), breaks one thing, runs the stage's gate, and checks: the gate raised with the check
named in a one-line reason, the failure is in ``recpipe.dq_results``, and the published tables
hold exactly the rows they held before.
"""

from __future__ import annotations

import json
from datetime import timedelta

import pandas as pd
import pytest

from recpipe import pipeline, sources
from recpipe.gates import GateFailed, gate_config
from recpipe.ingest import ingest_events, ingest_items
from recpipe.warehouse import session

from .conftest import digest, make_run, published

pytestmark = pytest.mark.slow


def failed_checks(settings, run_id: str) -> set[str]:
    with session(settings) as wh:
        rows = wh.query_df(
            "select check_name from recpipe.dq_results where run_id = @r and status = 'fail'",
            {"r": run_id},
        )
    return set(rows["check_name"])


def assert_gate_fails(settings, gate, run, check: str, *args) -> GateFailed:
    """``gate`` fails on ``check``, records it, and publishes nothing."""
    before = digest(published(settings))
    latest = digest(published(settings, view="recommendations_latest"))
    pipeline.start_run(run, settings)
    with pytest.raises(GateFailed) as err:
        gate(run, *args, settings)
    message = str(err.value)
    assert check in message and "\n" not in message
    assert check in failed_checks(settings, run.run_id)
    assert digest(published(settings)) == before
    assert digest(published(settings, view="recommendations_latest")) == latest
    return err.value


def execute(settings, *statements: str, params: dict | None = None) -> None:
    with session(settings) as wh:
        for sql in statements:
            wh.execute(sql, params)


# --- raw -------------------------------------------------------------------------------------

RAW_BREAKAGES = {
    "schema_missing_columns": ["alter table raw.events drop column session_id"],
    "null_or_empty_ids": ["update raw.events set user_id = ' ' where event_id in "
                          "(select event_id from raw.events limit 3)"],
    "unknown_event_types": ["update raw.events set event_type = 'click' where event_id in "
                            "(select event_id from raw.events limit 3)"],
    "duplicate_event_ids": ["insert into raw.events select * from raw.events limit 5"],
    "future_events": ["update raw.events set loaded_at = event_ts - interval 1 hour "
                      "where event_id in (select event_id from raw.events limit 2)"],
    "available_items": ["update raw.items set is_available = false"],
}  # fmt: skip


@pytest.mark.parametrize("check", sorted(RAW_BREAKAGES))
def test_raw_gate_fails_on_rows_that_bypassed_ingest(shop, prepared_shop, check):
    # Ingest rejects all of these; the gate catches them when another loader wrote raw.*.
    execute(shop, *RAW_BREAKAGES[check])
    run = make_run(prepared_shop.as_of, f"raw-{check}")
    assert_gate_fails(shop, pipeline.check_raw, run, check)


def test_every_item_unavailable_fails_the_raw_gate(shop, prepared_shop, tmp_path, tiny_shop):
    catalog = pd.read_csv(tiny_shop.files["items"], dtype=str).assign(is_available="false")
    catalog.to_csv(tmp_path / "items.csv", index=False)
    with session(shop) as wh:
        ingest_items(wh, tmp_path / "items.csv")
    run = make_run(prepared_shop.as_of, "all-unavailable")
    assert_gate_fails(shop, pipeline.check_raw, run, "available_items")


def test_a_day_with_90_percent_fewer_events_fails_the_volume_gate(shop, prepared_shop):
    last_day = prepared_shop.as_of - timedelta(days=1)
    with session(shop) as wh:
        kept = wh.query_df(
            "select event_id from raw.events where cast(event_ts as date) = @d order by event_id",
            {"d": last_day},
        )["event_id"]
        wh.execute(
            "delete from raw.events where cast(event_ts as date) = @d "
            "and event_id not in (select unnest(@keep))",
            {"d": last_day, "keep": kept.head(len(kept) // 10).tolist()},
        )
    run = make_run(prepared_shop.as_of, "volume-drop")
    error = assert_gate_fails(shop, pipeline.check_raw, run, "volume_vs_trailing_median")
    assert "trailing median" in str(error)


def test_stale_data_fails_freshness_and_no_history_fails_events_before_as_of(
    shop, prepared_shop, tiny_shop
):
    late = make_run(prepared_shop.as_of + timedelta(days=5), "stale")
    assert_gate_fails(shop, pipeline.check_raw, late, "freshness_days")
    early = make_run(tiny_shop.start_date, "no-history")
    assert_gate_fails(shop, pipeline.check_raw, early, "events_before_as_of")


def test_events_for_unknown_items_are_kept_counted_and_gated(shop, prepared_shop, tmp_path):
    day = prepared_shop.as_of - timedelta(days=2)
    with session(shop) as wh:
        known = int(wh.query_df("select count(*) as n from raw.events")["n"].iloc[0])

    def load_unknown(n: int, name: str) -> None:
        rows = pd.DataFrame(
            {
                "user_id": [f"u{i % 50:06d}" for i in range(n)],
                "item_id": [f"ghost-{name}-{i}" for i in range(n)],
                "event_type": "view",
                "event_ts": f"{day}T10:00:00Z",
            }
        )
        rows.to_csv(tmp_path / f"{name}.csv", index=False)
        with session(shop) as wh:
            assert ingest_events(wh, tmp_path / f"{name}.csv").rows_loaded == n

    load_unknown(int(known * 0.02), "few")  # kept and reported: a warning, the run goes on
    run = make_run(prepared_shop.as_of, "unknown-few")
    pipeline.start_run(run, shop)
    pipeline.check_raw(run, shop)
    with session(shop) as wh:
        status = wh.query_df(
            "select status, details from recpipe.dq_results "
            "where run_id = @r and check_name = 'unknown_item_share'",
            {"r": run.run_id},
        ).iloc[0]
    assert status["status"] == "warn" and "missing from the catalog" in status["details"]

    load_unknown(int(known * 0.4), "many")
    assert_gate_fails(
        shop, pipeline.check_raw, make_run(prepared_shop.as_of, "unknown-many"),
        "unknown_item_share",
    )  # fmt: skip


# --- features --------------------------------------------------------------------------------


def test_the_prepared_runs_pass_and_record_every_configured_check(shop, prepared_shop):
    configured = {(stage, name) for stage, checks in gate_config().items() for name in checks} - {
        ("model", "challenger_ndcg_vs_champion")
    }  # D reused its champion: nothing compared
    with session(shop) as wh:
        rows = wh.query_df(
            "select stage, check_name, status, observed, details from recpipe.dq_results "
            "where run_id = @r",
            {"r": f"prepared-{prepared_shop.as_of}"},
        )
        profiles = wh.query_df("select distinct run_id from recpipe.feature_profiles")
    assert set(zip(rows["stage"], rows["check_name"], strict=True)) == configured
    assert (rows["status"] != "fail").all(), rows[rows["status"] == "fail"]
    drift = rows.set_index("check_name").loc["drift_vs_previous_run"]
    assert 0 <= drift["observed"] < 0.5 and f"prepared-{prepared_shop.previous}" in drift["details"]
    assert len(profiles) == 2


FEATURE_BREAKAGES = {
    "out_of_range_values": "update features.fct_user_features set user_view_count_7d = -1 "
                           "where as_of_date = @d and user_id in (select user_id from "
                           "features.fct_user_features where as_of_date = @d limit 2)",
    "drift_vs_previous_run": "update features.fct_item_features "
                             "set item_event_count_30d = item_event_count_30d * 50 "
                             "where as_of_date = @d",
    "count_feature_null_share": "update features.fct_item_features "
                                "set item_view_count_7d = null where as_of_date = @d",
    "users_without_features": "delete from features.fct_user_features where as_of_date = @d "
                              "and user_id in (select user_id from features.fct_user_features "
                              "where as_of_date = @d limit 3)",
}  # fmt: skip


@pytest.mark.parametrize("check", sorted(FEATURE_BREAKAGES))
def test_feature_gate_fails_on_broken_features(shop, prepared_shop, check):
    execute(shop, FEATURE_BREAKAGES[check], params={"d": prepared_shop.as_of})
    run = make_run(prepared_shop.as_of, f"features-{check}")
    assert_gate_fails(shop, pipeline.check_features, run, check)


# --- candidates ------------------------------------------------------------------------------


def test_candidate_gate_fails_on_coverage_and_on_recall(shop, prepared_shop):
    # k above what any user's candidates hold: coverage collapses.
    wide = make_run(prepared_shop.as_of, "coverage", k=200)
    assert_gate_fails(shop, pipeline.check_candidates, wide, "user_coverage")
    # Candidate sources that propose nothing a user went on to buy: recall below the floor.
    valid = pipeline.run_cutoffs(wide, shop)["valid"]
    with session(shop) as wh:
        for source in sources.NAMES:
            wh.execute(
                f"update candidates.cand_{source} set item_id = 'nothing-' || item_id "
                "where as_of_date = @v",
                {"v": valid},
            )
    run = make_run(prepared_shop.as_of, "recall")
    assert_gate_fails(shop, pipeline.check_candidates, run, "union_recall_valid")


# --- model -----------------------------------------------------------------------------------


def test_model_gate_fails_a_model_no_better_than_popularity_and_rejects_it(shop, prepared_shop):
    with session(shop) as wh:
        row = wh.query_df(
            "select model_version, as_of_date, validation_metrics, baseline_metrics "
            "from recpipe.model_registry where status = 'champion' "
            "order by as_of_date desc limit 1"
        ).iloc[0]
        metrics = json.loads(row["validation_metrics"])
        metrics["ndcg@10"] = json.loads(row["baseline_metrics"])["popularity"]["ndcg@10"] * 0.9
        wh.execute(
            "update recpipe.model_registry set validation_metrics = @m, status = 'challenger' "
            "where model_version = @v",
            {"m": json.dumps(metrics), "v": row["model_version"]},
        )
    # Judged on the champion's own date, where its stored validation metrics apply.
    run = make_run(pd.Timestamp(row["as_of_date"]).date(), "weak-model")
    version = str(row["model_version"])
    assert_gate_fails(shop, pipeline.check_model, run, "ndcg_lift_over_popularity", version)
    with session(shop) as wh:
        status = wh.query_df(
            "select status from recpipe.model_registry where model_version = @v", {"v": version}
        )["status"].iloc[0]
    assert status == "rejected"


def test_champion_comparison_is_recorded_and_a_rejected_challenger_only_warns(
    shop, prepared_shop, tmp_path, monkeypatch
):
    d = prepared_shop.as_of

    def verdict(run) -> pd.Series:
        with session(shop) as wh:
            return wh.query_df(
                "select status, observed, details from recpipe.dq_results "
                "where run_id = @r and check_name = 'challenger_ndcg_vs_champion'",
                {"r": run.run_id},
            ).iloc[0]

    # A floor no new model can reach: the challenger is rejected, the champion serves and the
    # run goes on, with the rejection recorded as a warning.
    config = tmp_path / "gates.yml"
    shipped = open(pipeline.__file__.rsplit("/", 1)[0] + "/config/gates.yml").read()
    config.write_text(
        shipped.replace(
            "challenger_ndcg_vs_champion: {min: {warn: 1.0, fail: 0.98}}",
            "challenger_ndcg_vs_champion: {min: {fail: 1.5}}",
        )
    )
    monkeypatch.setenv("RECPIPE_GATES_FILE", str(config))
    strict = make_run(d, "challenger-strict", retrain="always")
    pipeline.start_run(strict, shop)
    served = pipeline.train_or_load_ranker(strict, shop)
    assert served == registry_champion(shop, prepared_shop.previous)
    pipeline.check_model(strict, served, shop)  # does not raise
    rejected = verdict(strict)
    assert rejected["status"] == "warn" and "keeps serving" in rejected["details"]

    monkeypatch.delenv("RECPIPE_GATES_FILE")
    run = make_run(d, "challenger", retrain="always")
    pipeline.start_run(run, shop)
    version = pipeline.train_or_load_ranker(run, shop)
    pipeline.check_model(run, version, shop)
    assert verdict(run)["observed"] > 0


def registry_champion(settings, as_of) -> str:
    with session(settings) as wh:
        return wh.query_df(
            "select model_version from recpipe.model_registry "
            "where as_of_date = @d and status = 'champion'",
            {"d": as_of},
        )["model_version"].iloc[0]


# --- output ----------------------------------------------------------------------------------

OUTPUT_BREAKAGES = {
    "users_over_k_rows": "insert into {t} select run_date, user_id, rank + 100, 'i-extra', "
                         "score - 100, model_version, sources from {t} where rank = 1",
    "non_contiguous_ranks": "update {t} set rank = rank + 1 where rank >= 5",
    "duplicate_user_items": "update {t} set item_id = (select min(item_id) from {t} s "
                            "where s.user_id = {t}.user_id) where rank <= 2",
    "rank_order_violations": "update {t} set score = -score",
    "non_finite_scores": "update {t} set score = 'nan'::double where rank = 3",
    "unknown_or_unavailable_items": "update raw.items set is_available = false "
                                    "where item_id in (select item_id from {t} limit 1)",
    "active_user_coverage": "delete from {t} where user_id in "
                            "(select distinct user_id from {t} order by user_id limit 40)",
    "score_distribution_vs_previous_publish": "update {t} set score = 1.0 / (rank * rank * rank)",
}  # fmt: skip


@pytest.mark.parametrize("check", sorted(OUTPUT_BREAKAGES))
def test_output_gate_audits_the_staged_rows_before_publish(shop, prepared_shop, check):
    run = make_run(prepared_shop.as_of, f"output-{check}")
    with session(shop) as wh:
        version = wh.query_df(
            "select model_version from recpipe.recommendations where run_date = @d limit 1",
            {"d": prepared_shop.as_of},
        )["model_version"].iloc[0]
    pipeline.start_run(run, shop)
    pipeline.score_candidates(run, version, shop)
    staged = ".".join(pipeline.stage_table(run))
    execute(shop, OUTPUT_BREAKAGES[check].format(t=staged))
    assert_gate_fails(shop, pipeline.check_output, run, check)


def test_output_gate_passes_the_clean_staged_rows(shop, prepared_shop):
    with session(shop) as wh:
        rows = wh.query_df(
            "select check_name, status, observed from recpipe.dq_results "
            "where run_id = @r and stage = 'output'",
            {"r": f"prepared-{prepared_shop.as_of}"},
        ).set_index("check_name")
    assert (rows["status"] == "pass").all(), rows
    assert 0 <= rows.loc["score_distribution_vs_previous_publish", "observed"] < 0.2
