"""When recpipe_daily runs: any historical date has its tasks, and with ``catchup=False`` the
first scheduled run after unpausing is today's date (README "Scheduling and the first date")."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from recpipe.runs import resolve_run
from recpipe.settings import DAGS_DIR

# Dates of public logs people run: MovieLens-100k (1997-98), Instacart (2017), a 2019 shop.
HISTORICAL = [date(1997, 9, 20), date(2017, 6, 30), date(2019, 4, 1)]


@pytest.fixture(scope="module")
def dag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS_DIR)).dags["recpipe_daily"]


@pytest.mark.parametrize("day", HISTORICAL, ids=str)
def test_every_task_exists_for_historical_dates(dag, day):
    """Airflow creates no task instance for a logical date before the DAG's or a task's
    start_date (and marks such a run success): every task must start before any data."""
    logical = datetime(day.year, day.month, day.day, tzinfo=UTC)
    assert dag.start_date <= logical
    late = [t.task_id for t in dag.tasks if t.start_date is not None and t.start_date > logical]
    assert late == []


def test_first_scheduled_run_after_unpausing_is_today(dag):
    """catchup=False: no history is filled; the scheduler runs the latest daily tick, today
    00:00 UTC, whose as-of date is today (events up to the end of yesterday)."""
    from airflow.serialization.decoders import decode_timetable
    from airflow.serialization.encoders import encode_timetable
    from airflow.timetables.base import TimeRestriction

    assert dag.catchup is False
    # The scheduler's view of the schedule: the DAG's timetable as serialized for it.
    timetable = decode_timetable(encode_timetable(dag.timetable))
    before = datetime.now(UTC)
    info = timetable.next_dagrun_info(
        last_automated_data_interval=None,
        restriction=TimeRestriction(earliest=dag.start_date, latest=None, catchup=False),
    )
    after = datetime.now(UTC)
    assert info is not None
    assert info.logical_date.date() in {before.date(), after.date()}  # midnight between calls
    assert info.logical_date.time() == datetime.min.time()
    run = resolve_run({}, info.logical_date, info.run_after, "scheduled__first")
    assert run.as_of_date == info.logical_date.date()
    # Yesterday's run is not created: the first run is not a catch-up of an older date.
    assert info.logical_date.date() > (before - timedelta(days=1)).date()
