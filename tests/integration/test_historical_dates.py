"""Historical as-of dates run for real (issue 11, part 1; SPEC: "a 2017 log runs for 2017
dates; a run in which no stage ran is never reported as a success").

Two tiny synthetic shops whose events end in 2017 and in 2019 go through the CLI (``recpipe run``
and ``recpipe backfill``), the real DAG and real Airflow (``dag.test``), one run each. Both are
the same shop shifted in time (``end_weekday`` pinned, as ``recpipe demo`` does), so they must
also reach the same metrics and recommendations: what a run computes depends on dates only
relative to its as-of date. A run for a date before the DAG's ``start_date`` is a real DAG run
in which Airflow creates no task instance and marks it success: the CLI must fail. And an
Airflow backfill over historical dates creates every task of the DAG for each of them.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import pytest

from recpipe.cli import main
from recpipe.ingest import ingest_events, ingest_items, ingest_users
from recpipe.settings import Settings, load_settings
from recpipe.synthetic import DEFAULT_END_DATE, generate_shop
from recpipe.tables import ensure_tables
from recpipe.warehouse import session
from tests.conftest import TINY_SHOP

pytestmark = pytest.mark.slow

# name -> (last day of events, the command that runs the day after it)
SHOPS = {"2017": (date(2017, 6, 29), "run"), "2019": (date(2019, 3, 31), "backfill")}


@dataclass
class HistoricalRun:
    settings: Settings
    as_of: date
    exit_code: int
    out: str
    err: str


def _shop_home(tmp_path, monkeypatch, end_date: date) -> Settings:
    """A fresh warehouse (RECPIPE_HOME) holding a tiny shop whose last day is ``end_date``."""
    shop = generate_shop(
        tmp_path / "shop",
        end_date=end_date,
        end_weekday=DEFAULT_END_DATE.weekday(),
        show_progress=False,
        **TINY_SHOP,
    )
    assert shop.end_date == end_date
    monkeypatch.setenv("RECPIPE_HOME", str(tmp_path / "home"))
    settings = load_settings()
    with session(settings) as wh:
        ingest_items(wh, shop.files["items"])
        ingest_users(wh, shop.files["users"])
        ingest_events(wh, shop.files["events"])
    return settings


@pytest.fixture(scope="module")
def historical_runs(tmp_path_factory, airflow_db) -> dict[str, HistoricalRun]:
    runs = {}
    with pytest.MonkeyPatch.context() as patch:
        for name, (end_date, command) in SHOPS.items():
            settings = _shop_home(tmp_path_factory.mktemp(f"shop_{name}"), patch, end_date)
            day = (end_date + timedelta(days=1)).isoformat()
            argv = (
                ["run", "--as-of", day]
                if command == "run"
                else ["backfill", "--start", day, "--end", day]
            )
            out, err = io.StringIO(), io.StringIO()
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                code = main(argv)
            runs[name] = HistoricalRun(
                settings, date.fromisoformat(day), code, out.getvalue(), err.getvalue()
            )
    return runs


def _published(run: HistoricalRun):
    with session(run.settings) as wh:
        runs = wh.query_df(
            "select status, rows, users from recpipe.pipeline_runs where run_date = @d",
            {"d": run.as_of},
        )
        recs = wh.query_df(
            "select user_id, rank, item_id, score, sources from recpipe.recommendations "
            "where run_date = @d order by user_id, rank",
            {"d": run.as_of},
        )
        model = wh.query_df(
            "select validation_metrics, baseline_metrics from recpipe.model_registry "
            "where as_of_date = @d",
            {"d": run.as_of},
        )
    return runs, recs, model


@pytest.mark.parametrize("name", list(SHOPS))
def test_a_shop_that_ended_years_ago_publishes_for_its_dates(historical_runs, name):
    run = historical_runs[name]
    assert run.exit_code == 0, run.err[-2000:]
    runs, recs, _ = _published(run)
    assert runs["status"].tolist() == ["success"]
    assert int(runs["rows"].iloc[0]) == len(recs) > 0
    users = recs["user_id"].nunique()
    line = f"recpipe_daily for {run.as_of}: success, published {len(recs):,} rows for {users:,}"
    assert line in run.out


def test_the_same_shop_shifted_in_time_reaches_the_same_results(historical_runs):
    """No stage depends on the calendar, only on dates relative to the as-of date: the demo
    (whose shop ends yesterday) prints the same metrics on any day it is run."""
    run_a, run_b = historical_runs.values()
    (_, recs_a, model_a), (_, recs_b, model_b) = _published(run_a), _published(run_b)
    assert len(recs_a) > 0 and recs_a.equals(recs_b)  # row for row, scores included
    for column in ("validation_metrics", "baseline_metrics"):
        a = _relative(json.loads(model_a[column].iloc[0]), run_a.as_of)
        b = _relative(json.loads(model_b[column].iloc[0]), run_b.as_of)
        assert _same(a, b), (column, a, b)


def _relative(metrics: dict, as_of: date) -> dict:
    """``metrics`` with its calendar dates (the stacked training cutoffs) as days before
    ``as_of``: the only values that may differ between the two shifted shops."""
    cutoffs = metrics.get("train_cutoffs")
    if cutoffs is None:
        return metrics
    offsets = [(as_of - date.fromisoformat(c)).days for c in cutoffs]
    return {**metrics, "train_cutoffs": offsets}


def _same(a, b) -> bool:
    """Equal, floats to 1e-12 relative: a metric summed in another order may differ in its last
    bit (measured: popularity NDCG@10 0.23532244220838464 vs 0.2353224422083847)."""
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-15)
    return a == b


def test_a_dag_run_in_which_no_stage_ran_fails_the_cli(tmp_path, monkeypatch, capsys, airflow_db):
    """1969-12-31 is before recpipe_daily's start_date: Airflow creates the DAG run without task
    instances and marks it success. The CLI exits non-zero with one line naming why, and the
    warehouse holds nothing for that date."""
    settings = _shop_home(tmp_path, monkeypatch, date(2017, 6, 29))
    assert main(["run", "--as-of", "1969-12-31"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert "no stage ran" in err[-1] and "before the DAG's start_date 1970-01-01" in err[-1]
    assert sum("error" in line for line in err) == 1, err
    with session(settings) as wh:
        ensure_tables(wh)  # recpipe's tables exist once a first stage ran; none did
        runs = wh.query_df("select count(*) as n from recpipe.pipeline_runs")["n"].iloc[0]
        recs = wh.query_df("select count(*) as n from recpipe.recommendations")["n"].iloc[0]
    assert runs == recs == 0


def _sync_dag_to_metadata_db() -> None:
    """Parse the DAG folder into Airflow's metadata database, as the dag-processor does."""
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import BundleDagBag, sync_bag_to_db

    manager = DagBundlesManager()
    manager.sync_bundles_to_db()
    for bundle in manager.get_all_dag_bundles():
        if not bundle.is_initialized:
            bundle.initialize()
        bag = BundleDagBag(dag_folder=bundle.path, bundle_path=bundle.path, bundle_name=bundle.name)
        sync_bag_to_db(bag, bundle.name, bundle.version)


def test_an_airflow_backfill_over_historical_dates_creates_every_task(airflow_db):
    """Airflow's own backfill (what the UI's Trigger → Backfill and ``POST /api/v2/backfills``
    call) over 2016 dates: every run gets every task of the DAG (with a start_date after the
    dates it would get none, and the scheduler would mark the runs successful doing nothing).
    The runs are created, not executed, then deleted."""
    from airflow.models.backfill import (
        Backfill,
        BackfillDagRun,
        ReprocessBehavior,
        _create_backfill,
    )
    from airflow.models.dagrun import DagRun
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import delete, func, select

    from recpipe.airflow_runner import DAG_ID, load_dag

    _sync_dag_to_metadata_db()
    tasks = len(load_dag().task_ids)
    backfill = _create_backfill(
        dag_id=DAG_ID,
        from_date=datetime(2016, 1, 4, tzinfo=UTC),
        to_date=datetime(2016, 1, 6, tzinfo=UTC),
        max_active_runs=1,
        reverse=False,
        dag_run_conf={},
        triggering_user_name="test",
        reprocess_behavior=ReprocessBehavior.NONE,
    )
    with create_session() as db:
        runs = db.execute(
            select(DagRun.run_id, DagRun.logical_date).where(DagRun.backfill_id == backfill.id)
        ).all()
        per_run = {
            run_id: db.scalar(
                select(func.count())
                .select_from(TaskInstance)
                .where(TaskInstance.dag_id == DAG_ID, TaskInstance.run_id == run_id)
            )
            for run_id, _ in runs
        }
        db.execute(delete(TaskInstance).where(TaskInstance.run_id.in_(list(per_run))))
        db.execute(delete(BackfillDagRun).where(BackfillDagRun.backfill_id == backfill.id))
        db.execute(delete(DagRun).where(DagRun.backfill_id == backfill.id))
        db.execute(delete(Backfill).where(Backfill.id == backfill.id))
    assert sorted(d.date() for _, d in runs) == [
        date(2016, 1, 4),
        date(2016, 1, 5),
        date(2016, 1, 6),
    ]
    assert set(per_run.values()) == {tasks}, per_run
