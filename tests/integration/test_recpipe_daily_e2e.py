"""End to end: the real DAG, run by real Airflow (dag.test), dbt on a real DuckDB file, LightGBM.

One tiny shop is ingested once per module; the tests then run the DAG for its latest date,
rerun it, and feed it bad data, checking the published table after each step.
"""

from __future__ import annotations

import hashlib
import math
from datetime import timedelta

import pandas as pd
import pytest

from recpipe.airflow_runner import run_dag
from recpipe.ingest import ingest_events, ingest_items, ingest_users
from recpipe.settings import load_settings
from recpipe.warehouse import session

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def shop_home(tmp_path_factory, tiny_shop, airflow_db):
    """A warehouse holding the tiny shop; RECPIPE_HOME points at it for the whole module."""
    home = tmp_path_factory.mktemp("e2e_home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RECPIPE_HOME", str(home))
        settings = load_settings()
        with session(settings) as wh:
            ingest_items(wh, tiny_shop.files["items"])
            ingest_users(wh, tiny_shop.files["users"])
            ingest_events(wh, tiny_shop.files["events"])
        yield settings


@pytest.fixture(scope="module")
def as_of(tiny_shop):
    return tiny_shop.end_date + timedelta(days=1)


def published(settings, run_date=None) -> pd.DataFrame:
    with session(settings) as wh:
        where = "where run_date = @d" if run_date else ""
        return wh.query_df(
            f"select * from recpipe.recommendations {where} order by run_date, user_id, rank",
            {"d": run_date} if run_date else None,
        )


def digest(frame: pd.DataFrame) -> str:
    return hashlib.sha256(pd.util.hash_pandas_object(frame, index=False).values).hexdigest()


def assert_spec_invariants(settings, recs: pd.DataFrame, k: int) -> None:
    assert not recs.empty
    per_user = recs.groupby("user_id")
    assert per_user.size().max() <= k
    for _, rows in per_user:
        assert rows["rank"].tolist() == list(range(1, len(rows) + 1))
        ordered = rows.sort_values(["score", "item_id"], ascending=[False, True])
        assert ordered["rank"].tolist() == rows["rank"].tolist()  # score desc, then item_id
    assert not recs.duplicated(["run_date", "user_id", "item_id"]).any()
    assert all(math.isfinite(s) for s in recs["score"])
    with session(settings) as wh:
        items = wh.query_df("select item_id, is_available from raw.items")
        active = wh.query_df(
            "select count(distinct user_id) as n from raw.events "
            "where event_ts < @d and event_ts >= @d - interval 90 day",
            {"d": recs["run_date"].iloc[0]},
        )["n"].iloc[0]
    available = set(items.loc[items["is_available"], "item_id"])
    assert set(recs["item_id"]) <= available
    assert recs["user_id"].nunique() == active  # every active user gets recommendations
    assert recs["sources"].str.len().gt(0).all()
    assert recs["model_version"].nunique() == 1


def test_daily_run_publishes_recommendations_that_hold_every_invariant(shop_home, as_of):
    outcome = run_dag(shop_home, as_of, {"k": 10})
    assert outcome.state == "success", outcome.failed_tasks

    recs = published(shop_home, as_of)
    assert_spec_invariants(shop_home, recs, k=10)
    with session(shop_home) as wh:
        run = wh.query_df(
            "select * from recpipe.pipeline_runs where run_id = @r", {"r": outcome.run_id}
        ).iloc[0]
        gates = wh.query_df(
            "select * from recpipe.dq_results where run_id = @r", {"r": outcome.run_id}
        )
        model = wh.query_df("select * from recpipe.model_registry").iloc[0]
        latest = wh.query_df("select count(*) as n from recpipe.recommendations_latest")
    assert run["status"] == "success" and run["rows"] == len(recs)
    assert run["users"] == recs["user_id"].nunique()
    assert set(gates["stage"]) == {"raw", "features", "candidates", "model", "output"}
    assert (gates["status"] != "fail").all()
    assert model["status"] == "champion" and model["model_version"] == run["model_version"]
    assert pd.Timestamp(model["valid_label_end"]).date() <= as_of  # labels end before D
    assert latest["n"].iloc[0] == len(recs)


def test_rerun_of_a_date_is_identical_and_touches_no_other_date(shop_home, as_of):
    before = published(shop_home, as_of)
    earlier = as_of - timedelta(days=1)
    assert run_dag(shop_home, earlier, {"k": 10}).state == "success"
    earlier_rows = published(shop_home, earlier)

    outcome = run_dag(shop_home, as_of, {"k": 10, "retrain": "always"})
    assert outcome.state == "success", outcome.failed_tasks
    assert digest(published(shop_home, as_of)) == digest(before)
    assert digest(published(shop_home, earlier)) == digest(earlier_rows)


def test_bad_catalog_fails_a_gate_and_publishes_nothing(shop_home, as_of, tmp_path, tiny_shop):
    before = published(shop_home)
    catalog = pd.read_csv(tiny_shop.files["items"])
    catalog["is_available"] = "false"  # every item out of stock
    bad_items = tmp_path / "items.csv"
    catalog.to_csv(bad_items, index=False)
    with session(shop_home) as wh:
        ingest_items(wh, bad_items)
    try:
        outcome = run_dag(shop_home, as_of, {"k": 10})
        assert outcome.state == "failed"
        assert outcome.failed_tasks[0] == "gate__raw"
        states = task_states(outcome.run_id)
        # dbt's build never started, so its sensors are skipped at once (cosmos' sensor would
        # poll forever for a status the build never wrote), and nothing after it ran
        assert states["dbt.dbt_producer_watcher"] == "upstream_failed"
        assert states["dbt.stg_shop__events.run"] == "skipped"
        assert states["publish__recommendations"] == "upstream_failed"
        assert digest(published(shop_home)) == digest(before)  # nothing lost, nothing new
        with session(shop_home) as wh:
            run = wh.query_df(
                "select * from recpipe.pipeline_runs where run_id = @r", {"r": outcome.run_id}
            ).iloc[0]
            failed = wh.query_df(
                "select check_name from recpipe.dq_results where run_id = @r and status = 'fail'",
                {"r": outcome.run_id},
            )
        assert run["status"] == "failed" and "available_items" in run["error"]
        assert failed["check_name"].tolist() == ["available_items"]
    finally:
        with session(shop_home) as wh:
            ingest_items(wh, tiny_shop.files["items"])


def task_states(run_id: str) -> dict[str, str]:
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as db:
        tis = db.query(TaskInstance).filter(TaskInstance.run_id == run_id).all()
        return {ti.task_id: str(ti.state).split(".")[-1].lower() for ti in tis}


def test_a_failed_dbt_test_fails_its_sensor_and_the_run_before_publish(shop_home, as_of):
    # Quantities below 1 pass the raw gate (ingest rejects them; this loader bypassed it) and
    # break the dbt test on stg_shop__events.quantity, which runs inside the one `dbt build`.
    before = published(shop_home)
    with session(shop_home) as wh:
        broken = wh.query_df("select event_id, quantity from raw.events order by event_id limit 3")
        wh.execute(
            "update raw.events set quantity = 0 where event_id in "
            "(select event_id from raw.events order by event_id limit 3)"
        )
    try:
        outcome = run_dag(shop_home, as_of, {"k": 10})
        assert outcome.state == "failed"
        states = task_states(outcome.run_id)
        # The build failed and exactly the broken model's test sensor shows it (plus the task
        # that closes the failed run); nothing that depends on it ran, nothing was published.
        assert set(outcome.failed_tasks) == {
            "dbt.dbt_producer_watcher",
            "dbt.stg_shop__events.test",
            "run__record_failure",
        }, outcome.failed_tasks
        assert states["dbt.stg_shop__events.run"] == "success"  # the model itself was built
        assert states["dbt.stg_shop__items.test"] == "success"  # a sound model stays green
        for task_id in ("dbt.int_active_users.run", "gate__features", "publish__recommendations"):
            assert states[task_id] == "upstream_failed", task_id
        assert digest(published(shop_home)) == digest(before)
        with session(shop_home) as wh:
            run = wh.query_df(
                "select * from recpipe.pipeline_runs where run_id = @r", {"r": outcome.run_id}
            ).iloc[0]
        assert run["status"] == "failed"
    finally:
        with session(shop_home) as wh:
            for row in broken.itertuples():
                wh.execute(
                    "update raw.events set quantity = @q where event_id = @e",
                    {"q": int(row.quantity), "e": row.event_id},
                )


def test_sql_in_the_as_of_param_is_rejected_before_any_work(shop_home, as_of):
    from airflow.sdk.exceptions import ParamValidationError

    before = published(shop_home)
    # Airflow validates the param against its schema (format: date) before creating the run;
    # recpipe.runs.resolve_run checks it again (tests/unit/test_pipeline_params.py).
    with pytest.raises(ParamValidationError, match="as_of"):
        run_dag(shop_home, as_of, {"as_of": "2026-10-01'; drop table raw.events; --"})
    with pytest.raises(ParamValidationError, match="k"):
        run_dag(shop_home, as_of, {"k": "20; delete from recpipe.recommendations"})
    assert digest(published(shop_home)) == digest(before)
    with session(shop_home) as wh:
        assert wh.query_df("select count(*) as n from raw.events")["n"].iloc[0] > 0


def test_report_shows_runs_gates_and_metrics(shop_home, as_of, tmp_path):
    from recpipe.report import write_report

    with session(shop_home) as wh:
        runs = wh.query_df("select status from recpipe.pipeline_runs")
    if "success" not in set(runs["status"]):  # when this test runs alone
        assert run_dag(shop_home, as_of, {"k": 10}).state == "success"

    page = write_report(shop_home, tmp_path / "report.html").read_text()
    assert "Ranker vs the strongest baseline" in page and "data:image/png;base64," in page
    assert "union_recall_valid" in page and "success" in page


def readme_queries() -> list[str]:
    """Every SQL statement of the README's ```sql blocks (analysts copy them as they are)."""
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    blocks = re.findall(r"```sql\n(.*?)```", readme, flags=re.S)
    return [s.strip() for block in blocks for s in block.split(";") if s.strip()]


def test_readme_example_queries_run_on_the_published_tables(shop_home, as_of):
    queries = readme_queries()
    assert len(queries) >= 3
    with session(shop_home) as wh:
        if wh.query_df("select count(*) as n from recpipe.recommendations")["n"].iloc[0] == 0:
            assert run_dag(shop_home, as_of, {"k": 10}).state == "success"
        user = wh.query_df("select min(user_id) as u from recpipe.recommendations_latest")
        for sql in queries:
            # The README names a demo user and date; point them at this shop's.
            sql = sql.replace("'u000092'", f"'{user['u'].iloc[0]}'")
            sql = sql.replace("date '2026-09-30'", f"date '{as_of.isoformat()}'")
            rows = wh.query_df(sql)
            assert len(rows) > 0, sql
