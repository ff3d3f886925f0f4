"""``check_published``: Airflow's "success" counts only when ``recpipe.pipeline_runs`` says the
run of that date succeeded and published rows (the DAG-level case, a run with no task at all, is
run for real in tests/integration/test_historical_dates.py)."""

from __future__ import annotations

from datetime import date

import pytest

from recpipe.airflow_runner import DagRunOutcome, NotPublishedError, check_published
from recpipe.settings import load_settings
from recpipe.tables import ensure_tables
from recpipe.warehouse import session

DAY = date(2017, 6, 30)


@pytest.fixture
def settings(recpipe_home):
    settings = load_settings()
    with session(settings) as wh:
        ensure_tables(wh)
    return settings


def _record(settings, run_id: str, status: str, rows: int | None, run_date: date = DAY, error=None):
    with session(settings) as wh:
        wh.execute(
            "insert into recpipe.pipeline_runs (run_date, run_id, status, model_version, users, "
            "rows, error) values (@d, @r, @s, 'm1', @u, @n, @e)",
            {"d": run_date, "r": run_id, "s": status, "u": rows, "n": rows, "e": error},
        )


def _outcome(run_id: str, tasks=("run__resolve_params",), start=date(1970, 1, 1)):
    return DagRunOutcome(
        as_of=DAY, run_id=run_id, state="success", tasks_run=list(tasks), dag_start=start
    )


def test_a_run_that_published_passes(settings):
    _record(settings, "r1", "success", 120)
    done = check_published(settings, _outcome("r1"))
    assert (done.run_date, done.rows, done.users, done.model_version) == (DAY, 120, 120, "m1")


@pytest.mark.parametrize(
    ("record", "outcome", "message"),
    [
        (None, _outcome("r1", tasks=(), start=date(2026, 1, 1)), "before the DAG's start_date"),
        (None, _outcome("r1", tasks=()), "no stage ran (the DAG run has no task instance)"),
        (None, _outcome("r1"), "not in recpipe.pipeline_runs"),
        (("failed", None, DAY, "GateFailed: raw"), _outcome("r1"), "says failed: GateFailed"),
        (("running", None, DAY, None), _outcome("r1"), "pipeline_runs says running"),
        (("success", 0, DAY, None), _outcome("r1"), "published no rows"),
        (("success", None, DAY, None), _outcome("r1"), "published no rows"),
        (("success", 50, date(2017, 6, 29), None), _outcome("r1"), "ran for 2017-06-29"),
    ],
    ids=["before-start", "no-task", "no-record", "failed", "running", "zero", "null", "date"],
)
def test_success_without_a_published_run_is_an_error(settings, record, outcome, message):
    if record is not None:
        status, rows, run_date, error = record
        _record(settings, "r1", status, rows, run_date, error)
    with pytest.raises(NotPublishedError, match="^recpipe_daily for 2017-06-30: ") as raised:
        check_published(settings, outcome)
    assert message in str(raised.value)
    assert "\n" not in str(raised.value)
